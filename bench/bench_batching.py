"""Benchmarks for the public API (issue: public API).

1. Throughput: 4 concurrent clients (threads calling the pipeline in-process) each send a 30 s clip with a fixed
   100 new tokens (min_new_tokens = max_new_tokens = 100), against the same 4 requests served one by one, on
   real-size random 0.6B weights, float32 on CPU. The batcher merges the concurrent ones into one `generate`;
   the figure is the ratio of the two throughputs (goal ≥ 2.0).
2. Round trip: `gradio_client` calling `/transcribe` on a `python app.py` server with the tiny scripted checkpoints,
   minus the same pipeline (`transcribe` on the same file) in-process: the API's own cost per call (goal ≤ 150 ms).
   Also shown: the same call without fetching the two subtitle files, and a call with no model work (`/info`).

    python tests/checkpoints.py bench/.cache/Qwen3-ASR-0.6B-hf --real-size 0.6b   # once, ~2.4 GB of RAM
    python bench/bench_batching.py throughput [--repeats 1]
    python bench/bench_batching.py roundtrip [--repeats 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from qasr_space.models import ModelManager  # noqa: E402
from qasr_space.settings import Settings  # noqa: E402
from qasr_space.transcribe import iter_transcribe, transcribe  # noqa: E402
from tests.checkpoints import build_model_dir  # noqa: E402
from tests.media import tone, write_media  # noqa: E402

CLIENTS = 4
CLIP_SECONDS = 30.0
NEW_TOKENS = 100


def throughput(repeats: int) -> None:
    model_dir = str(ROOT / "bench" / ".cache")
    if not (Path(model_dir) / "Qwen3-ASR-0.6B-hf" / "model.safetensors").exists():
        sys.exit("build the real-size checkpoint first (see the docstring)")
    manager = ModelManager(Settings(model_dir=model_dir))
    clips = [tone(CLIP_SECONDS, freq=160.0 + 30 * i) for i in range(CLIENTS)]

    def request(audio: np.ndarray) -> None:
        # Drained without `collect`: random weights pick ids past the small test tokenizer, which decode to "".
        list(iter_transcribe(audio, manager=manager, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS))

    def one_by_one() -> None:
        for audio in clips:
            request(audio)

    def concurrent() -> None:
        barrier = threading.Barrier(CLIENTS)

        def client(audio: np.ndarray) -> None:
            barrier.wait()
            request(audio)

        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(client, clips))

    request(clips[0])  # load and warm up
    times: dict[str, list[float]] = {"one by one": [], "concurrent": []}
    calls: dict[str, list[int]] = {"one by one": [], "concurrent": []}
    for _ in range(repeats):
        for name, fn in (("concurrent", concurrent), ("one by one", one_by_one)):
            before = manager.batch_stats()["asr"]["model_calls"]
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
            calls[name].append(manager.batch_stats()["asr"]["model_calls"] - before)
            print(f"  {name}: {times[name][-1]:.1f} s", flush=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {CLIENTS} requests of a "
          f"{CLIP_SECONDS:.0f} s clip, {NEW_TOKENS} new tokens each; "
          f"batch window {manager.settings.batch_wait_ms:g} ms")
    for name in times:
        best = min(times[name])
        print(f"{name}: best {best:.1f} s ({CLIENTS / best * 60:.1f} requests/min), runs "
              f"{['%.1f' % t for t in times[name]]}, generate calls per run {calls[name]}")
    print(f"throughput ratio concurrent / one by one: {min(times['one by one']) / min(times['concurrent']):.2f}")


def roundtrip(repeats: int) -> None:
    from gradio_client import Client, handle_file

    from tests.browser import app_server

    with tempfile.TemporaryDirectory() as root:
        model_dir = build_model_dir(os.path.join(root, "models"))
        clip = str(write_media(os.path.join(root, "clip.wav"), tone(3.0), 16000, "wav"))
        manager = ModelManager(Settings(model_dir=model_dir))
        with app_server(model_dir) as url:
            client = Client(url, verbose=False)
            no_downloads = Client(url, verbose=False, download_files=False)
            runs = {
                "in-process transcribe": lambda: transcribe(clip, manager=manager),
                "gradio_client /transcribe": lambda: client.predict(audio=handle_file(clip), api_name="/transcribe"),
                "  same, download_files=False": lambda: no_downloads.predict(audio=handle_file(clip),
                                                                             api_name="/transcribe"),
                "  gradio_client /info (no model work)": lambda: client.predict(api_name="/info"),
            }
            for fn in runs.values():  # load and warm up on both sides
                fn()
            times: dict[str, list[float]] = {name: [] for name in runs}
            for _ in range(repeats):
                for name, fn in runs.items():
                    started = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, t in times.items():
        print(f"{name}: median {medians[name] * 1000:.0f} ms, min {min(t) * 1000:.0f} ms over {repeats}")
    pipeline = medians["in-process transcribe"]
    print(f"round-trip overhead (median client - median in-process): "
          f"{(medians['gradio_client /transcribe'] - pipeline) * 1000:.0f} ms; without fetching the subtitle files "
          f"{(medians['  same, download_files=False'] - pipeline) * 1000:.0f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["throughput", "roundtrip"])
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    if args.what == "throughput":
        throughput(args.repeats or 1)
    else:
        roundtrip(args.repeats or 20)
