"""Shared fixtures. No test may reach the network: the hub is forced offline before transformers is imported."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402

from tests.checkpoints import build_model_dir, build_tone_model_dir  # noqa: E402


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> str:
    """A QASR_MODEL_DIR with the scripted 0.6B ASR, the scripted aligner and a tiny random 1.7B (`build_model_dir`)."""
    return build_model_dir(str(tmp_path_factory.mktemp("models")))


@pytest.fixture(scope="session")
def settings(model_dir):
    from qasr_space.settings import Settings

    return Settings(model_dir=model_dir, batch_size=4)


@pytest.fixture(scope="session")
def manager(settings):
    from qasr_space.models import ModelManager

    return ModelManager(settings)


@pytest.fixture(scope="session")
def tone_model_dir(tmp_path_factory) -> str:
    """A QASR_MODEL_DIR whose 0.6B is the tone model: its word names the tone band of the audio (`build_tone_asr`)."""
    return build_tone_model_dir(str(tmp_path_factory.mktemp("tone_models")))


@pytest.fixture(scope="session")
def tone_manager(tone_model_dir):
    """A manager of the tone model, batching up to 8 clips per model call, shared by the tests that need it."""
    from qasr_space.models import ModelManager
    from qasr_space.settings import Settings

    return ModelManager(Settings(model_dir=tone_model_dir, batch_size=8))


@pytest.fixture(scope="session")
def dialog2(tmp_path_factory):
    """Two espeak-ng voices talking for 40 s, with their turns known exactly (`tests.dialogs`)."""
    from tests.dialogs import build_dialog

    return build_dialog(tmp_path_factory.mktemp("dialogs") / "two.wav", speakers=2, seconds=40, seed=1)
