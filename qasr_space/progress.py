"""Progress and Cancel for one transcription request, while its clips decode in batches that may hold other requests.

A `TranscriptionWatch` is made by whoever serves the request (the page) and passed down through `transcribe` /
`iter_transcribe` / `run_asr`. The core reports to it: the plan (audio length, chunks), each decoding the request's
clips are in (a per-step batch it joined, or a `generate` call), and every decoding step of it (each request in a
batch hears its own steps). Anyone may read a `snapshot()` from any thread, and `cancel()` it: a cancelled
request's calls that have not started never start, its rows in a running batch stop at the next step (other
requests' rows decode on, unchanged), the aligner is skipped, and the caller gets `Cancelled`.

How far along it is, honestly: the token budget (`inference.new_tokens_for`, ~12 tokens per second of audio) is a
bound that real speech never reaches, and the model stops at its end-of-text token, usually far earlier, so the
budget would make the bar crawl and then jump. The estimate instead assumes `TYPICAL_TOKENS_PER_SECOND`: after `n`
steps a clip of `s` seconds counts as `min(n / TYPICAL_TOKENS_PER_SECOND, CLIP_CAP * s)` seconds transcribed. Fast
speech reaches the cap early and waits there; slow speech, pauses or music end the call before the estimate gets
there, and the bar jumps when it returns. A clip counts in full only once its call has returned, so the fraction
stays below 1 until the last call is done. The aligner's pass after a batch is not counted: it is one forward pass,
short beside the decoding.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .errors import Cancelled

#: What speech usually costs the Qwen3 tokenizer: about 3 per second for English at a conversational pace, 4-5 for
#: Chinese; the few tokens of the language tag are lost in it.
TYPICAL_TOKENS_PER_SECOND = 4.0
#: The most of a clip counted as transcribed while its call still runs.
CLIP_CAP = 0.95
#: Float sums of chunk lengths may miss the audio's length by a rounding error; within this, all of it is done.
_SECONDS_TOLERANCE = 1e-3


@dataclass(frozen=True)
class ProgressSnapshot:
    """One reading of a `TranscriptionWatch`, for a progress bar and a time estimate."""

    #: Decoding steps run for this request (one token per row per step), each call's counted up to its budget.
    tokens: int
    #: The `max_new_tokens` of the calls begun so far, added up: the most `tokens` could be by their end.
    token_budget: int
    chunks_done: int
    #: Chunks the audio was cut into (0 when nobody said: `run_asr` used on its own).
    chunks: int
    #: Seconds since the watch was made (the request began), waits in the queue included.
    elapsed_seconds: float
    #: Estimated share of the audio transcribed, in [0, 1]; 1 only when every call has returned (see the module).
    fraction: float
    #: Estimated seconds until the last call returns, extrapolated from the work so far; None before the first step.
    seconds_left: float | None
    cancelled: bool


@dataclass
class _Call:
    """The `generate` call this request's clips are in now."""

    clip_seconds: list[float]
    budget: int
    steps: int = 0


class TranscriptionWatch:
    """Progress of one request and its Cancel switch; thread-safe (see the module docstring).

    One request at a time: its calls run one after another. Transcribing several files at once takes a watch each.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
        self._created = clock()
        self._working_since: float | None = None
        self._total_seconds: float | None = None
        self._chunks = 0
        self._chunks_done = 0
        self._done_seconds = 0.0
        self._done_tokens = 0
        self._done_budget = 0
        self._call: _Call | None = None

    def cancel(self) -> None:
        """Stop the request: from any thread, at any time; it takes effect at the next decoding step."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise `Cancelled` once `cancel` was called; the core calls this before each piece of work."""
        if self.cancelled:
            raise Cancelled("Cancelled: the transcription was stopped before it finished.")

    def expect(self, seconds: float, chunks: int) -> None:
        """The plan: `seconds` of audio in `chunks` chunks (called by `iter_transcribe` before any work)."""
        with self._lock:
            self._total_seconds = seconds
            self._chunks = chunks

    def decoding_started(self, clip_seconds: list[float], budget: int) -> None:
        """A `generate` call with this request's clips (their lengths) and token budget begins; a call run again
        after a merged batch failed starts afresh."""
        with self._lock:
            if self._working_since is None:
                self._working_since = self._clock()
            self._call = _Call(list(clip_seconds), budget)

    def decoding_step(self, step: int) -> None:
        """The running call has decoded `step` tokens per row (reported at every step)."""
        with self._lock:
            if self._call is not None:
                self._call.steps = min(step, self._call.budget)

    def decoding_finished(self) -> None:
        """The running call returned: its clips count as transcribed, unless the request was cancelled."""
        with self._lock:
            call, self._call = self._call, None
            if call is None:
                return
            self._done_tokens += call.steps
            self._done_budget += call.budget
            if not self.cancelled:
                self._done_seconds += sum(call.clip_seconds)

    def chunks_finished(self, count: int) -> None:
        """`count` more chunks are done, words included (called by `iter_transcribe` after each batch)."""
        with self._lock:
            self._chunks_done += count

    def snapshot(self) -> ProgressSnapshot:
        """A consistent reading, from any thread (a page polls it while the batch decodes)."""
        with self._lock:
            now = self._clock()
            call = self._call
            running_seconds = sum(call.clip_seconds) if call else 0.0
            covered = self._done_seconds
            if call is not None:
                covered += sum(min(call.steps / TYPICAL_TOKENS_PER_SECOND, CLIP_CAP * seconds)
                               for seconds in call.clip_seconds)
            total = max(self._total_seconds or 0.0, self._done_seconds + running_seconds)
            if total <= 0:
                fraction = 0.0
            elif call is None and self._done_seconds >= total - _SECONDS_TOLERANCE:
                fraction = 1.0
            else:  # below 1: a running call's clips count at most CLIP_CAP of their length
                fraction = covered / total
            seconds_left = None
            if self._working_since is not None and fraction > 0:
                seconds_left = (now - self._working_since) * (1.0 - fraction) / fraction
            return ProgressSnapshot(
                tokens=self._done_tokens + (call.steps if call else 0),
                token_budget=self._done_budget + (call.budget if call else 0),
                chunks_done=self._chunks_done, chunks=self._chunks, elapsed_seconds=now - self._created,
                fraction=fraction, seconds_left=seconds_left, cancelled=self.cancelled,
            )
