"""The pipeline: audio → chunks → ASR (+ aligner) → words, segments and a `Transcript`.

`iter_transcribe` is a generator that yields each chunk's result as soon as its batch finishes (the faster-whisper
way), so a UI can show partial text; `transcribe` drains it into a `Transcript`. Long audio is cut at quiet points,
features are computed one batch of chunks at a time, so an hour of audio runs in bounded memory. A
`TranscriptionWatch` passed as `watch` shows progress within a batch and can cancel the rest (`progress`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Union

import numpy as np

from .audio import (SAMPLE_RATE, AudioSource, check_finite, is_silent, load_audio, normalize_peak,
                    split_at_quiet_points)
from .diarize import SpeakerCount, assign_speakers, diarize
from .errors import AudioTooLongError, InputTooLongError, LanguageError, NoSpeechError, QasrError
from .inference import run_aligner
from .languages import ALIGNER_LANGUAGES, aligner_supports, detected_language, normalize_language
from .models import ASR_MODELS, LoadedModel, ModelManager, asr_model_name
from .progress import TranscriptionWatch
from .results import Chunk, Transcript, Word
from .settings import Settings
from .timing import build_segments, segments_from_chunks, words_from_alignment

#: The aligner's own limit per call is 300 s; ASR alone handles up to 20 min per call.
ALIGNER_MAX_SECONDS = 300.0
ASR_MAX_SECONDS = 1200.0

ProgressCallback = Callable[[float, str], None]
#: What `transcribe` and `align` accept: what `load_audio` decodes, or samples already at 16 kHz float32.
AudioInput = Union[AudioSource, np.ndarray]


@dataclass
class ChunkResult:
    """One chunk as it finished: its text and, when timestamps were asked for and available, its words."""

    chunk: Chunk
    words: list[Word] = field(default_factory=list)
    timestamps_note: str | None = None


#: Text to align may hold this many characters per second of audio (plus `ALIGN_CHARS_BASE`): fast speech and rap
#: stay under 40, so more text than that cannot be what was said, and would only hold the aligner longer.
ALIGN_CHARS_PER_SECOND = 40
ALIGN_CHARS_BASE = 200


def check_context(context: str | None, settings: Settings) -> None:
    """Refuse a context over `settings.max_context_chars` before any work: every chunk's prompt repeats it."""
    if context and len(context) > settings.max_context_chars:
        raise InputTooLongError(
            f"The context is {len(context):,} characters long, over this server's limit of "
            f"{settings.max_context_chars:,}; keep it to names, terms and a line about the topic.")


def check_align_text(text: str | None, settings: Settings, seconds: float | None = None) -> None:
    """Refuse text to align that is empty, over `settings.max_align_chars`, or (once the audio's length is known)
    more than that much audio could hold, so no request holds the aligner longer than its audio warrants."""
    if not text or not text.strip():
        raise QasrError("The text to align is empty. Paste the transcript of the audio.")
    limit = settings.max_align_chars
    if seconds is not None:
        limit = min(limit, ALIGN_CHARS_BASE + int(ALIGN_CHARS_PER_SECOND * seconds))
    if len(text) > limit:
        where = "" if limit == settings.max_align_chars else f" for {seconds:.1f} s of audio"
        raise InputTooLongError(
            f"The text to align is {len(text):,} characters long, over the limit of {limit:,}{where}; paste only "
            "what is said in this audio.")


def prepare_audio(source: AudioInput, settings: Settings) -> np.ndarray:
    """Decode any supported input and check it against the limits; silence is refused before any model runs."""
    audio = source if isinstance(source, np.ndarray) else load_audio(
        source, max_seconds=settings.max_audio_seconds, min_seconds=settings.min_audio_seconds)
    if isinstance(source, np.ndarray):
        check_finite(audio)
        audio = normalize_peak(audio)  # as files and Gradio's tuples are, so every input is treated alike
        seconds = len(audio) / SAMPLE_RATE
        if seconds > settings.max_audio_seconds:
            raise AudioTooLongError(
                f"The audio is {seconds / 60:.1f} min long, over this server's limit of "
                f"{settings.max_audio_seconds / 60:.0f} min. Trim it or split it into parts.")
    if is_silent(audio):
        raise NoSpeechError("No speech found: the audio is silent. Check the recording or pick another file.")
    return audio


def text_separator(before: str, after: str) -> str:
    """Chunk texts join with a space, except between scripts written without spaces (Chinese, Japanese)."""
    if not before or not after:
        return ""
    return "" if _no_space_script(before[-1]) or _no_space_script(after[0]) else " "


def _no_space_script(char: str) -> bool:
    code = ord(char)
    return 0x3000 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF or 0xFF00 <= code <= 0xFFEF or code >= 0x20000


def iter_transcribe(
    audio: np.ndarray,
    *,
    manager: ModelManager,
    model: str | None = None,
    language: str | None = None,
    context: str | None = None,
    timestamps: bool = False,
    progress: ProgressCallback | None = None,
    max_new_tokens: int | None = None,
    watch: TranscriptionWatch | None = None,
    **generate_kwargs,
) -> Iterator[ChunkResult]:
    """Yield each chunk's result in order as its batch finishes. `audio` is float32 mono 16 kHz. Once `watch` is
    cancelled, no further model call starts (the aligner's included), and `Cancelled` is raised."""
    settings = manager.settings
    forced = normalize_language(language)
    check_context(context, settings)
    engine = manager.engine
    engine.check(model)
    if timestamps and (forced is None or aligner_supports(forced)):
        manager.aligner()  # load it, or fail, before any ASR work is spent
    limit = min(settings.chunk_seconds, ALIGNER_MAX_SECONDS if timestamps else ASR_MAX_SECONDS)
    pieces = split_at_quiet_points(audio, limit)
    total = len(audio) / SAMPLE_RATE
    if watch is not None:
        watch.expect(total, len(pieces))
    report = progress or (lambda fraction, message: None)
    report(0.0, f"Transcribing {len(pieces)} chunk{'s' * (len(pieces) != 1)}")
    batch_size = max(1, settings.batch_size)
    for first in range(0, len(pieces), batch_size):
        spans = pieces[first:first + batch_size]
        clips = [audio[start:end] for start, end in spans]
        outputs = engine.transcribe(model, clips, [forced] * len(clips), [context] * len(clips), max_new_tokens,
                                    watch=watch, **generate_kwargs)
        results = [
            ChunkResult(Chunk(start=start / SAMPLE_RATE, end=end / SAMPLE_RATE, text=out.text.strip(),
                              language=forced or detected_language(out.language), truncated=out.truncated))
            for (start, end), out in zip(spans, outputs)
        ]
        if timestamps:
            if watch is not None:
                watch.raise_if_cancelled()
            _align_batch(results, clips, manager.aligner)
        if watch is not None:
            watch.chunks_finished(len(spans))
        done = first + len(spans)
        report(done / len(pieces), f"Chunk {done}/{len(pieces)} done ({min(spans[-1][1] / SAMPLE_RATE, total):.0f}"
                                   f" of {total:.0f} s)")
        yield from results


def _align_batch(results: list[ChunkResult], clips: list[np.ndarray], load_aligner: Callable[[], LoadedModel]) -> None:
    """Attach words to each result whose language the aligner covers, and note the rest."""
    todo = []
    for result, clip in zip(results, clips):
        chunk = result.chunk
        if not chunk.text.strip():
            continue
        if not aligner_supports(chunk.language):
            result.timestamps_note = f"timestamps unavailable for {chunk.language or 'this audio'}"
            continue
        todo.append((result, clip))
    if not todo:
        return
    aligned = run_aligner(load_aligner(), [clip for _, clip in todo], [r.chunk.text for r, _ in todo],
                          [r.chunk.language for r, _ in todo])
    for (result, _), items in zip(todo, aligned):
        result.words = words_from_alignment(result.chunk.text, items, offset=result.chunk.start,
                                            duration=result.chunk.end)


def collect(results: Iterator[ChunkResult], *, duration: float, model_name: str, forced: str | None) -> Transcript:
    """Join chunk results into one transcript: texts joined at chunk borders, words kept in order."""
    text, words, segments, chunks, warnings = "", [], [], [], []
    for result in results:
        chunk = result.chunk
        piece = chunk.text.strip()
        separator = text_separator(text, piece)
        if result.words and separator:
            result.words[0].text = separator + result.words[0].text.lstrip()
        text += separator + piece
        words.extend(result.words)
        segments.extend(build_segments(result.words) if result.words else segments_from_chunks([chunk]))
        chunks.append(chunk)
        if chunk.truncated:
            warnings.append(f"chunk {chunk.start:.0f}-{chunk.end:.0f} s hit the token limit; its text may be cut short")
        if result.timestamps_note and result.timestamps_note not in warnings:
            warnings.append(result.timestamps_note)
    languages: list[str] = []
    for chunk in chunks:
        if chunk.language and (not languages or languages[-1] != chunk.language):
            languages.append(chunk.language)
    return Transcript(language=forced or ",".join(languages) or None, text=text, duration=duration, words=words,
                      segments=segments, model=model_name, chunks=chunks, warnings=warnings)


def transcribe(
    source: AudioInput,
    *,
    manager: ModelManager,
    model: str | None = None,
    language: str | None = None,
    context: str | None = None,
    timestamps: bool = False,
    progress: ProgressCallback | None = None,
    max_new_tokens: int | None = None,
    speakers: SpeakerCount | None = None,
    watch: TranscriptionWatch | None = None,
    **generate_kwargs,
) -> Transcript:
    """Transcribe a path, bytes, a Gradio `(rate, samples)` pair or float32 16 kHz samples; with `speakers`, say who
    spoke each word (`with_speakers`). `watch`: progress and Cancel, as for `iter_transcribe`."""
    forced = normalize_language(language)
    name = asr_model_name(model)
    check_context(context, manager.settings)
    audio = prepare_audio(source, manager.settings)
    results = iter_transcribe(audio, manager=manager, model=name, language=forced, context=context,
                              timestamps=timestamps, progress=progress, max_new_tokens=max_new_tokens,
                              watch=watch, **generate_kwargs)
    transcript = require_speech(collect(results, duration=len(audio) / SAMPLE_RATE, model_name=ASR_MODELS[name],
                                        forced=forced))
    if speakers is None:
        return transcript
    if watch is not None:
        watch.raise_if_cancelled()  # diarization is seconds of CPU per minute of audio
    return with_speakers(transcript, audio, speakers, progress)


def with_speakers(transcript: Transcript, audio: np.ndarray, speakers: SpeakerCount | None,
                  progress: ProgressCallback | None = None) -> Transcript:
    """`transcript` of `audio` with each word's and segment's speaker, from one diarization of the whole audio (on
    the CPU: it needs no GPU, and on ZeroGPU it then costs no GPU time); with `speakers` None, `transcript` as it is.
    A count it could not meet is a warning."""
    if speakers is None:
        return transcript
    (progress or (lambda fraction, message: None))(1.0, "Finding speakers")
    found = diarize(audio, speakers)
    result = assign_speakers(transcript, found)
    count = len(found.speakers)
    if not found.turns:
        result.warnings.append("no speaker turns found: the voices were too faint or too short to tell apart")
    elif speakers.minimum is not None and count < speakers.minimum:
        result.warnings.append(f"found {count} speaker{'s' * (count != 1)}, fewer than the {speakers.describe()} "
                               "asked for: under about 6 s of speech, or alike voices, give one")
    return result


def require_speech(transcript: Transcript | None) -> Transcript:
    """A finished transcription with no text is "no speech", not an empty success."""
    if transcript is None or not transcript.text.strip():
        raise NoSpeechError("No speech found in the audio. Check the recording, or choose its language if it is "
                            "speech the model did not recognise.")
    return transcript


def align(
    source: AudioInput,
    text: str,
    *,
    manager: ModelManager,
    language: str | None = None,
    progress: ProgressCallback | None = None,
    speakers: SpeakerCount | None = None,
) -> Transcript:
    """Word timestamps for a transcript the user already has (aligner only, no ASR); with `speakers`, say who spoke
    each word (`with_speakers`)."""
    check_align_text(text, manager.settings)
    forced = normalize_language(language)
    if forced is not None and not aligner_supports(forced):
        raise LanguageError(f"The aligner has no timestamps for {forced}. It covers: {', '.join(ALIGNER_LANGUAGES)}.")
    audio = prepare_audio(source, manager.settings)
    duration = len(audio) / SAMPLE_RATE
    if duration > ALIGNER_MAX_SECONDS:
        raise AudioTooLongError(
            f"Aligning your own text works on up to {ALIGNER_MAX_SECONDS:.0f} s of audio (the aligner's limit); this "
            f"audio is {duration:.0f} s. Trim it, or use Transcribe with word timestamps, which splits long audio.")
    check_align_text(text, manager.settings, duration)
    report = progress or (lambda fraction, message: None)
    report(0.0, "Aligning")
    loaded = manager.aligner()
    items = run_aligner(loaded, [audio], [text.strip()], [forced])[0]
    report(1.0, "Aligned")
    chunk = Chunk(start=0.0, end=duration, text=text.strip(), language=forced)
    words = words_from_alignment(chunk.text, items, offset=0.0, duration=duration)
    transcript = Transcript(language=forced, text=chunk.text, duration=duration, words=words,
                            segments=build_segments(words) if words else segments_from_chunks([chunk]),
                            model=loaded.name, chunks=[chunk])
    return with_speakers(transcript, audio, speakers, progress)
