"""Raw calls checked before Gradio reads them: file references must be uploads, and every input must be there.

Gradio refuses a file reference outside its upload folder, or a call with too few inputs, before the endpoint runs,
and the caller then gets an error with no text at all (`{"error": null}`). `CallGate` is an ASGI middleware that
looks at the JSON body of every call route first and answers 400 with one sentence instead: the same refusal the
endpoints give (`access.UPLOAD_REFUSAL`) for any path that is not an upload, whether or not it exists, and the number
of inputs an endpoint takes. A call that leaves out trailing inputs that have defaults gets those defaults filled in,
so a program written before an endpoint gained an option keeps working; other calls that pass go on to Gradio with
their body unchanged.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from gradio.utils import get_upload_folder

from .access import UPLOAD_REFUSAL, uploaded_file
from .errors import UploadRefusedError

#: The routes that run an event: by name (`/call/<name>`, `/call/v2/<name>`, `/run/<name>`, `/api/<name>`), or by
#: index through the queue, as the page does (`/queue/join`).
_CALL_ROUTE = re.compile(r"/gradio_api/(?:(?:call/v2|call|run|api)/(?P<name>[^/]+)|queue/join)/?$")
#: A call body larger than this is refused unread: the longest legitimate one (a text to align) is a few hundred KB.
MAX_CALL_BYTES = 8 * 1024 * 1024

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class CallGate:
    """ASGI middleware over a Gradio app; `blocks` is the launched Blocks, whose events it looks up."""

    def __init__(self, app: Callable, blocks: Any):
        self.app, self.blocks = app, blocks

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        route = _CALL_ROUTE.search(scope.get("path", "")) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body, complete = b"", False
        while not complete:
            message = await receive()
            body += message.get("body", b"")
            complete = not message.get("more_body", False)
            if len(body) > MAX_CALL_BYTES:
                await _refuse(send, 413, f"A call may send at most {MAX_CALL_BYTES // (1024 * 1024)} MB of JSON; "
                                         "upload files with POST /gradio_api/upload and send their references.")
                return
        problem = self.problem(route["name"], body)
        if problem:
            await _refuse(send, 400, problem)
            return
        body = self.completed(route["name"], body)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def problem(self, name: str | None, body: bytes) -> str | None:
        """What is wrong with a call's body, or None to let Gradio handle it (malformed JSON included)."""
        try:
            call = json.loads(body)
        except ValueError:
            return None
        if not isinstance(call, dict):
            return None
        data = call.get("data")
        values = list(data.values()) if isinstance(data, dict) else data if isinstance(data, list) else []
        for path in _file_references(values):
            try:
                uploaded_file(path, get_upload_folder())
            except UploadRefusedError:
                return UPLOAD_REFUSAL
        fn = self._event(name, call.get("fn_index"))
        if fn is not None and fn.api_visibility == "public" and isinstance(data, list):
            required = len(fn.inputs) - len(_defaults(fn))
            if len(data) < required:
                return (f"The /{fn.api_name} endpoint takes {required} to {len(fn.inputs)} inputs and got "
                        f"{len(data)}; see /gradio_api/info for their names, or call it with gradio_client.")
        return None

    def completed(self, name: str | None, body: bytes) -> bytes:
        """`body` with the defaults of the trailing inputs it leaves out (after `problem` found none missing that
        have no default)."""
        try:
            call = json.loads(body)
        except ValueError:
            return body
        data = call.get("data") if isinstance(call, dict) else None
        fn = self._event(name, call.get("fn_index")) if isinstance(data, list) else None
        if fn is None or fn.api_visibility != "public" or len(data) >= len(fn.inputs):
            return body
        defaults = _defaults(fn)
        call["data"] = data + defaults[len(defaults) - (len(fn.inputs) - len(data)):]
        return json.dumps(call).encode()

    def _event(self, name: str | None, fn_index: Any) -> Any:
        if name is not None:
            return next((fn for fn in self.blocks.fns.values() if fn.api_name == name), None)
        return self.blocks.fns.get(fn_index) if isinstance(fn_index, int) else None


def _defaults(fn: Any) -> list[Any]:
    """The default values of an endpoint's trailing inputs (a `gr.api` function's keyword defaults)."""
    parameters = [p for p in inspect.signature(fn.fn).parameters.values() if p.name != "request"][:len(fn.inputs)]
    defaults: list[Any] = []
    for parameter in reversed(parameters):
        if parameter.default is inspect.Parameter.empty:
            break
        defaults.insert(0, parameter.default)
    return defaults


def _file_references(value: Any) -> Iterator[Any]:
    """The `path` of every file reference (a dict with a "path" key, Gradio's marker or not) anywhere in `value`."""
    if isinstance(value, dict):
        if "path" in value:
            yield value["path"]
        for item in value.values():
            yield from _file_references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _file_references(item)


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"detail": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
