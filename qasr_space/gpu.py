"""ZeroGPU: GPU work runs inside `@spaces.GPU`, with a duration sized from the audio's length.

Off ZeroGPU `spaces.GPU` returns the function unchanged, so the same code runs on a laptop, a CPU Space or a GPU
Space. On ZeroGPU (`SPACES_ZERO_GPU`) the models are loaded onto CUDA at startup, in the main process, and the
decorated call runs in a forked worker that inherits them; arguments and results cross a process boundary, so they
must pickle, and only a `gr.Error` keeps its message on the way back.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import TypeVar

import gradio as gr
import numpy as np
import spaces
from spaces.config import Config

from .audio import SAMPLE_RATE
from .errors import QasrError
from .models import ALL_MODELS, ASR_MODELS, ModelManager
from .settings import Settings

ON_ZERO_GPU: bool = Config.zero_gpu
#: Reserved GPU seconds: a floor for warm-up and short clips, a share per minute of audio (generous: the 1.7B model
#: with word timestamps runs well over 30x real time on a ZeroGPU slice), and ZeroGPU's per-call maximum.
BASE_GPU_SECONDS = 20
GPU_SECONDS_PER_AUDIO_MINUTE = 2.0
MAX_GPU_SECONDS = 300

F = TypeVar("F", bound=Callable)


def gpu_seconds(audio: np.ndarray | list[np.ndarray], *args, **kwargs) -> int:
    """The duration to ask ZeroGPU for a call whose first argument is 16 kHz samples, or a list of clips (ZeroGPU
    passes it every argument of the call)."""
    samples = sum(len(clip) for clip in audio) if isinstance(audio, list) else len(audio)
    minutes = samples / SAMPLE_RATE / 60
    return int(min(MAX_GPU_SECONDS, BASE_GPU_SECONDS + GPU_SECONDS_PER_AUDIO_MINUTE * minutes))


def user_error(message: str) -> gr.Error:
    """A `gr.Error` for a message meant for the user: Gradio shows it to the caller, and logs no traceback for it."""
    return gr.Error(message, print_exception=False)


def on_gpu(fn: F) -> F:
    """`fn(audio, ...)` (samples or a list of clips) on a ZeroGPU slice for `gpu_seconds(audio)`; its `QasrError`s
    become `gr.Error`s so their message reaches the user from the worker. Generator functions stay generators
    (partial results stream back)."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except QasrError as exc:
                raise user_error(str(exc)) from None
    else:
        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except QasrError as exc:
                raise user_error(str(exc)) from None
    return spaces.GPU(duration=gpu_seconds)(wrapped)


def zero_gpu_settings(settings: Settings) -> Settings:
    """On ZeroGPU: CUDA, and a cache large enough that every model stays loaded (workers cannot load their own)."""
    if not ON_ZERO_GPU:
        return settings
    return dataclasses.replace(settings, device="cuda",
                               model_cache_size=max(settings.model_cache_size or 0, len(ALL_MODELS)))


def preload(manager: ModelManager) -> None:
    """On ZeroGPU, load every model at startup, in the main process, as ZeroGPU requires; elsewhere models load lazily."""
    if ON_ZERO_GPU:
        for name in ASR_MODELS:
            manager.asr(name)
        manager.aligner()
