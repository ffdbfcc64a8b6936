"""User-facing errors: each message names the problem and what to do about it.

Every layer (CLI, UI, API) turns a `QasrError` into one clear line for the user; anything else is a bug.
"""

from __future__ import annotations


def shown(value: object, limit: int = 80) -> str:
    """User input in an error message: text quoted, on one line and at most `limit` characters, so a megabyte-long
    field never comes back whole; anything else as its repr, as short."""
    flat = " ".join(value.split()) if isinstance(value, str) else repr(value)
    flat = flat if len(flat) <= limit else flat[: limit - 1] + "…"
    return repr(flat) if isinstance(value, str) else flat


class QasrError(Exception):
    """Base for errors whose message is meant for the person or program that made the request."""

    #: HTTP status the REST API answers with; 4xx for the caller's input, 5xx for the server's side.
    status_code: int = 400


class AudioError(QasrError):
    """The audio is missing, empty, corrupt, too short, too long or not audio at all."""


class AudioTooLongError(AudioError):
    """The audio is over the configured duration limit."""

    status_code = 413


class UploadTooLargeError(AudioError):
    """An upload over the configured size limit."""

    status_code = 413


class NoSpeechError(AudioError):
    """The audio holds nothing to transcribe (silence)."""


class UploadRefusedError(AudioError):
    """A client named a file this server did not receive as an upload (or one already deleted)."""


class TooManyFilesError(QasrError):
    """More files in one request, zips unpacked, than the configured limit."""

    status_code = 413


class ArchiveError(QasrError):
    """A zip of uploads that cannot be read: corrupt, cut off, or listing far more entries than any upload needs."""


class InputTooLongError(QasrError):
    """A text field (context, text to align) over its length limit."""

    status_code = 413


class UnauthorizedError(QasrError):
    """A programmatic request without this server's API token."""

    status_code = 401


class BusyError(QasrError):
    """The server is at a capacity limit (live recordings, disk); try again later."""

    status_code = 503


class LanguageError(QasrError):
    """A language name or code the models do not know."""


class UnknownModelError(QasrError):
    """A model name that is not in the registry."""

    status_code = 404


class ModelUnavailableError(QasrError):
    """A known model cannot be loaded: offline, or a missing local folder."""

    status_code = 503


class Cancelled(QasrError):
    """The request was cancelled by whoever made it (`progress.TranscriptionWatch.cancel`)."""

    status_code = 499  # "client closed request": nobody is waiting for an answer


class ConfigError(QasrError):
    """The server's own settings (its `QASR_*` variables) are wrong; the operator must fix them."""

    status_code = 500


class FetchError(QasrError):
    """A URL could not be fetched, or must not be."""
