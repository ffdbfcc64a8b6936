"""Benchmark: per-update latency of live transcription after 1, 5 and 10 minutes of session time.

Run from the repository root, with a real-size checkpoint (random weights do the same work as trained ones):

    QASR_MODEL_DIR=bench/.cache python bench/bench_streaming.py [--points 1 5 10] [--updates 10] [--naive 1 5]

For each point a `LiveSession` is fed synthetic speech as the browser sends it (48 kHz int16 chunks of `--chunk`
seconds). To reach 10 minutes without streaming for 10 minutes, it runs with updates every `--advance-every` seconds
of audio, generating `--advance-tokens` tokens per clip: the same `update`, whose commits cut, encode and decode every
piece as in a live session, only less often and with shorter texts (the texts of random weights mean nothing; the
state they leave, the recording and the window, is the design's own). Then one update at the chunk cadence catches
up, and `--updates` updates per session are timed (feed + update, as the UI handler does), round robin over the
sessions so that other jobs on a shared machine slow every point alike. Each timed model call generates exactly
`--max-new-tokens` tokens, so the figures compare audio lengths, not how much a random model babbles. For contrast,
`--naive` times re-decoding all audio heard so far (what stalls long sessions).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QASR_MODEL_DIR", str(ROOT / "bench" / ".cache"))
os.environ["HF_HUB_OFFLINE"] = "1"

import torch  # noqa: E402

from qasr_space.audio import SAMPLE_RATE, load_audio  # noqa: E402
from qasr_space.inference import run_asr  # noqa: E402
from qasr_space.models import ModelManager  # noqa: E402
from qasr_space.settings import Settings  # noqa: E402
from qasr_space.streaming import WINDOW_SECONDS, LiveSession, update  # noqa: E402
from tests.media import tone  # noqa: E402

MIC_RATE = 48000


def synthetic_speech(seconds: float) -> np.ndarray:
    """48 kHz int16 "sentences" of 2-7 s with pauses of 0.2-0.8 s, so quiet-point cuts behave as with speech."""
    rng = np.random.default_rng(0)
    parts, total = [], 0
    while total < seconds * MIC_RATE:
        parts.append(tone(rng.uniform(2.0, 7.0), MIC_RATE, freq=rng.uniform(100.0, 250.0)))
        parts.append(np.zeros(int(rng.uniform(0.2, 0.8) * MIC_RATE), np.float32))
        total += len(parts[-2]) + len(parts[-1])
    audio = np.concatenate(parts)[: int(seconds * MIC_RATE)]
    return np.round(audio * 32767).astype(np.int16)


def load() -> float:
    return os.getloadavg()[0]


class Stream:
    """One live session fed the benchmark's chunks in order, as one browser would send them."""

    def __init__(self, chunks: list[tuple[int, np.ndarray]], manager: ModelManager, window: float) -> None:
        self.session, self.chunks, self.manager, self.window, self.position = LiveSession(), chunks, manager, window, 0

    def step(self, every: float, tokens: int) -> tuple[float, float]:
        """Wall and CPU seconds of one handler call (feed + update); CPU time suffers less from other jobs."""
        begin, cpu = time.perf_counter(), time.process_time()
        self.session.feed(self.chunks[self.position])
        update(self.session, self.manager, window_seconds=self.window, decode_every_seconds=every,
               max_new_tokens=tokens)
        self.position += 1
        return time.perf_counter() - begin, time.process_time() - cpu

    def advance(self, seconds: float, every: float, tokens: int) -> None:
        """Run the session to `seconds` of audio at a coarse cadence, then one update at the chunk cadence that
        catches up the backlog the coarse cadence leaves."""
        while (self.position + 1) * len(self.chunks[0][1]) / MIC_RATE < seconds:
            self.step(every, tokens)
        self.step(0.0, tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=float, nargs="+", default=[1, 5, 10], help="minutes of session time")
    parser.add_argument("--updates", type=int, default=10, help="updates timed at each point")
    parser.add_argument("--chunk", type=float, default=1.0, help="seconds of new audio per chunk and update")
    parser.add_argument("--advance-every", type=float, default=30.0, help="update cadence before the points (s)")
    parser.add_argument("--advance-tokens", type=int, default=1, help="tokens per clip before the points")
    parser.add_argument("--window", type=float, default=WINDOW_SECONDS)
    parser.add_argument("--max-new-tokens", type=int, default=20)
    parser.add_argument("--naive", type=float, nargs="*", default=[1, 5], help="minutes to time the naive re-decode")
    args = parser.parse_args()

    manager = ModelManager(Settings.from_env())
    started = time.perf_counter()
    loaded = manager.asr("0.6B")
    print(f"model: {manager.resolve(loaded.name)} ({loaded.dtype}, {loaded.device}), loaded in "
          f"{time.perf_counter() - started:.1f} s; torch threads {torch.get_num_threads()}; load {load():.2f}",
          flush=True)
    # Every generate runs exactly max_new_tokens steps, as a trained model's EOS would otherwise vary it.
    loaded.model.generation_config.eos_token_id = None

    pcm = synthetic_speech(max(args.points) * 60 + args.updates * args.chunk + 1)
    step = int(args.chunk * MIC_RATE)
    chunks = [(MIC_RATE, pcm[i:i + step]) for i in range(0, len(pcm), step)]
    Stream(chunks, manager, args.window).step(args.chunk, args.max_new_tokens)  # warm-up
    streams = {}
    for minutes in args.points:
        begin = time.perf_counter()
        streams[minutes] = Stream(chunks, manager, args.window)
        streams[minutes].advance(minutes * 60, args.advance_every, args.advance_tokens)
        print(f"session at {minutes:g} min: reached in {time.perf_counter() - begin:.0f} s with "
              f"{streams[minutes].session.model_calls} model calls; load {load():.2f}", flush=True)

    # Round robin, so load from other jobs on the machine falls on every point alike.
    timings: dict[float, list[tuple[float, float, float, bool]]] = {minutes: [] for minutes in args.points}
    for _ in range(args.updates):
        for minutes, stream in streams.items():
            window_start = stream.session.window_start
            wall, cpu = stream.step(args.chunk, args.max_new_tokens)
            committed = stream.session.window_start != window_start
            timings[minutes].append((wall, cpu, stream.session.last_decoded_seconds, committed))
    print(f"load after timing {load():.2f}")

    medians = {}
    for minutes, rows in timings.items():
        walls, cpus, audio_seconds, commits = (list(column) for column in zip(*rows))
        medians[minutes] = statistics.median(walls), statistics.median(cpus)
        print(f"{minutes:g} min: per-update latency median {medians[minutes][0]:.2f} s, p90 "
              f"{np.percentile(walls, 90):.2f} s, max {max(walls):.2f} s over {len(rows)} updates "
              f"({sum(commits)} committing); CPU time median {medians[minutes][1]:.2f} s; audio sent to the model "
              f"median {statistics.median(audio_seconds):.1f} s, max {max(audio_seconds):.1f} s")
    first = args.points[0]
    for minutes in args.points[1:]:
        print(f"ratio {minutes:g} min / {first:g} min: latency {medians[minutes][0] / medians[first][0]:.2f}, "
              f"CPU time {medians[minutes][1] / medians[first][1]:.2f}")

    audio = load_audio((MIC_RATE, pcm))
    for minutes in args.naive:
        clip = audio[: int(minutes * 60 * SAMPLE_RATE)]
        begin = time.perf_counter()
        run_asr(loaded, [clip], [None], [None], args.max_new_tokens)
        print(f"naive re-decode of everything at {minutes:g} min ({len(clip) / SAMPLE_RATE:.0f} s of audio): "
              f"{time.perf_counter() - begin:.1f} s per update; load {load():.2f}", flush=True)


if __name__ == "__main__":
    main()
