"""Live microphone transcription whose cost per update stays flat however long the session runs.

A browser streams short chunks of new audio; a `LiveSession` keeps the whole recording (for the final pass and
playback) and splits the transcript in two: committed text that never changes, and a tentative tail re-decoded from
a bounded window at the end of the recording. Once the window grows past `window_seconds`, its older part is cut at a
quiet point, transcribed once more on its own and appended to the committed text, so no update ever sends the model
more than about a window of audio (re-sending everything heard so far is what makes long sessions stall). On stop,
`session.close()` returns the whole recording for one pass through the normal pipeline (`transcribe`), with word
timestamps when asked.

UI-free: Gradio's `(rate, int16 samples)` chunks go to `LiveSession.feed`, and `update` returns plain results. Each person streaming gets their own `LiveSession`; nothing here is shared between sessions. The model call
of an update can be handed to a caller's `ClipTranscriber` (the UI's runs on a ZeroGPU slice), which gets only
arrays and strings, never the session.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .audio import SAMPLE_RATE, SampleBuffer, is_silent, load_audio, split_at_quiet_points
from .errors import AudioError, AudioTooLongError, BusyError, shown
from .languages import detected_language, normalize_language
from .models import ModelManager
from .results import AsrOutput
from .settings import Settings
from .transcribe import check_context, text_separator

#: Re-decoded audio is at most this long (plus one update's new audio) before its older part is committed.
WINDOW_SECONDS = 15.0
#: The model runs again only once this much new audio has arrived, so a slow CPU never falls behind a queue.
DECODE_EVERY_SECONDS = 1.0
#: After a commit, at least this much audio stays in the window, so the tentative text keeps some context.
MIN_TAIL_SECONDS = 3.0
#: Room reserved up front for a session's recording; it doubles when full.
_INITIAL_SECONDS = 60.0
#: A chunk of microphone audio must come at a sample rate in this range and hold at most this much audio: the browser
#: sends half a second at 16-48 kHz, so anything else is not a microphone.
CHUNK_RATES = (8000, 192000)
MAX_CHUNK_SECONDS = 10.0
#: A live session that receives no audio for this long counts as abandoned, and its slot and audio are freed.
IDLE_SECONDS = 120.0

#: `(clips, model, language, context, max_new_tokens) -> one AsrOutput per clip`; `transcribe_clips` bound to a
#: manager is the default.
ClipTranscriber = Callable[[list[np.ndarray], str | None, str | None, str | None, int | None], list[AsrOutput]]


@dataclass(frozen=True)
class LiveText:
    """What to show while recording: `committed` never changes, `tentative` may still be revised."""

    committed: str
    tentative: str
    language: str | None = None

    @property
    def text(self) -> str:
        """Both parts joined as the final transcript would join them."""
        return self.committed + text_separator(self.committed, self.tentative) + self.tentative


@dataclass(eq=False)
class LiveSession:
    """One person's recording and live transcript. Thread-safe; create one per recording.

    `max_seconds` caps the recording (pass `Settings.max_audio_seconds`). `finished` turns true once `close` has
    run; the next recording needs a new session. The counters say what the model was given, so callers
    can check the cost stays bounded: `model_calls` counts the updates that ran the model, `last_decoded_seconds` is
    the audio the latest such update sent it, `longest_clip_seconds` the longest single clip any update sent.
    """

    max_seconds: float = Settings.max_live_seconds
    committed: str = ""
    tentative: str = ""
    language: str | None = None
    window_start: int = 0
    decoded_until: int = 0
    model_calls: int = 0
    last_decoded_seconds: float = 0.0
    longest_clip_seconds: float = 0.0
    finished: bool = False
    released: bool = False
    last_active: float = field(default_factory=time.monotonic)
    _buffer: SampleBuffer = field(default_factory=lambda: SampleBuffer(int(_INITIAL_SECONDS * SAMPLE_RATE)),
                                  init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def seconds(self) -> float:
        """How much audio has been recorded."""
        return len(self._buffer) / SAMPLE_RATE

    @property
    def audio(self) -> np.ndarray:
        """The recording so far, 16 kHz mono float32, as a read-only view that later chunks never change."""
        with self._lock:
            return self._buffer.view()

    def live_text(self) -> LiveText:
        """The transcript as the latest update left it."""
        return LiveText(self.committed, self.tentative, self.language)

    def close(self, settle_seconds: float = 0.0) -> np.ndarray:
        """End the recording and return it, once an update in flight is done, so no audio fed before is left out.

        With `settle_seconds`, first wait (at most four times that) until no chunk has arrived for that long: a
        browser's last chunk can reach the server just after its "stop". Raises `AudioError` when nothing was recorded.
        """
        deadline = time.monotonic() + 4 * settle_seconds
        while len(self._buffer) and (quiet := time.monotonic() - self.last_active) < settle_seconds:
            time.sleep(max(0.0, min(settle_seconds - quiet, deadline - time.monotonic())))
            if time.monotonic() >= deadline:
                break
        with self._lock:
            if len(self._buffer) == 0:
                raise AudioError("Nothing was recorded: no audio reached the server. Press Record again, and let "
                                 "the browser use the microphone if it asks.")
            self.finished = True
            return self._buffer.view()

    def release(self) -> None:
        """Free the recording of a session that was abandoned or evicted; feeding it afterwards is refused."""
        with self._lock:
            self.finished = self.released = True
            self._buffer = SampleBuffer(0)

    def feed(self, chunk: tuple[int, np.ndarray] | None) -> None:
        """Append one chunk of new audio, Gradio's `(sample_rate, samples)`, mono or `(n, channels)`, any PCM type.

        Empty chunks are ignored. A chunk at a sample rate outside `CHUNK_RATES` or longer than `MAX_CHUNK_SECONDS` is
        refused before it is resampled. Past `max_seconds`, the part that fits is kept and `AudioTooLongError` raised.
        """
        if self.released:
            raise AudioError("This live recording was closed by the server (no audio for a while, or it needed the "
                             "room); stop it and record again.")
        if chunk is None or np.asarray(chunk[1]).size == 0:
            return
        check_chunk(chunk)
        samples = load_audio(chunk)
        self.last_active = time.monotonic()
        with self._lock:
            room = int(self.max_seconds * SAMPLE_RATE) - len(self._buffer)
            self._buffer.append(samples[:max(room, 0)])
        if len(samples) > room:
            limit = f"{self.max_seconds / 60:.0f} min" if self.max_seconds >= 60 else f"{self.max_seconds:.0f} s"
            raise AudioTooLongError(
                f"The live recording reached the {limit} limit; stop it to get the transcript of what was recorded, "
                "or start a new recording.")


def check_chunk(chunk: tuple[int, np.ndarray]) -> None:
    """Refuse a microphone chunk whose rate or length no microphone sends, before any work is spent on it."""
    rate, samples = chunk
    low, high = CHUNK_RATES
    if not isinstance(rate, (int, np.integer)) or not low <= rate <= high:
        raise AudioError(f"A live audio chunk came at a sample rate of {shown(rate)}; a microphone sends {low}-{high} "
                         "Hz. Record again from the page.")
    if np.asarray(samples).shape[0] > MAX_CHUNK_SECONDS * rate:
        raise AudioError(f"A live audio chunk held more than {MAX_CHUNK_SECONDS:g} s of audio; the page sends half a "
                         "second at a time. Record again from the page, or upload the recording.")


class LiveSessions:
    """The live recordings of one page (a `SpaceUI`), at most `max_sessions` at once, each at most `max_seconds` long.

    A session that has received no audio for `idle_seconds` is abandoned: the next `open` frees it, as does the
    page's state expiry (`release`), so a closed tab never keeps its recording in memory.
    """

    def __init__(self, max_sessions: int, max_seconds: float, idle_seconds: float = IDLE_SECONDS):
        self.max_sessions, self.max_seconds, self.idle_seconds = max(1, max_sessions), max_seconds, idle_seconds
        self._sessions: list[LiveSession] = []
        self._lock = threading.Lock()

    def open(self) -> LiveSession:
        """A new session, or `BusyError` when `max_sessions` recordings are already live."""
        now = time.monotonic()
        with self._lock:
            for session in self._sessions:
                if not session.finished and now - session.last_active > self.idle_seconds:
                    session.release()
            self._sessions = [session for session in self._sessions if not session.finished]
            if len(self._sessions) >= self.max_sessions:
                raise BusyError(f"This server is already taking {self.max_sessions} live recordings, its limit; try "
                                "again in a minute, or record with the Record tab and upload.")
            session = LiveSession(max_seconds=self.max_seconds)
            self._sessions.append(session)
            return session

    def active(self) -> int:
        """How many sessions are recording now."""
        with self._lock:
            return sum(not session.finished for session in self._sessions)

    def release(self, session: LiveSession | None) -> None:
        """Free a session's recording and slot (its page state expired, or the tab closed)."""
        if session is not None:
            session.release()
        with self._lock:
            self._sessions = [s for s in self._sessions if s is not session and not s.finished]


def update(
    session: LiveSession,
    manager: ModelManager,
    *,
    model: str | None = None,
    language: str | None = None,
    context: str | None = None,
    window_seconds: float = WINDOW_SECONDS,
    decode_every_seconds: float = DECODE_EVERY_SECONDS,
    max_new_tokens: int | None = None,
    asr: ClipTranscriber | None = None,
) -> LiveText:
    """Re-decode the window at the end of the recording, committing its older part once it outgrows `window_seconds`.

    Returns at once, without touching the model, until `decode_every_seconds` of new audio have arrived since the
    last decode. Silent audio is never sent to the model. `language` None or "auto" detects it per window. `asr`
    runs the model (default: `transcribe_clips` with `manager`).
    """
    forced = normalize_language(language)
    check_context(context, manager.settings)  # every update repeats it in the prompt
    if window_seconds <= MIN_TAIL_SECONDS:
        raise ValueError(f"window_seconds must exceed {MIN_TAIL_SECONDS} s, got {window_seconds}")
    with session._lock:
        end = len(session._buffer)
        if end - session.decoded_until < decode_every_seconds * SAMPLE_RATE:
            return session.live_text()
        window = session._buffer.view(session.window_start, end)
        pieces = _window_pieces(window, window_seconds)
        clips = [window[start:stop] for start, stop in pieces]
        asr = asr or functools.partial(transcribe_clips, manager)
        texts, languages = _decode(session, asr, model, clips, forced, context, max_new_tokens)
        for text in texts[:-1]:
            session.committed += text_separator(session.committed, text) + text
        session.tentative = texts[-1]
        session.language = forced or next((lang for lang in reversed(languages) if lang), session.language)
        session.window_start += pieces[-1][0]
        session.decoded_until = end
        return session.live_text()


def _window_pieces(window: np.ndarray, window_seconds: float) -> list[tuple[int, int]]:
    """Sample ranges of the window: the ones to commit, then the new window (never over `window_seconds`).

    A window within bounds stays whole. A longer one is cut at quiet points into pieces that leave at least
    `MIN_TAIL_SECONDS` (usually far more) in the new window, so the tentative text is never decoded from a sliver.
    """
    if len(window) <= window_seconds * SAMPLE_RATE:
        return [(0, len(window))]
    pieces = split_at_quiet_points(window, window_seconds - MIN_TAIL_SECONDS)
    if len(pieces) > 1 and pieces[-1][1] - pieces[-1][0] < MIN_TAIL_SECONDS * SAMPLE_RATE:
        pieces[-2:] = [(pieces[-2][0], pieces[-1][1])]
    return pieces


def _decode(
    session: LiveSession,
    asr: ClipTranscriber,
    model: str | None,
    clips: list[np.ndarray],
    forced: str | None,
    context: str | None,
    max_new_tokens: int | None,
) -> tuple[list[str], list[str | None]]:
    """Texts and detected languages of `clips`; silent clips give "" without a model run."""
    texts: list[str] = [""] * len(clips)
    languages: list[str | None] = [None] * len(clips)
    speech = [i for i, clip in enumerate(clips) if not is_silent(clip)]
    session.last_decoded_seconds = sum(len(clips[i]) for i in speech) / SAMPLE_RATE
    if not speech:
        return texts, languages
    outputs = asr([clips[i] for i in speech], model, forced, context, max_new_tokens)
    session.model_calls += 1
    for i, out in zip(speech, outputs):
        texts[i] = out.text.strip()
        languages[i] = detected_language(out.language)
    longest = max(len(clips[i]) for i in speech) / SAMPLE_RATE
    session.longest_clip_seconds = max(session.longest_clip_seconds, longest)
    return texts, languages


def transcribe_clips(
    manager: ModelManager,
    clips: list[np.ndarray],
    model: str | None,
    language: str | None,
    context: str | None,
    max_new_tokens: int | None = None,
) -> list[AsrOutput]:
    """`clips` (a live window's few pieces) through the ASR model in one call, one output per clip."""
    return manager.engine.transcribe(model, clips, [language] * len(clips), [context] * len(clips), max_new_tokens)

