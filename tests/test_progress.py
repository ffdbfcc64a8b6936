"""Progress that moves within a batch, and Cancel: `TranscriptionWatch` on its own (with a made-up clock), then on the
real scripted checkpoints, alone and merged with other requests. Long decodes are forced with `min_new_tokens`, which
keeps the scripted model from ending its sentence."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from qasr_space.audio import SAMPLE_RATE
from qasr_space.errors import Cancelled, QasrError
from qasr_space.inference import run_asr
from qasr_space.models import LoadedModel, ModelManager
from qasr_space.progress import CLIP_CAP, TYPICAL_TOKENS_PER_SECOND, TranscriptionWatch
from qasr_space.transcribe import iter_transcribe, transcribe
from tests.checkpoints import SCRIPTED_SENTENCE
from tests.media import tone
from tests.test_batching import GATHER_SECONDS, concurrently
from tests.test_transcribe import speech_with_gaps
from tests.engines import suite_settings

#: Far more steps than any test lets run: a decode that is not stopped would take seconds.
LONG = 3000


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class RecordingWatch(TranscriptionWatch):
    """A watch that keeps a snapshot of every step reported to it."""

    def __init__(self) -> None:
        super().__init__()
        self.readings = []

    def decoding_step(self, step: int) -> None:
        super().decoding_step(step)
        self.readings.append(self.snapshot())


def wait_for_tokens(watch: TranscriptionWatch, tokens: int) -> None:
    """Return once `watch` has seen `tokens` decoding steps (or after 30 s, when the test fails anyway)."""
    deadline = time.monotonic() + 30
    while watch.snapshot().tokens < tokens and time.monotonic() < deadline:
        time.sleep(0.002)


def cancel_after(watch: TranscriptionWatch, tokens: int) -> threading.Thread:
    """Cancel `watch` from another thread once it has seen `tokens` decoding steps."""

    def run() -> None:
        wait_for_tokens(watch, tokens)
        watch.cancel()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@contextmanager
def forward_passes(loaded: LoadedModel) -> Iterator[list[int]]:
    """Count the model's forward passes (a `generate` makes one per step) while the block runs: `[count]`."""
    count = [0]

    def hook(module, args, output) -> None:
        count[0] += 1

    handle = loaded.model.register_forward_hook(hook)
    try:
        yield count
    finally:
        handle.remove()


def asr_calls(manager: ModelManager, kind: str = "asr") -> int:
    return manager.batch_stats()[kind]["model_calls"]


def test_the_estimate_counts_typical_speech_not_the_token_budget():
    clock = Clock()
    watch = TranscriptionWatch(clock=clock)
    assert watch.snapshot().fraction == 0.0 and watch.snapshot().seconds_left is None
    watch.expect(60.0, chunks=2)
    watch.decoding_started([30.0], budget=392)
    clock.now += 10.0
    watch.decoding_step(60)  # 60 tokens ≈ 15 s of speech: a quarter of the audio, in 10 s of work
    reading = watch.snapshot()
    assert (reading.tokens, reading.token_budget, reading.chunks, reading.chunks_done) == (60, 392, 2, 0)
    assert reading.fraction == pytest.approx(60 / TYPICAL_TOKENS_PER_SECOND / 60.0)
    assert reading.seconds_left == pytest.approx(30.0)
    assert reading.elapsed_seconds == pytest.approx(10.0)
    watch.decoding_step(300)  # faster speech than usual: the clip waits at the cap until its call returns
    assert watch.snapshot().fraction == pytest.approx(CLIP_CAP * 30.0 / 60.0)
    watch.decoding_step(5000)  # never past the call's budget
    assert watch.snapshot().tokens == 392
    watch.decoding_finished()
    watch.chunks_finished(1)
    reading = watch.snapshot()
    assert (reading.fraction, reading.tokens, reading.chunks_done) == (0.5, 392, 1)
    watch.decoding_started([30.0], budget=392)
    watch.decoding_step(400)
    assert watch.snapshot().fraction < 1.0 and watch.snapshot().token_budget == 784
    watch.decoding_finished()
    assert watch.snapshot().fraction == 1.0 and watch.snapshot().seconds_left == 0.0


def test_cancel_raises_a_plain_error():
    watch = TranscriptionWatch()
    watch.raise_if_cancelled()
    watch.cancel()
    assert watch.cancelled and watch.snapshot().cancelled
    with pytest.raises(Cancelled, match="stopped before it finished") as caught:
        watch.raise_if_cancelled()
    assert isinstance(caught.value, QasrError)


def test_every_step_is_reported_and_the_tokens_are_those_of_a_call_without_a_watch(manager):
    loaded = manager.asr("0.6B")
    watch = RecordingWatch()
    request = ([tone(3.0)], ["English"], [None], 60)
    watched = run_asr(loaded, *request, watch=watch, min_new_tokens=60)
    assert watched == run_asr(loaded, *request, min_new_tokens=60)
    assert watched[0].text.startswith(SCRIPTED_SENTENCE)
    assert [r.tokens for r in watch.readings] == list(range(1, 61))
    fractions = [r.fraction for r in watch.readings]
    assert fractions == sorted(fractions) and all(0.0 < f < 1.0 for f in fractions)
    assert all(r.seconds_left is not None and math.isfinite(r.seconds_left) for r in watch.readings)
    final = watch.snapshot()
    assert (final.fraction, final.tokens, final.token_budget, final.seconds_left) == (1.0, 60, 60, 0.0)


def test_cancel_from_another_thread_stops_a_long_decode(manager):
    loaded = manager.asr("0.6B")
    watch = TranscriptionWatch()
    canceller = cancel_after(watch, 10)
    with forward_passes(loaded) as passes, pytest.raises(Cancelled):
        run_asr(loaded, [tone(2.0)], ["English"], [None], LONG, watch=watch, min_new_tokens=LONG)
    canceller.join()
    reading = watch.snapshot()
    assert 10 <= reading.tokens <= passes[0] < LONG // 10
    assert reading.fraction < 1.0 and reading.cancelled


def test_a_cancelled_request_leaves_the_others_in_its_batch_unchanged(model_dir, manager):
    """A (watched, cancelled early), B (no watch) and C (watched) share one call; B and C get what they get alone."""
    gathering = ModelManager(suite_settings(model_dir, batch_size=3, batch_wait_ms=GATHER_SECONDS * 1000))
    loaded = gathering.asr("0.6B")
    steps = 120
    requests = [([tone(2.0)], ["English"], [None], steps), ([tone(3.0, freq=260.0)], [None], [None], steps),
                ([tone(2.5, freq=300.0)], ["German"], ["names: Ada"], steps)]
    watches = [TranscriptionWatch(), None, TranscriptionWatch()]
    canceller = cancel_after(watches[0], 5)
    outputs = concurrently([lambda r=r, w=w: run_asr(loaded, *r, watch=w, min_new_tokens=steps)
                            for r, w in zip(requests, watches)])
    canceller.join()
    assert asr_calls(gathering) == 1  # watched and unwatched requests batch together
    assert isinstance(outputs[0], Cancelled)
    alone = [run_asr(manager.asr("0.6B"), *r, min_new_tokens=steps) for r in requests[1:]]
    assert outputs[1:] == alone
    assert 5 <= watches[0].snapshot().tokens < steps
    assert watches[2].snapshot().tokens == steps and watches[2].snapshot().fraction == 1.0


def test_a_call_cancelled_while_queued_never_starts(model_dir):
    """One clip per call: B waits in the queue while A decodes; cancelled there, it never reaches the model."""
    serial = ModelManager(suite_settings(model_dir, batch_size=1))
    loaded = serial.asr("0.6B")
    first, queued = TranscriptionWatch(), TranscriptionWatch()
    steps = 400
    results = {}

    def run(name, watch, clip, **options):
        try:
            results[name] = run_asr(loaded, [clip], ["English"], [None], steps, watch=watch, **options)
        except Cancelled as exc:
            results[name] = exc

    running = threading.Thread(target=run, args=("first", first, tone(2.0)), kwargs={"min_new_tokens": steps})
    running.start()
    wait_for_tokens(first, 1)
    waiting = threading.Thread(target=run, args=("queued", queued, tone(1.0)))
    waiting.start()
    time.sleep(0.1)
    queued.cancel()
    running.join()
    waiting.join()
    assert isinstance(results["queued"], Cancelled)
    assert queued.snapshot().tokens == 0 and queued.snapshot().token_budget == 0
    assert len(results["first"][0].text) > len(SCRIPTED_SENTENCE) and first.snapshot().tokens == steps


@pytest.fixture(scope="module")
def chunking_manager(model_dir) -> ModelManager:
    """Chunks of at most 4 s, one per model call, so a few seconds of audio take several calls."""
    return ModelManager(suite_settings(model_dir, chunk_seconds=4.0, batch_size=1))


def test_cancel_between_chunks_starts_no_further_chunk(chunking_manager):
    watch = TranscriptionWatch()
    asr_before, aligner_before = asr_calls(chunking_manager), asr_calls(chunking_manager, "aligner")
    audio = speech_with_gaps([3.0, 3.0, 3.0])
    results = iter_transcribe(audio, manager=chunking_manager, timestamps=True, watch=watch)
    first = next(results)
    assert first.chunk.text == SCRIPTED_SENTENCE and first.words
    reading = watch.snapshot()
    assert reading.chunks_done == 1 and reading.chunks >= 3
    assert reading.fraction == pytest.approx(first.chunk.end / (len(audio) / SAMPLE_RATE))
    watch.cancel()
    with pytest.raises(Cancelled):
        next(results)
    assert asr_calls(chunking_manager) - asr_before == 1
    assert asr_calls(chunking_manager, "aligner") - aligner_before == 1


def test_cancel_during_a_chunk_skips_its_aligner_pass_and_the_rest(chunking_manager):
    watch = TranscriptionWatch()
    asr_before, aligner_before = asr_calls(chunking_manager), asr_calls(chunking_manager, "aligner")
    canceller = cancel_after(watch, 5)
    with forward_passes(chunking_manager.asr()) as passes, pytest.raises(Cancelled):
        transcribe(speech_with_gaps([3.0, 3.0, 3.0]), manager=chunking_manager, timestamps=True, watch=watch,
                   max_new_tokens=LONG, min_new_tokens=LONG)
    canceller.join()
    assert asr_calls(chunking_manager) - asr_before == 1 and passes[0] < LONG // 10
    assert asr_calls(chunking_manager, "aligner") - aligner_before == 0
    assert watch.snapshot().chunks_done == 0
