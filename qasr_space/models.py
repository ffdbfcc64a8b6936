"""The model manager: resolves names to checkpoints, loads lazily, and keeps a bounded LRU cache of loaded models.

One manager serves every request of a process. Models load one at a time, so two requests that ask for the same
model at once load it once. Each loaded model carries the `BatchPolicy` under which the process's one scheduler
merges concurrent calls on it (see `scheduler`, which runs every forward pass); loads run beside the scheduler, in
threads of their own. The manager also holds the engine that transcribes (`engine`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub import get_hf_file_metadata, hf_hub_url, try_to_load_from_cache
from transformers import AutoProcessor, Qwen3ASRForConditionalGeneration, Qwen3ASRForTokenClassification

from .scheduler import BatchCounter, BatchPolicy
from .errors import ModelUnavailableError, UnknownModelError, shown
from .settings import Settings

if TYPE_CHECKING:
    from .engine import AsrEngine

log = logging.getLogger(__name__)

R = TypeVar("R")

#: UI/API model names → hub ids.
ASR_MODELS: dict[str, str] = {
    "0.6B": "Qwen/Qwen3-ASR-0.6B-hf",
    "1.7B": "Qwen/Qwen3-ASR-1.7B-hf",
}
ALIGNER_MODEL = "Qwen/Qwen3-ForcedAligner-0.6B-hf"
DEFAULT_MODEL = "0.6B"
#: Every model the app can load, ASR sizes first.
ALL_MODELS: tuple[str, ...] = (*ASR_MODELS.values(), ALIGNER_MODEL)

_ALIASES = {
    **{name.lower(): name for name in ASR_MODELS},
    **{hub_id.lower(): name for name, hub_id in ASR_MODELS.items()},
    **{f"qwen3-asr-{name.lower()}": name for name in ASR_MODELS},
    **{f"qwen3-asr-{name.lower()}-hf": name for name in ASR_MODELS},
}


def asr_model_name(model: str | None) -> str:
    """Map "0.6B", "qwen3-asr-1.7b", "Qwen/Qwen3-ASR-1.7B-hf" … to a registry key ("0.6B" / "1.7B")."""
    if model is None or not model.strip():
        return DEFAULT_MODEL
    name = _ALIASES.get(model.strip().lower())
    if name is None:
        raise UnknownModelError(
            f"Unknown model {shown(model)}. Choose one of: {', '.join(ASR_MODELS)} "
            f"(or the hub ids {', '.join(ASR_MODELS.values())})."
        )
    return name


def pick_device(requested: str | None = None) -> tuple[torch.device, torch.dtype]:
    """bf16 on CUDA; float32 on CPU, where bf16 matmuls are several times slower."""
    device = torch.device(requested or ("cuda" if torch.cuda.is_available() else "cpu"))
    return device, (torch.bfloat16 if device.type == "cuda" else torch.float32)


#: On the CPU, inputs of 2 to this many rows (the decode steps of a small batch) take `FewRowsLinear`'s path.
FEW_ROWS = 16


class FewRowsLinear(torch.nn.Linear):
    """`nn.Linear` that computes an input of 2 to `FEW_ROWS` rows as `weight @ x.T`, the same product.

    On the CPU, MKL streams the weight once for a single row (a GEMV), but its sgemm for a few rows against the
    transposed weight is several times slower than for the same product with the thin side on the right: for the
    0.6B model's output layer, 137 ms against 37 ms at 4 rows (BENCHMARKS.md). Few-row inputs are exactly the decode
    steps of a batch, so without this a batched decode step costs nearly as much as one step per clip.

    The product comes out transposed. It is made contiguous, since a transposed query sends attention down PyTorch's
    slow path, except where `transposed_output_ok` (the output layer: `generate` copies the logits it keeps anyway).
    """

    transposed_output_ok = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.shape[-1]
        if not 2 <= rows <= FEW_ROWS:
            return torch.nn.functional.linear(x, self.weight, self.bias)
        out = torch.mm(self.weight, x.reshape(rows, x.shape[-1]).t()).t()
        if not self.transposed_output_ok:
            out = out.contiguous()
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)


def use_few_rows_linear(model: torch.nn.Module) -> None:
    """Switch every plain `nn.Linear` of a CPU model to `FewRowsLinear` (weights and outputs unchanged)."""
    for module in model.modules():
        if type(module) is torch.nn.Linear:
            module.__class__ = FewRowsLinear
    output_layer = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if isinstance(output_layer, FewRowsLinear):
        output_layer.transposed_output_ok = True


#: One model load at a time in a process: `from_pretrained` builds models under a process-wide meta-device context,
#: so two loads in two threads break each other ("Cannot copy out of meta tensor").
LOAD_LOCK = threading.Lock()


@dataclass
class LoadedModel:
    """A model with its processor, the policy under which the scheduler merges concurrent calls on it, and whether
    its decoding is compiled on CUDA (`Settings.compile`)."""

    name: str
    model: torch.nn.Module
    processor: object
    policy: BatchPolicy = field(default_factory=BatchPolicy, repr=False)
    compile: bool = False

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype


@dataclass(frozen=True)
class ModelStatus:
    """Whether a model can run here, and where it loads from (or why it cannot), for the page and `/info`."""

    hub_id: str
    available: bool
    source: str  # a folder, the hub id, or "" when unavailable
    note: str  # where it comes from, or why it is unavailable, in a few words
    local_files_only: bool = False


class ModelManager:
    """Loads ASR models and the aligner on first use and keeps at most `cache_size` of them.

    A load runs in a thread of its own, never on the scheduler's consumer, so requests on models already loaded keep running
    while a new one loads. A model that is neither in `QASR_MODEL_DIR` nor reachable on the hub (nor in the local hub
    cache) is refused within `settings.hub_timeout_seconds`, instead of after transformers' own retries.
    """

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings.from_env()
        self.device, self.dtype = pick_device(self.settings.device)
        self._cache: OrderedDict[str, LoadedModel] = OrderedDict()
        self._cache_lock = threading.Lock()
        #: Batching counters per kind ("asr", "aligner"), kept here so they outlive evicted models.
        self.batch_counters = {"asr": BatchCounter(), "aligner": BatchCounter()}
        self._engine: AsrEngine | None = None
        self._engine_lock = threading.Lock()

    @property
    def cache_size(self) -> int:
        """`settings.model_cache_size`, or by default every model on a GPU and two on the CPU (RAM is tighter)."""
        return max(1, self.settings.model_cache_size or (len(ALL_MODELS) if self.device.type == "cuda" else 2))

    def resolve(self, hub_id: str) -> str:
        """`Qwen/<name>` → `$QASR_MODEL_DIR/<name>` when that folder exists, else the hub id itself."""
        if self.settings.model_dir:
            local = os.path.join(self.settings.model_dir, hub_id.split("/")[-1])
            if os.path.isdir(local):
                return local
        return hub_id

    def status(self, hub_id: str) -> ModelStatus:
        """Where `hub_id` would load from now: `QASR_MODEL_DIR`, the hub (asked with a short timeout), or the local
        hub cache when the hub does not answer. Sends no more than one small HEAD request."""
        source = self.resolve(hub_id)
        if source != hub_id:
            return ModelStatus(hub_id, True, source, "local folder")
        problem = "the hub is switched off here (HF_HUB_OFFLINE)"
        if not hf_constants.HF_HUB_OFFLINE:
            try:
                get_hf_file_metadata(hf_hub_url(hub_id, "config.json"), timeout=self.settings.hub_timeout_seconds)
                return ModelStatus(hub_id, True, hub_id, "Hugging Face Hub")
            except Exception as exc:  # offline, timed out, refused, 404 ...: each means "not from the hub"
                problem = f"the hub did not answer ({_first_line(exc)[:120]})"
        if isinstance(try_to_load_from_cache(hub_id, "config.json"), str):
            return ModelStatus(hub_id, True, hub_id, "local hub cache", local_files_only=True)
        return ModelStatus(hub_id, False, "", problem)

    def statuses(self) -> list[ModelStatus]:
        """`status` of every model, asked in parallel (at most one hub timeout in all)."""
        with ThreadPoolExecutor(len(ALL_MODELS)) as pool:
            return list(pool.map(self.status, ALL_MODELS))

    @property
    def engine(self) -> AsrEngine:
        """The engine that transcribes for this manager (`engine.engine_for`), made on first use."""
        with self._engine_lock:
            if self._engine is None:
                from .engine import engine_for  # engines use this manager: import on use

                self._engine = engine_for(self)
            return self._engine

    def asr(self, model: str | None = None) -> LoadedModel:
        return self._get(ASR_MODELS[asr_model_name(model)], Qwen3ASRForConditionalGeneration)

    def aligner(self) -> LoadedModel:
        return self._get(ALIGNER_MODEL, Qwen3ASRForTokenClassification)

    def is_loaded(self, hub_id: str) -> bool:
        with self._cache_lock:
            return hub_id in self._cache

    def batch_stats(self) -> dict[str, dict[str, int]]:
        """Model calls, requests and clips served so far, per kind: fewer calls than requests means batching."""
        return {kind: counter.snapshot() for kind, counter in self.batch_counters.items()}

    def loaded(self) -> list[str]:
        """Hub ids currently in the cache, least recently used first."""
        with self._cache_lock:
            return list(self._cache)

    def _get(self, hub_id: str, model_class: type) -> LoadedModel:
        with self._cache_lock:
            if hub_id in self._cache:
                self._cache.move_to_end(hub_id)
                return self._cache[hub_id]
        with LOAD_LOCK:
            with self._cache_lock:
                if hub_id in self._cache:
                    self._cache.move_to_end(hub_id)
                    return self._cache[hub_id]
            loaded = run_in_new_thread(self._load, hub_id, model_class)
            with self._cache_lock:
                self._cache[hub_id] = loaded
                while len(self._cache) > self.cache_size:
                    evicted, _ = self._cache.popitem(last=False)
                    log.info("evicted %s from the model cache", evicted)
            return loaded

    def processor(self, hub_id: str) -> object:
        """The processor of `hub_id` alone, loaded now (uncached), as `_load` would: for an engine that runs the
        model elsewhere. Refused as quickly as a model load when the model is nowhere (`status`)."""
        status = self._available(hub_id)
        with _unavailable_on_failure(hub_id, status):
            return AutoProcessor.from_pretrained(status.source, local_files_only=status.local_files_only)

    def _available(self, hub_id: str) -> ModelStatus:
        """`status(hub_id)`, or `ModelUnavailableError` naming the fix when the model cannot be had."""
        status = self.status(hub_id)
        if not status.available:
            raise ModelUnavailableError(
                f"Model {hub_id} is unavailable: {status.note}, and it is not in the local hub cache. Connect this "
                f"machine to the Hugging Face Hub so it can download, or set QASR_MODEL_DIR to a folder holding "
                f"{hub_id.split('/')[-1]}/ (looked in {self.settings.model_dir or 'no folder: QASR_MODEL_DIR is unset'}).")
        return status

    def _load(self, hub_id: str, model_class: type) -> LoadedModel:
        status = self._available(hub_id)
        log.info("loading %s from %s (%s) on %s (%s)", hub_id, status.source, status.note, self.device, self.dtype)
        with _unavailable_on_failure(hub_id, status):
            processor = AutoProcessor.from_pretrained(status.source, local_files_only=status.local_files_only)
            model = model_class.from_pretrained(status.source, dtype=self.dtype,
                                                local_files_only=status.local_files_only).to(self.device).eval()
        if self.device.type == "cpu":
            use_few_rows_linear(model)
        kind = "aligner" if model_class is Qwen3ASRForTokenClassification else "asr"
        policy = BatchPolicy(max_size=self.settings.batch_size, wait_seconds=self.settings.batch_wait_ms / 1000,
                             enabled=self.settings.batch_requests, counter=self.batch_counters[kind])
        return LoadedModel(name=hub_id, model=model, processor=processor, policy=policy,
                           compile=self.settings.compile)


def run_in_new_thread(fn: Callable[..., R], *args) -> R:
    """`fn(*args)` in a short-lived thread of its own, waiting for it: a model load, which must not occupy the
    scheduler's consumer. libgomp gives each thread that runs a parallel region a worker pool until that thread ends
    (see `scheduler`), so a long-lived loader thread would slow the consumer for good; this one ends with the load."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["result"] = fn(*args)
        except BaseException as exc:  # handed to the waiting caller, who raises it
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="qasr-model-load", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["result"]  # type: ignore[return-value]


@contextlib.contextmanager
def _unavailable_on_failure(hub_id: str, status: ModelStatus) -> Iterator[None]:
    """Loading files from `status.source`: a missing or broken file becomes `ModelUnavailableError`."""
    try:
        yield
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(
            f"Model {hub_id} could not be loaded from {status.note} ({_first_line(exc)[:200]}). Check the "
            "connection to the Hugging Face Hub, or the files in QASR_MODEL_DIR.") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
