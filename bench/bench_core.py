"""Benchmarks for the core pipeline (issue: core).

1. Overhead: `transcribe()` end to end against the bare reference calls (`processor.apply_transcription_request`
   + `model.generate` + `processor.decode(return_format="parsed")`) on real-size random 0.6B weights, float32 on
   CPU, a 30 s clip and a fixed 100 new tokens. Runs alternate, so both see the same machine; the ratio of the
   medians is the figure (goal ≤ 1.05). The reference runs on the scheduler's consumer thread, as the core does.
2. Memory: one hour of audio through the tiny scripted checkpoints, with word timestamps, in a fresh process;
   peak RSS above the RSS with the models loaded (goal ≤ 1.5 GB).

    python tests/checkpoints.py bench/.cache/Qwen3-ASR-0.6B-hf --real-size 0.6b   # once, ~2.4 GB of RAM
    python bench/bench_core.py overhead [--repeats 3]
    python bench/bench_core.py memory
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import torch  # noqa: E402

from qasr_space.errors import NoSpeechError  # noqa: E402
from qasr_space.models import ModelManager  # noqa: E402
from qasr_space.scheduler import SCHEDULER  # noqa: E402
from qasr_space.settings import Settings  # noqa: E402
from qasr_space.transcribe import transcribe  # noqa: E402
from tests.checkpoints import build_model_dir  # noqa: E402
from tests.media import tone  # noqa: E402

NEW_TOKENS = 100


def overhead(repeats: int) -> None:
    model_dir = str(ROOT / "bench" / ".cache")
    if not (Path(model_dir) / "Qwen3-ASR-0.6B-hf" / "model.safetensors").exists():
        sys.exit("build the real-size checkpoint first (see the docstring)")
    manager = ModelManager(Settings(model_dir=model_dir))
    loaded = manager.asr("0.6B")
    model, processor = loaded.model, loaded.processor
    audio = tone(30.0)

    def reference() -> None:
        inputs = processor.apply_transcription_request(audio=audio).to(model.device, model.dtype)
        with torch.inference_mode():
            out = model.generate(**inputs, min_new_tokens=NEW_TOKENS, max_new_tokens=NEW_TOKENS)
        processor.decode(out[:, inputs["input_ids"].shape[1]:], return_format="parsed")

    def bare() -> None:
        SCHEDULER.run(reference)  # the thread the core's model work runs on (see `scheduler`)

    def core() -> None:
        try:
            transcribe(audio, manager=manager, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
        except NoSpeechError:
            pass  # random weights pick ids past the small test tokenizer, which decode to "": all work is done by then

    bare()
    core()
    times: dict[str, list[float]] = {"bare": [], "core": []}
    for _ in range(repeats):
        for name, fn in (("bare", bare), ("core", core)):
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    bare_s, core_s = statistics.median(times["bare"]), statistics.median(times["core"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, 30 s clip, {NEW_TOKENS} new tokens")
    print(f"bare reference: median {bare_s:.2f} s  {['%.2f' % t for t in times['bare']]}")
    print(f"core transcribe: median {core_s:.2f} s  {['%.2f' % t for t in times['core']]}")
    print(f"ratio core/bare: {core_s / bare_s:.3f}")


def memory() -> None:
    with tempfile.TemporaryDirectory() as root:
        manager = ModelManager(Settings(model_dir=build_model_dir(root)))
        manager.asr("0.6B")
        manager.aligner()
        loaded_rss = psutil.Process().memory_info().rss
        rng = np.random.default_rng(0)
        hour = np.concatenate([tone(60.0, freq=150.0 + 10 * (i % 7)) * np.float32(rng.uniform(0.5, 1.0))
                               for i in range(60)])
        started = time.perf_counter()
        result = transcribe(hour, manager=manager, timestamps=True)
        elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"1 h through the tiny scripted models with timestamps: {len(result.chunks)} chunks, "
          f"{len(result.words)} words, {elapsed:.1f} s")
    print(f"RSS with models loaded {loaded_rss / 2**20:.0f} MB; peak {peak / 2**20:.0f} MB; "
          f"above loaded {(peak - loaded_rss) / 2**20:.0f} MB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["overhead", "memory"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    overhead(args.repeats) if args.what == "overhead" else memory()
