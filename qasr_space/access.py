"""Who may use what: a file a client names must be one it uploaded here, and programs need the API token when set.

Plain functions over paths and header values, shared by the named endpoints, the page's handlers and the REST route.
Every refusal of a file is the same sentence whatever the path, so the answer never tells whether some other file
exists on the server.
"""

from __future__ import annotations

import hmac
import os

from .errors import UnauthorizedError, UploadRefusedError
from .settings import Settings

UPLOAD_REFUSAL = (
    "No uploaded file was found at that reference: this server reads only files uploaded to it, and deletes them "
    "after a while. Upload the file (gradio_client: handle_file(path)) and send the reference the upload returns."
)
TOKEN_REFUSAL = (
    "Missing or wrong API token: send the header `Authorization: Bearer <token>` with this server's QASR_API_TOKEN "
    "(gradio_client: Client(url, headers={'Authorization': 'Bearer <token>'}))."
)


def uploaded_file(path: object, upload_root: str) -> str:
    """The real path of a file inside `upload_root` (where the server keeps uploads), else `UploadRefusedError`.

    Symbolic links and `..` are resolved first, so no spelling of a path reaches outside the folder.
    """
    try:
        real = os.path.realpath(path)  # type: ignore[arg-type]
        root = os.path.realpath(upload_root)
        inside = os.path.commonpath([root, real]) == root and real != root
    except (TypeError, ValueError, OSError):  # not a path at all, NUL bytes, or a mix of relative and absolute
        inside = False
    if not inside or not os.path.isfile(real):
        raise UploadRefusedError(UPLOAD_REFUSAL)
    return real


def require_token(authorization: str | None, settings: Settings) -> None:
    """Refuse a programmatic request whose `Authorization` header lacks `settings.api_token`, when one is set."""
    if not settings.api_token:
        return
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), settings.api_token.encode()):
        raise UnauthorizedError(TOKEN_REFUSAL)
