"""Named Gradio endpoints for programs: `/transcribe`, `/transcribe_url`, `/align` and `/info`.

They take the same options as the UI and return the core's `Transcript.to_dict()` JSON, plus two files: SRT and
WebVTT unless the optional `formats` input names others (LRC, TSV, ...), so `gradio_client` users get what the page
shows. Optional trailing inputs set the subtitle layout (`max_line_chars`, `max_cue_seconds`). They appear on the
app's "Use via API" page. User errors reach the caller as `gr.Error` with the `QasrError` message.
"""

# No `from __future__ import annotations` here: `gr.api` reads the type hints at runtime to build each endpoint's
# schema, and postponed (string) annotations would give it nothing to read.

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr
import numpy as np
from gradio import FileData
from gradio.utils import get_upload_folder

from . import __version__
from .access import require_token, uploaded_file
from .errors import AudioError, QasrError, UploadTooLargeError, shown
from .fetch import fetch_audio
from .gpu import on_gpu, user_error
from .languages import ALIGNER_LANGUAGES, LANGUAGES, NAME_TO_CODE, normalize_language
from .models import ALIGNER_MODEL, ASR_MODELS, DEFAULT_MODEL, ModelManager, asr_model_name
from .diarize import SpeakerCount, parse_speakers
from .results import Transcript
from .settings import Settings
from .transcribe import (ALIGNER_MAX_SECONDS, align, check_align_text, check_context, prepare_audio, transcribe,
                         with_speakers)
from .ui import ServedFiles
from .writers import (CUE_SECONDS, CUE_SECONDS_RANGE, FORMATS, LINE_CHARS, LINE_CHARS_RANGE, CueLimits,
                      write_transcript)

#: The files every transcript endpoint returns next to the JSON unless `formats` names others, in this order.
DEFAULT_FILES = "srt,vtt"
#: How many file outputs each transcript endpoint has.
FILE_OUTPUTS = 2

_RETURNS = ("Returns (transcript, file, file): the transcript as JSON (language, text, duration, words with start/end "
            "seconds, segments, model, chunks, warnings, and with speakers: each word's and segment's speaker, the "
            "speakers, their turns and overlaps), then the same as files: SRT and WebVTT subtitles by default.")
_FILES = (f"`formats`: the files to return, one or two of {', '.join(FORMATS)}, comma-separated (default "
          f"{DEFAULT_FILES}; lrc is enhanced LRC with word times for lyrics players, tsv is start/end in ms and text). "
          f"`max_line_chars` ({LINE_CHARS_RANGE[0]}-{LINE_CHARS_RANGE[1]}, default {LINE_CHARS}) and `max_cue_seconds` "
          f"({CUE_SECONDS_RANGE[0]:g}-{CUE_SECONDS_RANGE[1]:g}, default {CUE_SECONDS:g}): the SRT and VTT layout, two "
          "lines a cue; a longer segment is split into several cues at word boundaries.")
_OPTIONS = ("`model`: 0.6B or 1.7B (or a hub id such as Qwen/Qwen3-ASR-1.7B-hf). `language`: a name or code "
            "(English, en, ...) or auto to detect it. `context`: optional text that biases the transcript (names, "
            "terms). `timestamps`: word timestamps from the forced aligner (11 languages). `speakers`: who spoke "
            "when: off (default), auto, a number (2) or a range (2-4).")


def check_upload_size(size: int, settings: Settings) -> None:
    """Refuse an upload over the size limit (`size` in bytes, or as much as was read) before anything decodes it."""
    if size > upload_limit_bytes(settings):
        raise UploadTooLargeError(
            f"The upload is over this server's limit of {settings.max_upload_mb:g} MB. Compress it (e.g. to mp3 or "
            "opus) or send a shorter part.")


def upload_limit_bytes(settings: Settings) -> int:
    return int(settings.max_upload_mb * 1024 * 1024)


def info(manager: ModelManager) -> dict[str, Any]:
    """What this server offers and its limits, the engine that transcribes, and the batching counters (model calls
    vs requests served)."""
    settings = manager.settings
    return {
        "version": __version__,
        "engine": manager.engine.name,
        "models": [{"name": name, "hub_id": hub_id} for name, hub_id in ASR_MODELS.items()],
        "default_model": DEFAULT_MODEL,
        "aligner_model": ALIGNER_MODEL,
        "languages": [{"name": name, "code": NAME_TO_CODE[name]} for name in LANGUAGES],
        "aligner_languages": list(ALIGNER_LANGUAGES),
        "limits": {
            "max_upload_mb": settings.max_upload_mb,
            "max_audio_seconds": settings.max_audio_seconds,
            "min_audio_seconds": settings.min_audio_seconds,
            "max_align_seconds": ALIGNER_MAX_SECONDS,
            "max_context_chars": settings.max_context_chars,
            "max_align_chars": settings.max_align_chars,
            "max_live_sessions": settings.max_live_sessions,
            "max_live_seconds": settings.max_live_seconds,
            "keep_minutes": settings.keep_minutes,
        },
        "token_required": bool(settings.api_token),
        "batching": {
            "enabled": settings.batch_requests,
            "concurrent_requests": settings.concurrency_limit,
            "max_clips": settings.batch_size,
            "wait_ms": settings.batch_wait_ms,
            **manager.batch_stats(),
        },
    }


def register_api(manager: ModelManager) -> None:
    """Add the named endpoints to the Blocks being built; call inside `with demo:`. They share the queue's default
    concurrency limit (`QASR_CONCURRENCY`), so that many requests run side by side and can be batched together."""
    settings = manager.settings
    served = ServedFiles(os.path.join(get_upload_folder(), "qasr-api"))

    @on_gpu
    def transcribe_audio(audio: np.ndarray, model: str, language: str | None, context: str | None,
                         timestamps: bool) -> Transcript:
        return transcribe(audio, manager=manager, model=model, language=language, context=context,
                          timestamps=timestamps)

    @on_gpu
    def align_audio(audio: np.ndarray, text: str, language: str | None) -> Transcript:
        return align(audio, text, manager=manager, language=language)

    def then_speakers(on_gpu_call: Callable[..., Transcript], audio: np.ndarray, options: tuple,
                      speakers: SpeakerCount | None) -> Transcript:
        """`on_gpu_call(audio, *options)` on the GPU slice, then (on the CPU) who spoke when."""
        return with_speakers(on_gpu_call(audio, *options), audio, speakers)

    def transcribe_file(audio: FileData, model: str = DEFAULT_MODEL, language: str = "auto", context: str = "",
                        timestamps: bool = False, speakers: str = "off", formats: str = DEFAULT_FILES,
                        max_line_chars: int = LINE_CHARS, max_cue_seconds: float = CUE_SECONDS,
                        request: gr.Request = None) -> tuple[dict, FileData | None, FileData | None]:
        with _user_errors():
            require_token(_authorization(request), settings)
            options = _transcribe_options(model, language, context, timestamps, settings)
            count = _speakers(speakers)
            file_formats, limits = _formats(formats), _cue_limits(max_line_chars, max_cue_seconds)
            samples = prepare_audio(_uploaded(audio, settings), settings)
            return _with_files(then_speakers(transcribe_audio, samples, options, count), file_formats, limits, served)

    def transcribe_url(url: str, model: str = DEFAULT_MODEL, language: str = "auto", context: str = "",
                       timestamps: bool = False, speakers: str = "off", formats: str = DEFAULT_FILES,
                       max_line_chars: int = LINE_CHARS, max_cue_seconds: float = CUE_SECONDS,
                       request: gr.Request = None) -> tuple[dict, FileData | None, FileData | None]:
        with _user_errors():
            require_token(_authorization(request), settings)
            options = _transcribe_options(model, language, context, timestamps, settings)
            count = _speakers(speakers)
            file_formats, limits = _formats(formats), _cue_limits(max_line_chars, max_cue_seconds)
            with fetch_audio(_text(url, "url"), settings) as fetched:
                samples = prepare_audio(fetched.audio, settings)
            return _with_files(then_speakers(transcribe_audio, samples, options, count), file_formats, limits, served)

    def align_text(audio: FileData, text: str, language: str = "auto", formats: str = DEFAULT_FILES,
                   max_line_chars: int = LINE_CHARS, max_cue_seconds: float = CUE_SECONDS, speakers: str = "off",
                   request: gr.Request = None) -> tuple[dict, FileData | None, FileData | None]:
        with _user_errors():
            require_token(_authorization(request), settings)
            text = _text(text, "text")
            check_align_text(text, settings)
            forced = normalize_language(_text(language, "language"))
            count = _speakers(speakers)
            file_formats, limits = _formats(formats), _cue_limits(max_line_chars, max_cue_seconds)
            samples = prepare_audio(_uploaded(audio, settings), settings)
            return _with_files(then_speakers(align_audio, samples, (text, forced), count), file_formats, limits,
                               served)

    def server_info() -> dict:
        return info(manager)

    gr.api(transcribe_file, api_name="transcribe", api_description=(
        "Transcribe an audio or video file (wav, mp3, flac, ogg/opus, m4a, webm, mp4 ...). " + _OPTIONS + " "
        + _FILES + " " + _RETURNS))
    gr.api(transcribe_url, api_name="transcribe_url", api_description=(
        "Transcribe the audio of a URL: a direct link to a media file or a page yt-dlp knows (YouTube ...). "
        + _OPTIONS + " " + _FILES + " " + _RETURNS))
    gr.api(align_text, api_name="align", api_description=(
        f"Word timestamps for a transcript you already have (no speech recognition), on up to "
        f"{ALIGNER_MAX_SECONDS:.0f} s of audio. `language`: one of {', '.join(ALIGNER_LANGUAGES)}, or auto. "
        + _FILES + " `speakers` (the last input): who spoke when, as for /transcribe. " + _RETURNS))
    gr.api(server_info, api_name="info", api_description=(
        "The models, the 30 languages (name and code), the 11 aligner languages, this server's limits, the version, "
        "and batching counters (model calls and the requests they served)."), queue=False)


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """A `QasrError` becomes a `gr.Error` with its message: the caller sees that sentence, not a traceback."""
    try:
        yield
    except QasrError as exc:
        raise user_error(str(exc)) from None


def _authorization(request: gr.Request | None) -> str | None:
    return request.headers.get("authorization") if request is not None else None


def _text(value: Any, name: str) -> str:
    """A text argument as sent by any client (raw HTTP included): None is empty, anything but text is refused."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise QasrError(f"`{name}` must be text, not {type(value).__name__}.")
    return value


def _speakers(value: Any) -> SpeakerCount | None:
    """The `speakers` option as any client sends it: text ("auto", "2-4"), a whole number, or nothing for off."""
    if isinstance(value, int) and not isinstance(value, bool):
        return parse_speakers(value)
    return parse_speakers(_text(value, "speakers"))


def _transcribe_options(model: Any, language: Any, context: Any, timestamps: Any,
                        settings: Settings) -> tuple[str, str | None, str | None, bool]:
    """Model name, forced language, context and the timestamps flag, all checked before the audio is even read."""
    if timestamps is not None and not isinstance(timestamps, bool):
        raise QasrError(f"`timestamps` must be true or false, not {type(timestamps).__name__}.")
    name, forced = asr_model_name(_text(model, "model")), normalize_language(_text(language, "language"))
    context = _text(context, "context").strip() or None
    check_context(context, settings)
    return name, forced, context, bool(timestamps)


def _uploaded(audio: Any, settings: Settings) -> str:
    """The path Gradio stored the upload at, confined to its upload folder and size-checked, not yet decoded.
    Gradio itself checks file references that carry its `meta` marker; this also covers those that do not."""
    if audio is None:
        raise AudioError("No audio file received. Send the file itself, e.g. with gradio_client's handle_file(path).")
    path = uploaded_file(audio.get("path") if isinstance(audio, dict) else None, get_upload_folder())
    check_upload_size(os.path.getsize(path), settings)
    return path


def _formats(formats: Any) -> tuple[str, ...]:
    """The formats of the files to return, checked before the audio is even read; nothing (null, or an empty text)
    means the default."""
    names = tuple(name.strip().lower() for name in _text(formats, "formats").split(",") if name.strip())
    names = names or tuple(DEFAULT_FILES.split(","))
    unknown = [name for name in names if name not in FORMATS]
    if unknown:
        raise QasrError(f"Unknown file format {shown(unknown[0])}: choose one or two of {', '.join(FORMATS)}.")
    if len(names) > FILE_OUTPUTS:
        raise QasrError(f"`formats` names {len(names)} files, but the endpoint returns at most {FILE_OUTPUTS}: "
                        f"ask for one or two of {', '.join(FORMATS)}, e.g. \"lrc,tsv\".")
    return names


def _cue_limits(max_line_chars: Any, max_cue_seconds: Any) -> CueLimits:
    """The SRT and VTT layout as any client sends it; null means the default, and `CueLimits` checks the rest."""
    return CueLimits(LINE_CHARS if max_line_chars is None else max_line_chars,
                     CUE_SECONDS if max_cue_seconds is None else max_cue_seconds)


def _with_files(result: Transcript, formats: tuple[str, ...], limits: CueLimits,
                served: ServedFiles) -> tuple[dict, FileData | None, FileData | None]:
    """The transcript as JSON and as files in the formats asked for, in a fresh folder that Gradio serves; a file
    output left over when one format was asked for is None."""
    folder = served.new_folder()
    paths = [FileData(path=write_transcript(result, fmt, os.path.join(folder, "transcript" + FORMATS[fmt][1]), limits))
             for fmt in formats]
    return (result.to_dict(), *paths, *[None] * (FILE_OUTPUTS - len(paths)))
