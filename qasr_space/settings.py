"""Deployment settings, read from the environment so a Space, a test and a laptop can differ without code changes."""

from __future__ import annotations

import os
from dataclasses import dataclass


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def _env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name, "").strip().lower()
    return value in ("1", "true", "yes", "on") if value else default


@dataclass(frozen=True)
class Settings:
    """Limits and switches; `Settings.from_env()` reads the `QASR_*` variables documented in the README."""

    model_dir: str | None = None
    #: Models kept loaded; None means every model (3) on a GPU and 2 on the CPU, where RAM is tighter.
    model_cache_size: int | None = None
    device: str | None = None
    max_audio_seconds: float = 2 * 3600.0
    max_upload_mb: float = 500.0
    #: Files one request for several may hold, zip members counted (their sizes together stay under max_upload_mb).
    max_files: int = 20
    min_audio_seconds: float = 0.25
    chunk_seconds: float = 180.0
    batch_size: int = 4
    batch_requests: bool = True
    batch_wait_ms: float = 20.0
    allow_private_urls: bool = False
    url_timeout_seconds: float = 30.0
    url_retries: int = 3
    #: One deadline for a whole URL fetch: extraction, every page body and the download.
    url_deadline_seconds: float = 900.0
    ytdlp_cookies: str | None = None
    api_token: str | None = None
    concurrency_limit: int = 4
    #: How long a request may wait for the hub to answer before its model counts as unavailable.
    hub_timeout_seconds: float = 5.0
    #: Context (hotwords) and text to align: the longest accepted, in characters.
    max_context_chars: int = 4000
    max_align_chars: int = 12000
    #: Uploads, fetched media, recordings and result files are deleted this long after they were written.
    keep_minutes: float = 60.0
    #: The most disk all of those may take together; the oldest go first beyond it.
    max_disk_mb: float = 4096.0
    #: Live microphone recordings: how many at once, and how long each.
    max_live_sessions: int = 8
    max_live_seconds: float = 1800.0
    #: Which engine transcribes: "auto" (vLLM when `vllm_urls` is set, else transformers), "transformers", "vllm".
    engine: str = "auto"
    #: vLLM OpenAI-compatible servers to spread requests over; none with engine "vllm" starts one here.
    vllm_urls: tuple[str, ...] = ()
    #: The Python of the separate vLLM environment (`scripts/vllm_env.sh` builds it), for a server started here.
    vllm_python: str = ".venv-vllm/bin/python"
    #: The ASR model ("0.6B" or "1.7B") of a vLLM server started here.
    vllm_model: str = "0.6B"
    #: On CUDA, decode with a static KV cache and a compiled decoding step replayed as CUDA graphs. Off until measured
    #: (bench/bench_gpu.py), and never on ZeroGPU, whose per-request GPU processes would compile again for every
    #: request. Each loaded model carries it (`models.LoadedModel.compile`).
    compile: bool = False

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            model_dir=os.environ.get("QASR_MODEL_DIR") or None,
            model_cache_size=_env_int("QASR_MODEL_CACHE_SIZE", 0) or None,
            device=os.environ.get("QASR_DEVICE") or None,
            max_audio_seconds=_env_float("QASR_MAX_AUDIO_SECONDS", cls.max_audio_seconds),
            max_upload_mb=_env_float("QASR_MAX_UPLOAD_MB", cls.max_upload_mb),
            max_files=_env_int("QASR_MAX_FILES", cls.max_files),
            chunk_seconds=_env_float("QASR_CHUNK_SECONDS", cls.chunk_seconds),
            batch_size=_env_int("QASR_BATCH_SIZE", cls.batch_size),
            # ZeroGPU runs each request's GPU work in a process of its own, where nothing can be shared.
            batch_requests=_env_flag("QASR_BATCH_REQUESTS", cls.batch_requests) and not _env_flag("SPACES_ZERO_GPU"),
            batch_wait_ms=_env_float("QASR_BATCH_WAIT_MS", cls.batch_wait_ms),
            allow_private_urls=_env_flag("QASR_ALLOW_PRIVATE_URLS"),
            url_timeout_seconds=_env_float("QASR_URL_TIMEOUT", cls.url_timeout_seconds),
            url_retries=_env_int("QASR_URL_RETRIES", cls.url_retries),
            url_deadline_seconds=_env_float("QASR_URL_DEADLINE", cls.url_deadline_seconds),
            ytdlp_cookies=os.environ.get("QASR_YTDLP_COOKIES") or None,
            api_token=os.environ.get("QASR_API_TOKEN") or None,
            concurrency_limit=_env_int("QASR_CONCURRENCY", cls.concurrency_limit),
            hub_timeout_seconds=_env_float("QASR_HUB_TIMEOUT", cls.hub_timeout_seconds),
            max_context_chars=_env_int("QASR_MAX_CONTEXT_CHARS", cls.max_context_chars),
            max_align_chars=_env_int("QASR_MAX_ALIGN_CHARS", cls.max_align_chars),
            keep_minutes=_env_float("QASR_KEEP_MINUTES", cls.keep_minutes),
            max_disk_mb=_env_float("QASR_MAX_DISK_MB", cls.max_disk_mb),
            max_live_sessions=_env_int("QASR_MAX_LIVE_SESSIONS", cls.max_live_sessions),
            max_live_seconds=_env_float("QASR_MAX_LIVE_SECONDS", cls.max_live_seconds),
            engine=(os.environ.get("QASR_ENGINE") or cls.engine).strip().lower(),
            vllm_urls=tuple(url for url in os.environ.get("QASR_VLLM_URL", "").replace(",", " ").split()),
            vllm_python=os.environ.get("QASR_VLLM_PYTHON") or cls.vllm_python,
            vllm_model=os.environ.get("QASR_VLLM_MODEL") or cls.vllm_model,
            compile=_env_flag("QASR_COMPILE", cls.compile) and not _env_flag("SPACES_ZERO_GPU"),
        )
