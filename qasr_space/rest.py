"""OpenAI-compatible speech to text on the Space's own server: `POST /v1/audio/transcriptions`.

Existing OpenAI clients work by pointing their base URL at the server (`OpenAI(base_url=f"{url}/v1")`). The form
takes OpenAI's fields: `file`, `model` (qwen3-asr-0.6b, qwen3-asr-1.7b or a hub id; `whisper-1`, which many OpenAI
clients send by default, gets the default model), `language` (ISO code),
`prompt` (the context), `response_format` (json, text, srt, verbose_json, vtt, diarized_json) and
`timestamp_granularities[]` (word, segment) for verbose_json. Timed formats (srt, vtt, verbose_json, diarized_json)
get word timestamps from the forced aligner where it covers the language. `diarized_json` says who spoke each segment,
as OpenAI's diarizing model does; one more field, `speakers` (auto, a number or a range such as 2-4), turns speakers
on for every format, or sets how many to look for. Errors are OpenAI's error JSON with a 4xx status for the caller's mistakes.

On ZeroGPU the route answers 503: GPU time there is granted to Gradio requests only.

Limits are enforced before any model work: the body is counted while it streams in (413 once over
`QASR_MAX_UPLOAD_MB`) and spooled to a temporary file, not memory; the prompt's length is checked (413); the audio
is decoded from that file only once the request holds one of the `QASR_CONCURRENCY` slots, and its duration is
checked from its metadata before decoding (413). When `QASR_API_TOKEN` is set, requests need
`Authorization: Bearer <token>` (401 otherwise), as the named endpoints do.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from .api import check_upload_size, upload_limit_bytes
from .access import require_token
from .diarize import SpeakerCount, parse_speakers
from .errors import (AudioError, LanguageError, ModelUnavailableError, QasrError, UnauthorizedError, UnknownModelError,
                     shown)
from .gpu import ON_ZERO_GPU
from .languages import normalize_language
from .models import DEFAULT_MODEL, ModelManager, asr_model_name
from .results import Transcript
from .settings import Settings
from .transcribe import check_context, transcribe
from .writers import to_srt, to_txt, to_vtt

log = logging.getLogger(__name__)
ROUTE = "/v1/audio/transcriptions"
RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt", "diarized_json")
TIMED_FORMATS = ("srt", "vtt", "verbose_json", "diarized_json")
GRANULARITIES = ("word", "segment")
#: Form fields other than the file: at most this many, each at most this long (a long prompt fits).
_MAX_FIELDS = 16
_MAX_FIELD_BYTES = 64 * 1024
_TEXT_FORMATS = {"text": to_txt, "srt": to_srt, "vtt": to_vtt}
#: OpenAI's model name that many clients send by default; it gets the default model rather than a 404.
WHISPER_MODEL = "whisper-1"


class OpenAIError(Exception):
    """An error answered in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.param, self.code = status, param, code

    def response(self) -> JSONResponse:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        body = {"error": {"message": str(self), "type": kind, "param": self.param, "code": self.code}}
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse(body, status_code=self.status, headers=headers)


@dataclass
class _Options:
    model: str
    language: str | None
    context: str | None
    response_format: str
    granularities: tuple[str, ...]
    speakers: SpeakerCount | None


def openai_router(manager: ModelManager) -> APIRouter:
    """The route, bound to the app's model manager; include it in the Gradio app (`app.include_router`). At most
    `QASR_CONCURRENCY` requests run the pipeline at once, as on the Gradio queue; the others wait their turn."""
    settings = manager.settings
    router = APIRouter()
    limiter = anyio.CapacityLimiter(max(1, settings.concurrency_limit))

    @router.post(ROUTE, summary="Transcribe audio (OpenAI-compatible)")
    async def create_transcription(request: Request) -> Response:
        try:
            if ON_ZERO_GPU:
                raise OpenAIError(503, "This route is not available on a ZeroGPU Space, where GPU time is granted per "
                                       "Gradio request; call the /transcribe endpoint with gradio_client instead.")
            require_token(request.headers.get("authorization"), settings)
            form = await _read_form(request, settings)
            try:
                upload = _upload(form, settings)
                options = _options(form, settings)
                run = functools.partial(
                    transcribe, upload.file, manager=manager, model=options.model, language=options.language,
                    context=options.context, timestamps=options.response_format in TIMED_FORMATS,
                    speakers=options.speakers)
                transcript = await anyio.to_thread.run_sync(run, limiter=limiter)
            finally:
                await form.close()
            return _render(transcript, options)
        except OpenAIError as exc:
            return exc.response()
        except QasrError as exc:
            return OpenAIError(exc.status_code, str(exc), param=_param_of(exc),
                               code="invalid_api_key" if isinstance(exc, UnauthorizedError) else None).response()
        except Exception:
            log.exception("transcription request failed")
            return OpenAIError(500, "The server failed to transcribe this request; its log has the details.").response()

    return router


async def _read_form(request: Request, settings: Settings) -> FormData:
    """Parse the multipart body while counting it, so an oversized upload is refused as it streams in."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise OpenAIError(400, "Send a multipart/form-data request with the audio in a `file` field.", param="file")
    limit = upload_limit_bytes(settings) + _MAX_FIELDS * _MAX_FIELD_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isdigit():
        check_upload_size(int(declared) - _MAX_FIELDS * _MAX_FIELD_BYTES, settings)
    parser = MultiPartParser(request.headers, _counted(request.stream(), limit, settings), max_files=1,
                             max_fields=_MAX_FIELDS, max_part_size=_MAX_FIELD_BYTES)
    try:
        return await parser.parse()
    except MultiPartException as exc:
        if "maximum size" in str(exc):  # starlette's words for a text field over `max_part_size`
            raise OpenAIError(413, f"A text field of the form is over {_MAX_FIELD_BYTES // 1024} KB: `prompt` may hold "
                                   f"at most {settings.max_context_chars:,} characters, and `model`, `language`, "
                                   "`response_format` and `speakers` a few words each.") from exc
        raise OpenAIError(400, f"Malformed multipart form: {exc}") from exc


async def _counted(stream: AsyncIterator[bytes], limit: int, settings: Settings) -> AsyncIterator[bytes]:
    total = 0
    async for chunk in stream:
        total += len(chunk)
        if total > limit:
            check_upload_size(total - _MAX_FIELDS * _MAX_FIELD_BYTES, settings)
        yield chunk


def _upload(form: FormData, settings: Settings) -> UploadFile:
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise OpenAIError(400, "No audio file: send it in the `file` field of the form.", param="file")
    check_upload_size(upload.size or 0, settings)
    return upload


def _options(form: FormData, settings: Settings) -> _Options:
    """Validate every option before the audio is decoded, so a typo costs nothing."""
    model = _text(form, "model")
    if model is not None and model.lower() == WHISPER_MODEL:
        model = DEFAULT_MODEL
    try:
        asr_model_name(model)
    except UnknownModelError as exc:
        raise OpenAIError(exc.status_code, f"{exc} {WHISPER_MODEL} gets the default model, {DEFAULT_MODEL}.",
                          param="model", code="model_not_found") from exc
    language = _text(form, "language")
    try:
        normalize_language(language)
    except LanguageError as exc:
        raise OpenAIError(400, str(exc), param="language") from exc
    response_format = (_text(form, "response_format") or "json").lower()
    if response_format not in RESPONSE_FORMATS:
        raise OpenAIError(400, f"Unknown response_format {shown(response_format)}: use one of "
                               f"{', '.join(RESPONSE_FORMATS)}.", param="response_format")
    granularities = tuple(str(g).strip().lower() for key in ("timestamp_granularities[]", "timestamp_granularities")
                          for g in form.getlist(key)) or ("segment",)
    unknown = [g for g in granularities if g not in GRANULARITIES]
    if unknown:
        raise OpenAIError(400, f"Unknown timestamp granularity {shown(unknown[0])}: use word and/or segment.",
                          param="timestamp_granularities")
    prompt = _text(form, "prompt")
    try:
        check_context(prompt, settings)
    except QasrError as exc:
        raise OpenAIError(exc.status_code, str(exc), param="prompt") from exc
    try:
        speakers = parse_speakers(_text(form, "speakers") or ("auto" if response_format == "diarized_json" else None))
    except QasrError as exc:
        raise OpenAIError(exc.status_code, str(exc), param="speakers") from exc
    return _Options(model, language, prompt, response_format, granularities, speakers)


def _text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise OpenAIError(400, f"`{name}` must be a text field, not a file.", param=name)
    return value.strip() or None


def _param_of(exc: QasrError) -> str | None:
    """The form field a pipeline error is about, for OpenAI's `param`."""
    if isinstance(exc, AudioError):
        return "file"
    if isinstance(exc, LanguageError):
        return "language"
    if isinstance(exc, (UnknownModelError, ModelUnavailableError)):
        return "model"
    return None


def _render(transcript: Transcript, options: _Options) -> Response:
    if options.response_format == "json":
        return JSONResponse({"text": transcript.text})
    if options.response_format == "verbose_json":
        return JSONResponse(verbose_json(transcript, options.granularities))
    if options.response_format == "diarized_json":
        return JSONResponse(diarized_json(transcript))
    return PlainTextResponse(_TEXT_FORMATS[options.response_format](transcript))


def verbose_json(transcript: Transcript, granularities: tuple[str, ...] = ("segment",)) -> dict[str, Any]:
    """OpenAI's `verbose_json`: task, language (lower-case name), duration, text, and words and/or segments.

    Segment fields Whisper measures and Qwen3-ASR does not (tokens, temperature, avg_logprob, compression_ratio,
    no_speech_prob) are neutral placeholders, present so clients that read them keep working.
    """
    body: dict[str, Any] = {"task": "transcribe", "language": (transcript.language or "").lower(),
                            "duration": transcript.duration, "text": transcript.text}
    if "word" in granularities:
        body["words"] = [{"word": w.text.strip(), "start": w.start, "end": w.end, **_speaker(w.speaker)}
                         for w in transcript.words]
    if "segment" in granularities:
        body["segments"] = [
            {"id": i, "seek": 0, "start": s.start, "end": s.end, "text": s.text, "tokens": [], "temperature": 0.0,
             "avg_logprob": 0.0, "compression_ratio": 1.0, "no_speech_prob": 0.0, **_speaker(s.speaker)}
            for i, s in enumerate(transcript.segments)
        ]
    if transcript.speakers:
        body["speakers"] = list(transcript.speakers)
    return body


def diarized_json(transcript: Transcript) -> dict[str, Any]:
    """OpenAI's `diarized_json`: task, duration, text, and segments each with its `speaker`."""
    return {"task": "transcribe", "duration": transcript.duration, "text": transcript.text,
            "segments": [{"type": "transcript.text.segment", "id": f"seg_{i:03d}", "start": s.start, "end": s.end,
                          "text": s.text, "speaker": s.speaker or ""}
                         for i, s in enumerate(transcript.segments)]}


def _speaker(speaker: str | None) -> dict[str, str]:
    return {"speaker": speaker} if speaker else {}
