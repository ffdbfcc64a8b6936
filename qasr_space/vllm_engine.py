"""The vLLM engine: clips are transcribed by vLLM OpenAI-compatible servers, one HTTP request per clip.

vLLM lives in its own environment (`scripts/vllm_env.sh`): it pins a transformers older than the app's. The app keeps
everything that decides the answer on its side of the wire, so both engines give the same tokens for the same clip,
language and context:

- The prompt is the processor's (`apply_transcription_request`): `/v1/chat/completions` with an empty or context
  system turn, the clip as `input_audio`, and for a forced language the assistant prefill `language <Name><asr_text>`
  continued (`continue_final_message`). Greedy decoding, the same token budget (`inference.new_tokens_for`).
- A context holding the tokenizer's added tokens (`<|im_end|>` ...) is the exception: the server would read them as
  control tokens, where transformers keeps them as plain text so user text cannot close its turn. Such a prompt is
  tokenized here, with the processor, and sent as token ids with the audio to `/inference/v1/generate` (served with
  `--enable-scale-out`); a server without it gets the context with those tokens removed, as on transformers 5.20.
- The output tokens are decoded and parsed by the processor, as `inference` does.
- `/v1/audio/transcriptions` is not used: it drops the system turn (other tokens), ignores the context, returns no
  language and cuts audio at 30 s.

Requests stream (server-sent events), so a `TranscriptionWatch` hears every token and a cancel closes the stream,
which makes vLLM abort the request. The clips of one call go at once (vLLM batches them continuously), spread over
the back ends by fewest requests in flight; a back end that fails is skipped for `DOWN_SECONDS` and the request goes
to another. With no `QASR_VLLM_URL`, the engine starts one local server itself (`VllmServer`) and restarts it if it
dies. The manager's ASR counters (`/info`) count each call as a request and each request sent to a server as a model
call: the servers batch them out of sight.
"""

from __future__ import annotations

import atexit
import base64
import io
import json
import logging
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import soundfile as sf

from .audio import SAMPLE_RATE
from .engine import AsrEngine
from .errors import Cancelled, ConfigError, ModelUnavailableError, UnknownModelError
from .inference import asr_inputs, new_tokens_for, without_control_tokens
from .models import ASR_MODELS, ModelManager, asr_model_name
from .progress import TranscriptionWatch
from .results import AsrOutput
from .settings import Settings

log = logging.getLogger(__name__)

#: A back end that failed (refused, reset, timed out, 5xx) is skipped this long before it is tried again.
DOWN_SECONDS = 10.0
#: Connecting, and anything but waiting for tokens, must be quick on a local network.
_TIMEOUT = httpx.Timeout(10.0, read=300.0)
#: Asking a back end what it serves.
_MODELS_TIMEOUT = httpx.Timeout(5.0)
#: How long a server started here may take to answer `/health` (imports and warm-up take 25-90 s on a small CPU).
SERVER_START_SECONDS = 600.0
#: Clips of one call sent at once; vLLM batches them with everyone else's.
MAX_CONCURRENT_CLIPS = 16


#: Audio tokens the encoder makes per second of audio (13 for every 100 feature frames).
AUDIO_TOKENS_PER_SECOND = 13
#: The chat template's own tokens, with room to spare.
_TEMPLATE_TOKENS = 256


def model_length(settings: Settings) -> int:
    """The longest request this app sends, in tokens, rounded up to a multiple of 1024: a chunk's audio tokens, its
    token budget, the longest context (a token per character at most) and the template. A server started here is
    limited to it: at the model's own 65,536, vLLM wants 14 GiB of KV cache for the 0.6B in float32 and refuses to
    start in the 2-4 GiB a CPU server has."""
    seconds = settings.chunk_seconds
    tokens = (AUDIO_TOKENS_PER_SECOND * seconds + new_tokens_for(seconds) + settings.max_context_chars
              + _TEMPLATE_TOKENS)
    return -(-int(tokens) // 1024) * 1024


def server_args(settings: Settings) -> tuple[str, ...]:
    """What a vLLM server needs to take every request this app sends: `--max-model-len` (`model_length`), and as
    many tokens per step, since vLLM sizes its encoder cache by `--max-num-batched-tokens` and refuses a clip whose
    audio tokens do not fit it whole (2048 by default on a CPU: 157 s, under the default 180 s chunk)."""
    length = str(model_length(settings))
    return ("--max-model-len", length, "--max-num-batched-tokens", length)


#: Leading a vLLM server's PYTHONPATH, this folder's sitecustomize shortens vLLM's busy wait between steps, which on a
#: CPU keeps a core busy for a second after every request (vllm_site/sitecustomize.py).
QUIET_SITE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vllm_site")


def server_env(on_cpu: bool) -> dict[str, str]:
    """The environment of a vLLM server started here: this process's, and on a CPU with `QUIET_SITE` first on the
    PYTHONPATH (a GPU machine has cores to spare, and vLLM's wait is tuned for it)."""
    env = dict(os.environ)
    if on_cpu:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [QUIET_SITE, env.get("PYTHONPATH")]))
    return env


class _BackendFailed(Exception):
    """A back end did not answer properly; the request may go to another one."""


class _TokenPromptsRefused(Exception):
    """The back end does not take token prompts (`/inference/v1/generate` needs `--enable-scale-out`)."""


@dataclass
class _Backend:
    """One vLLM server: its base URL, what it serves (asked once it answers), and its health as seen from here."""

    url: str
    #: ASR model name ("0.6B") → the name the server serves it under; None until the server has answered.
    served: dict[str, str] | None = None
    #: Every model id the server lists, for error messages.
    listed: list[str] = field(default_factory=list)
    down_until: float = 0.0
    in_flight: int = 0
    #: Requests sent here so far: among back ends with as many in flight, the least used takes the next one.
    picked: int = 0
    token_prompts: bool = True
    problem: str = ""


class VllmEngine(AsrEngine):
    """Transcribes on vLLM servers: the base URLs given (`QASR_VLLM_URL`), or one server started here."""

    name = "vllm"

    def __init__(self, manager: ModelManager, urls: list[str]):
        self.manager = manager
        self._lock = threading.Lock()
        self._processors: dict[str, Any] = {}
        self._client = httpx.Client(timeout=_TIMEOUT, limits=httpx.Limits(max_connections=256))
        self.server: VllmServer | None = None
        if not urls:
            hub_id = ASR_MODELS[asr_model_name(manager.settings.vllm_model)]
            self.server = VllmServer(manager.settings.vllm_python, manager.resolve(hub_id), hub_id,
                                     dtype=str(manager.dtype).removeprefix("torch."),
                                     extra_args=server_args(manager.settings), on_cpu=manager.device.type == "cpu")
            self.server.start()
            urls = [self.server.url]
        self.backends = [_Backend(url.rstrip("/")) for url in urls]

    def check(self, model: str | None) -> None:
        self._pick(asr_model_name(model), [])

    def is_ready(self, model: str | None) -> bool:
        if self.server is not None and not self.server.healthy():
            return False
        size = asr_model_name(model)
        return any(self._serves(backend, size) for backend in self.backends)

    def transcribe(self, model, clips, languages, contexts, max_new_tokens=None, *, watch=None, **options):
        unknown = set(options) - {"min_new_tokens"}
        if unknown:
            raise TypeError(f"The vLLM engine does not take the generation options {sorted(unknown)}.")
        if watch is not None:
            watch.raise_if_cancelled()
        size = asr_model_name(model)
        self.check(size)
        if not clips:
            return []
        self.manager.batch_counters["asr"].count_request(len(clips))
        budget = max_new_tokens or new_tokens_for(max(len(clip) for clip in clips) / SAMPLE_RATE)
        progress = _Progress(watch, [len(clip) / SAMPLE_RATE for clip in clips], budget)
        jobs = list(zip(clips, languages, contexts))
        with ThreadPoolExecutor(min(len(jobs), MAX_CONCURRENT_CLIPS), thread_name_prefix="qasr-vllm") as pool:
            futures = [pool.submit(self._one, size, clip, language, context, budget, options, progress, row)
                       for row, (clip, language, context) in enumerate(jobs)]
            try:
                outputs = [future.result() for future in futures]
            finally:
                progress.finished()
        if watch is not None:
            watch.raise_if_cancelled()
        return outputs

    def close(self) -> None:
        self._client.close()
        if self.server is not None:
            self.server.stop()

    def processor(self, size: str):
        """The processor of model `size` ("0.6B"), loaded once (`ModelManager.processor`, so a hub that does not
        answer is given up on as quickly as for a model load): it builds prompts and parses outputs here."""
        with self._lock:
            if size not in self._processors:
                self._processors[size] = self.manager.processor(ASR_MODELS[size])
            return self._processors[size]

    def _one(self, size: str, clip: np.ndarray, language: str | None, context: str | None, budget: int,
             options: dict[str, Any], progress: _Progress, row: int) -> AsrOutput:
        """One clip, on the first back end that answers."""
        progress.raise_if_cancelled()
        processor = self.processor(size)
        sampling = {"temperature": 0.0, "max_tokens": budget}
        if options.get("min_new_tokens"):
            sampling["min_tokens"] = int(options["min_new_tokens"])
        audio = base64.b64encode(_wav_bytes(clip)).decode("ascii")
        tried: list[_Backend] = []
        for _ in range(len(self.backends) + 1):
            backend, served = self._pick(size, tried)
            tried.append(backend)
            try:
                try:
                    path, body = self.request(backend, served, processor, clip, language, context, audio, sampling)
                    token_ids, finish = self._stream(backend, path, body, progress, row)
                except _TokenPromptsRefused:
                    backend.token_prompts = False
                    log.warning("%s does not take token prompts (start it with --enable-scale-out): a context "
                                "holding chat control tokens loses them there", backend.url)
                    path, body = self.request(backend, served, processor, clip, language, context, audio, sampling)
                    token_ids, finish = self._stream(backend, path, body, progress, row)
                break
            except _BackendFailed as exc:
                self._mark_down(backend, str(exc))
        else:
            raise ModelUnavailableError(self._unavailable_message(size))
        parsed = processor.decode(token_ids, return_format="parsed")
        return AsrOutput(text=parsed["transcription"], language=parsed["language"], truncated=finish == "length")

    def request(self, backend: _Backend, served: str, processor, clip: np.ndarray, language: str | None,
                context: str | None, audio: str, sampling: dict) -> tuple[str, dict]:
        """The path and body of one clip's request to `backend` (`audio`: the clip as base64 WAV): the chat route,
        or the token route for a context holding added tokens (see the module docstring)."""
        control = bool(context) and any(token in context for token in processor.tokenizer.get_added_vocab())
        if control and backend.token_prompts:
            return "/inference/v1/generate", _token_body(
                served, _token_prompt(processor, clip, language, context), audio, sampling)
        chat_context = _without_added_tokens(processor, context) if control else context
        return "/v1/chat/completions", _chat_body(served, _prefill(processor, language), chat_context, audio, sampling)

    def _stream(self, backend: _Backend, path: str, body: dict, progress: _Progress,
                row: int) -> tuple[list[int], str | None]:
        """POST `body` with streaming on, collect the output tokens and the finish reason, report each to
        `progress`; a cancelled watch closes the stream (vLLM then aborts the request)."""
        with self._lock:
            backend.in_flight += 1
        self.manager.batch_counters["asr"].count_call()
        token_ids: list[int] = []
        finish = None
        try:
            with self._client.stream("POST", backend.url + path, json={**body, "stream": True}) as response:
                if response.status_code == 403 and path.startswith("/inference/"):
                    raise _TokenPromptsRefused()
                if response.status_code >= 500:
                    raise _BackendFailed(f"HTTP {response.status_code}")
                if response.status_code != 200:
                    raise _refusal(backend.url, response.status_code, _error_message(response))
                for event in _events(response.iter_lines(), backend.url):
                    choice = event["choices"][0]
                    token_ids.extend(choice.get("token_ids") or [])
                    finish = choice.get("finish_reason") or finish
                    progress.step(row, len(token_ids))
                    if progress.cancelled:
                        raise Cancelled("Cancelled: the transcription was stopped before it finished.")
        except (httpx.TransportError, json.JSONDecodeError, KeyError, IndexError) as exc:
            raise _BackendFailed(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
        finally:
            with self._lock:
                backend.in_flight -= 1
        if finish is None:
            raise _BackendFailed("the stream ended before the request finished")
        return token_ids, finish

    def _pick(self, size: str, tried: list[_Backend]) -> tuple[_Backend, str]:
        """Among the back ends this request has not tried, the one serving `size` with the fewest requests in
        flight, and the name it serves it under; those marked down come last. With none left, a server started here
        is waited for (it may be restarting) and tried again. Raises `ModelUnavailableError` naming what each back
        end serves, or why it cannot be used."""
        if self.server is not None and not tried:
            self.server.wait_healthy()  # still starting, or restarting: no request can go anywhere else
        now = time.monotonic()
        left = [backend for backend in self.backends if backend not in tried]
        for group in ([b for b in left if b.down_until <= now], [b for b in left if b.down_until > now]):
            serving = [backend for backend in group if self._serves(backend, size)]
            if serving:
                with self._lock:
                    backend = min(serving, key=lambda b: (b.in_flight, b.picked))
                    backend.picked += 1
                return backend, backend.served[size]
        if self.server is not None and self.server.wait_healthy():
            backend = self.backends[0]
            if self._serves(backend, size):
                return backend, backend.served[size]
        raise ModelUnavailableError(self._unavailable_message(size))

    def _serves(self, backend: _Backend, size: str) -> bool:
        """Whether `backend` serves `size`, asking it (`/v1/models`) until it has answered once."""
        if backend.served is None:
            self._discover(backend)
        return backend.served is not None and size in backend.served

    def _discover(self, backend: _Backend) -> None:
        """Learn which ASR models `backend` serves: each listed model whose id, or the path it was loaded from,
        names one of them (by hub id, alias or folder name)."""
        try:
            response = self._client.get(backend.url + "/v1/models", timeout=_MODELS_TIMEOUT)
            response.raise_for_status()
            listed = response.json()["data"]
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            self._mark_down(backend, f"{type(exc).__name__}: {exc}".rstrip(": "))
            return
        served: dict[str, str] = {}
        for entry in listed:
            for candidate in (entry.get("id"), entry.get("root")):
                size = _size_of(candidate, self.manager)
                if size is not None:
                    served.setdefault(size, entry["id"])
                    break
        backend.listed = [entry["id"] for entry in listed]
        backend.served = served

    def _mark_down(self, backend: _Backend, problem: str) -> None:
        log.warning("vLLM back end %s failed (%s); skipping it for %.0f s", backend.url, problem, DOWN_SECONDS)
        with self._lock:
            backend.down_until = time.monotonic() + DOWN_SECONDS
            backend.problem = problem
            backend.served = None  # asked again once it answers: it may have been restarted with other models

    def _unavailable_message(self, size: str) -> str:
        states = []
        for backend in self.backends:
            if backend.served is None or backend.down_until > time.monotonic():
                states.append(f"{backend.url}: not answering ({backend.problem or 'no answer'})")
            else:
                states.append(f"{backend.url}: serves {', '.join(backend.listed) or 'nothing'}")
        where = "; ".join(states)
        if any(backend.served for backend in self.backends):
            return (f"Model {size} ({ASR_MODELS[size]}) is not served by any vLLM back end ({where}). Choose a model "
                    f"they serve, or start a vLLM server for {ASR_MODELS[size]} and add its URL to QASR_VLLM_URL.")
        return (f"No vLLM back end can transcribe now ({where}). Check that the servers in QASR_VLLM_URL are "
                "running and reachable from here.")


class _Progress:
    """What the clips of one call report to its watch: like a batch, the call's step is the most tokens any clip
    has so far; a cancel is seen by every clip at its next token."""

    def __init__(self, watch: TranscriptionWatch | None, clip_seconds: list[float], budget: int):
        self.watch = watch
        self._lock = threading.Lock()
        self._steps = [0] * len(clip_seconds)
        if watch is not None:
            watch.decoding_started(clip_seconds, budget)

    @property
    def cancelled(self) -> bool:
        return self.watch is not None and self.watch.cancelled

    def raise_if_cancelled(self) -> None:
        if self.watch is not None:
            self.watch.raise_if_cancelled()

    def step(self, row: int, tokens: int) -> None:
        if self.watch is None:
            return
        with self._lock:
            self._steps[row] = tokens
            self.watch.decoding_step(max(self._steps))

    def finished(self) -> None:
        if self.watch is not None:
            self.watch.decoding_finished()


def _wav_bytes(clip: np.ndarray) -> bytes:
    """The clip as a 32-bit float WAV at 16 kHz: every sample exactly as it is, so the server's features are ours."""
    buffer = io.BytesIO()
    sf.write(buffer, np.asarray(clip, dtype=np.float32), SAMPLE_RATE, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def _prefill(processor, language: str | None) -> str:
    """The assistant prefill the processor puts after the prompt: `language <Name><asr_text>` for a forced language
    (the processor's own spelling of the name), or nothing."""
    if language is None:
        return ""
    prompt = processor.apply_transcription_request(audio=[np.zeros(SAMPLE_RATE, np.float32)], language=[language],
                                                   tokenize=False)[0]
    return prompt.rsplit("<|im_start|>assistant\n", 1)[-1]


def _chat_body(served: str, prefill: str, context: str | None, audio: str, sampling: dict) -> dict:
    """The chat request that renders to the processor's prompt: context in the system turn, the clip as the user
    turn, a forced language as an assistant message to continue."""
    messages: list[dict] = [
        {"role": "system", "content": context or ""},
        {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": audio, "format": "wav"}}]},
    ]
    body = {"model": served, "messages": messages, "return_token_ids": True, **sampling}
    if prefill:
        messages.append({"role": "assistant", "content": prefill})
        body.update(continue_final_message=True, add_generation_prompt=False)
    return body


def _token_prompt(processor, clip: np.ndarray, language: str | None, context: str | None) -> list[int]:
    """The processor's prompt ids for the clip (as `inference` builds them, context sanitised), with the audio
    placeholder run cut back to the one `<|audio_pad|>` the chat template writes: the server expands it itself."""
    ids = asr_inputs(processor, [clip], [language], [context])["input_ids"][0].tolist()
    pad = processor.tokenizer.convert_tokens_to_ids(processor.audio_token)
    return [token for i, token in enumerate(ids) if token != pad or i == 0 or ids[i - 1] != pad]


def _token_body(served: str, prompt: list[int], audio: str, sampling: dict) -> dict:
    return {"model": served, "token_ids": prompt, "sampling_params": sampling,
            "content_parts": [{"type": "audio_url", "url": "data:audio/wav;base64," + audio}]}


def _without_added_tokens(processor, text: str | None) -> str | None:
    """`text` with every added token of the tokenizer removed, repeatedly (as `inference` does on transformers
    5.20), so user text cannot close its turn on a server that would read them as control tokens."""
    return (without_control_tokens(processor.tokenizer, text) if text else "") or None


def _events(lines: Iterator[str], url: str) -> Iterator[dict]:
    """The JSON events of the server-sent event stream of the server at `url`, up to `[DONE]`."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[len("data:"):].strip()
        if data == "[DONE]":
            return
        event = json.loads(data)
        if "error" in event:
            error = event["error"]
            if isinstance(error, dict) and isinstance(error.get("code"), int) and error["code"] < 500:
                raise _refusal(url, error["code"], str(error.get("message")))
            raise _BackendFailed(f"the server reported {error}")
        yield event


def _refusal(url: str, code: int, message: str) -> ModelUnavailableError:
    """A request the server at `url` refused, as an HTTP 4xx or as an error event in the stream: the user reads the
    server's own words, and the back end stays in the rotation."""
    return ModelUnavailableError(f"The vLLM server at {url} refused the request (HTTP {code}: {message[:300]}).")


def _error_message(response: httpx.Response) -> str:
    response.read()
    try:
        return str(response.json()["error"]["message"])[:300]
    except (ValueError, KeyError, TypeError):
        return response.text[:300]


def _size_of(name: str | None, manager: ModelManager) -> str | None:
    """The ASR model ("0.6B") a served name or path stands for: a hub id or alias, a folder named like the hub id,
    or the folder `manager` resolves a hub id to; None for anything else."""
    if not name:
        return None
    for candidate in (name, name.rstrip("/").rsplit("/", 1)[-1]):
        try:
            return asr_model_name(candidate)
        except UnknownModelError:
            pass
    for size, hub_id in ASR_MODELS.items():
        if os.path.abspath(manager.resolve(hub_id)) == os.path.abspath(name):
            return size
    return None


class VllmServer:
    """One vLLM OpenAI-compatible server run from the vLLM environment, on a free port of 127.0.0.1, watched: if it
    dies it is started again; `stop` (also at exit) ends it and every process it started."""

    def __init__(self, python: str, model: str, served_name: str, dtype: str = "float32",
                 extra_args: tuple[str, ...] = (), on_cpu: bool = True):
        if not os.access(python, os.X_OK):
            raise ConfigError(
                f"QASR_ENGINE=vllm without QASR_VLLM_URL starts a vLLM server with {python}, which is not there. "
                "Build the vLLM environment with scripts/vllm_env.sh, set QASR_VLLM_PYTHON to its python, or set "
                "QASR_VLLM_URL to running vLLM servers.")
        self.python, self.model, self.served_name = python, model, served_name
        self.args = ("--dtype", dtype, "--enable-scale-out", *extra_args)
        self.env = server_env(on_cpu)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(tempfile.gettempdir(), f"qasr-vllm-{self.port}.log")
        self.restarts = 0
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        """Start the server and its watcher; returns at once (`wait_healthy` waits for it)."""
        self._launch()
        atexit.register(self.stop)
        self._watcher = threading.Thread(target=self._watch, name="qasr-vllm-watch", daemon=True)
        self._watcher.start()

    def healthy(self) -> bool:
        try:
            return httpx.get(self.url + "/health", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_healthy(self, timeout: float = SERVER_START_SECONDS) -> bool:
        """Wait until the server answers `/health` (True), or it cannot: stopped, or `timeout` passed (False)."""
        deadline = time.monotonic() + timeout
        while not self._stopping.is_set() and time.monotonic() < deadline:
            if self.healthy():
                return True
            time.sleep(0.5)
        return False

    def stop(self) -> None:
        """Stop the server and its watcher (idempotent)."""
        self._stopping.set()
        with self._lock:
            process, self._process = self._process, None
        if process is not None:
            _end_group(process)

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as handle:
                return "".join(handle.readlines()[-lines:])
        except OSError:
            return ""

    def _launch(self) -> None:
        command = [self.python, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model,
                   "--served-model-name", self.served_name, "--host", "127.0.0.1", "--port", str(self.port),
                   *self.args]
        log.info("starting a vLLM server for %s on %s (log: %s)", self.model, self.url, self.log_path)
        with open(self.log_path, "ab") as out:
            # A session of its own, so stopping it reaches the engine and worker processes it starts.
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=self.env, start_new_session=True)
        with self._lock:
            self._process = process

    def _watch(self) -> None:
        """Start the server again whenever it exits, until `stop`."""
        while not self._stopping.wait(1.0):
            with self._lock:
                process = self._process
            if process is None or process.poll() is None:
                continue
            log.warning("the vLLM server on %s exited (code %s); starting it again. Its log ends:\n%s",
                        self.url, process.returncode, self.log_tail())
            _end_group(process)
            if not self._stopping.is_set():
                self._launch()
                self.restarts += 1


def _end_group(process: subprocess.Popen) -> None:
    """End a server's whole process group: politely, then by force after 15 s."""
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            process.poll()
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
