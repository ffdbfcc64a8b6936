"""Engines: what turns clips into text, behind one interface.

Everything that transcribes (`transcribe`, live streaming, the page, the named endpoints, REST and the CLI) calls
`AsrEngine.transcribe` on the manager's engine, and never a model directly. Two engines sit behind it:

- `TransformersEngine`: the models in this process, run by the process's one scheduler (`scheduler`). The default,
  and the only choice on ZeroGPU, where no engine process can live beside the app.
- `VllmEngine` (`vllm_engine`): one or more vLLM OpenAI-compatible servers, given by `QASR_VLLM_URL`, or one the app
  starts and supervises itself.

`QASR_ENGINE=auto|transformers|vllm` chooses (`engine_for`); `auto` means vLLM when `QASR_VLLM_URL` is set. Both
engines build the processor's own prompt and parse the output with the processor, so the same clip, language and
context give the same text and language on either. The forced aligner always runs on transformers, in process.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from .errors import ConfigError
from .inference import run_asr
from .models import ASR_MODELS, ModelManager, asr_model_name
from .progress import TranscriptionWatch
from .results import AsrOutput

ENGINES = ("auto", "transformers", "vllm")


class AsrEngine(ABC):
    """Transcribes clips that already fit the model (chunking is the caller's), each with its own language and
    context, and says which models it serves."""

    #: "transformers" or "vllm", for `/info`, logs and the page.
    name: str

    @abstractmethod
    def check(self, model: str | None) -> None:
        """Raise `ModelUnavailableError` (or `UnknownModelError`) now, before any work, if `model` ("0.6B", "1.7B",
        or any alias) cannot be served."""

    def is_ready(self, model: str | None) -> bool:
        """Whether `model` can be served at once, with no load or start first (for a "Loading" note)."""
        return True

    @abstractmethod
    def transcribe(
        self,
        model: str | None,
        clips: list[np.ndarray],
        languages: list[str | None],
        contexts: list[str | None],
        max_new_tokens: int | None = None,
        *,
        watch: TranscriptionWatch | None = None,
        **options: Any,
    ) -> list[AsrOutput]:
        """One output per clip, in order: each clip (16 kHz float32, within the model's limit) with its forced
        language (a name the processor accepts, or None to detect) and context (hotwords, or None).

        `max_new_tokens` caps each clip's tokens (default: `inference.new_tokens_for` its length). `watch` hears the
        decoding and can cancel it (`errors.Cancelled`). `options` are generation options both engines understand
        (`min_new_tokens`)."""

    def close(self) -> None:
        """Release what the engine holds (a supervised server, connections); the default holds nothing."""


class TransformersEngine(AsrEngine):
    """The ASR models of `manager`, in this process."""

    name = "transformers"

    def __init__(self, manager: ModelManager):
        self.manager = manager

    def check(self, model: str | None) -> None:
        self.manager.asr(model)

    def is_ready(self, model: str | None) -> bool:
        return self.manager.is_loaded(ASR_MODELS[asr_model_name(model)])

    def transcribe(self, model, clips, languages, contexts, max_new_tokens=None, *, watch=None, **options):
        return run_asr(self.manager.asr(model), clips, languages, contexts, max_new_tokens, watch=watch, **options)


def engine_for(manager: ModelManager) -> AsrEngine:
    """The engine `manager.settings` asks for (`QASR_ENGINE`, `QASR_VLLM_URL`)."""
    settings = manager.settings
    if settings.engine not in ENGINES:
        raise ConfigError(f"QASR_ENGINE={settings.engine!r} is not an engine: use one of {', '.join(ENGINES)}.")
    if settings.engine == "transformers" or (settings.engine == "auto" and not settings.vllm_urls):
        return TransformersEngine(manager)
    from .vllm_engine import VllmEngine  # HTTP client code, needed only when vLLM serves

    return VllmEngine(manager, list(settings.vllm_urls))
