"""Benchmark: per-update latency of live transcription after 1, 5 and 10 minutes of session time.

Run from the repository root, with a real-size checkpoint (random weights do the same work as trained ones):

    QASR_MODEL_DIR=bench/.cache python bench/bench_streaming.py [--points 1 5 10] [--updates 12] [--naive 1 5]

One `LiveSession` is fed synthetic speech as the browser sends it (48 kHz int16 chunks of `--chunk` seconds). To
reach 10 minutes without streaming for 10 minutes, the session runs between measurement points with updates every
`--advance-every` seconds of audio, generating `--advance-tokens` tokens per clip: the same `update`, whose commits
cut, encode and decode every piece as in a live session, only less often and with shorter texts (the texts of random
weights mean nothing; the session state they leave, the recording and the window, is the design's own). At each
point it switches to an update per chunk (one untimed, to catch up) and times `--updates` of them (feed + update, as
the UI handler does), each model call generating exactly `--max-new-tokens` tokens, so the figures compare audio
lengths, not how much a random model babbles. For contrast, `--naive` times re-decoding all audio heard so far
(what stalls long sessions).
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=float, nargs="+", default=[1, 5, 10], help="minutes of session time")
    parser.add_argument("--updates", type=int, default=12, help="updates timed at each point")
    parser.add_argument("--chunk", type=float, default=1.0, help="seconds of new audio per chunk and update")
    parser.add_argument("--advance-every", type=float, default=30.0, help="update cadence between points (s)")
    parser.add_argument("--advance-tokens", type=int, default=1, help="tokens per clip between points")
    parser.add_argument("--window", type=float, default=WINDOW_SECONDS)
    parser.add_argument("--max-new-tokens", type=int, default=20)
    parser.add_argument("--naive", type=float, nargs="*", default=[1, 5], help="minutes to time the naive re-decode")
    args = parser.parse_args()

    settings = Settings.from_env()
    manager = ModelManager(settings)
    started = time.perf_counter()
    loaded = manager.asr("0.6B")
    print(f"model: {manager.resolve(loaded.name)} ({loaded.dtype}, {loaded.device}), loaded in "
          f"{time.perf_counter() - started:.1f} s; torch threads {torch.get_num_threads()}; load {load():.2f}",
          flush=True)
    # Every generate runs exactly max_new_tokens steps, as a trained model's EOS would otherwise vary it.
    loaded.model.generation_config.eos_token_id = None

    end_minutes = max(args.points) + args.updates * args.chunk / 60
    pcm = synthetic_speech(end_minutes * 60 + 1)
    step = int(args.chunk * MIC_RATE)
    chunks = [(MIC_RATE, pcm[i:i + step]) for i in range(0, len(pcm), step)]
    session = LiveSession()
    position = 0

    def feed_and_update(every: float, tokens: int) -> tuple[float, float]:
        """Wall and CPU seconds of one handler call; CPU time is less disturbed by other jobs on the machine."""
        nonlocal position
        begin, cpu = time.perf_counter(), time.process_time()
        session.feed(chunks[position])
        update(session, manager, window_seconds=args.window, decode_every_seconds=every, max_new_tokens=tokens)
        position += 1
        return time.perf_counter() - begin, time.process_time() - cpu

    feed_and_update(args.chunk, args.max_new_tokens)  # warm-up
    rows = []
    for minutes in sorted(args.points):
        begin, calls = time.perf_counter(), session.model_calls
        while (position + 1) * args.chunk < minutes * 60:
            feed_and_update(args.advance_every, args.advance_tokens)
        feed_and_update(args.chunk, args.advance_tokens)  # catch up the backlog a coarse cadence leaves
        advanced, calls = time.perf_counter() - begin, session.model_calls - calls
        latencies, cpu_times, windows, commits = [], [], [], 0
        for _ in range(args.updates):
            window_start = session.window_start
            wall, cpu = feed_and_update(args.chunk, args.max_new_tokens)
            latencies.append(wall)
            cpu_times.append(cpu)
            windows.append(session.last_decoded_seconds)
            commits += session.window_start != window_start
        rows.append((minutes, statistics.median(latencies), statistics.median(cpu_times)))
        print(f"{minutes:g} min: per-update latency median {statistics.median(latencies):.2f} s, p90 "
              f"{np.percentile(latencies, 90):.2f} s, max {max(latencies):.2f} s over {args.updates} updates "
              f"({commits} committing); CPU time median {statistics.median(cpu_times):.2f} s", flush=True)
        print(f"  audio sent to the model per update: median {statistics.median(windows):.1f} s, max "
              f"{max(windows):.1f} s; session {session.seconds:.0f} s, {session.window_start / SAMPLE_RATE:.0f} s "
              f"committed; load {load():.2f}; reached in {advanced:.0f} s with {calls} model calls", flush=True)

    for minutes, wall, cpu in rows[1:]:
        print(f"ratio {minutes:g} min / {rows[0][0]:g} min: latency {wall / rows[0][1]:.2f}, CPU time "
              f"{cpu / rows[0][2]:.2f}")

    audio = load_audio((MIC_RATE, pcm))
    for minutes in args.naive:
        clip = audio[: int(minutes * 60 * SAMPLE_RATE)]
        begin = time.perf_counter()
        run_asr(loaded, [clip], [None], [None], args.max_new_tokens)
        print(f"naive re-decode of everything at {minutes:g} min ({len(clip) / SAMPLE_RATE:.0f} s of audio): "
              f"{time.perf_counter() - begin:.1f} s per update; load {load():.2f}", flush=True)


if __name__ == "__main__":
    main()
