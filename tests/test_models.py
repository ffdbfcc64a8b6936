"""The model manager: local folders, clear errors when a model cannot be had, a bounded cache, one load at a time."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import torch
from huggingface_hub import constants as hf_constants

from qasr_space.errors import ModelUnavailableError, UnknownModelError
from qasr_space.models import (ALIGNER_MODEL, ASR_MODELS, FewRowsLinear, ModelManager, asr_model_name, pick_device,
                               use_few_rows_linear)
from qasr_space.scheduler import SCHEDULER
from tests.engines import suite_settings

#: The model manager's loading and cache, in this process whatever the engine: the vLLM pass leaves it out.
pytestmark = pytest.mark.engine_free


def test_hub_ids_resolve_to_local_folders(settings):
    manager = ModelManager(settings)
    assert manager.resolve("Qwen/Qwen3-ASR-0.6B-hf").startswith(settings.model_dir)
    assert manager.resolve("Qwen/Not-There") == "Qwen/Not-There"
    assert ModelManager(suite_settings(None)).resolve("Qwen/Qwen3-ASR-0.6B-hf") == "Qwen/Qwen3-ASR-0.6B-hf"


def test_cpu_runs_float32():
    assert pick_device("cpu") == (torch.device("cpu"), torch.float32)
    assert pick_device("cuda")[1] == torch.bfloat16


@pytest.mark.parametrize("alias", ["0.6B", "0.6b", "qwen3-asr-0.6b", "Qwen/Qwen3-ASR-0.6B-hf", None, ""])
def test_model_aliases(alias):
    assert asr_model_name(alias) == "0.6B"


def test_unknown_model_names_the_choices():
    with pytest.raises(UnknownModelError, match="0.6B, 1.7B"):
        asr_model_name("whisper-large")


def test_unreachable_model_is_a_clear_error(tmp_path):
    """The hub is offline in tests and the folder is missing: the message names the model and the fix."""
    manager = ModelManager(suite_settings(str(tmp_path)))
    started = time.monotonic()
    with pytest.raises(ModelUnavailableError) as info:
        manager.asr("1.7B")
    message = str(info.value)
    assert "Qwen/Qwen3-ASR-1.7B-hf" in message and "QASR_MODEL_DIR" in message
    assert time.monotonic() - started < 30


@contextlib.contextmanager
def silent_hub(monkeypatch, tmp_path) -> Iterator[None]:
    """The hub switched on but answered by a listener on 127.0.0.1 that accepts connections and never replies (what a
    blocked network looks like), with an empty hub cache: no request leaves this machine."""
    listener = socket.create_server(("127.0.0.1", 0))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "ENDPOINT", f"http://127.0.0.1:{listener.getsockname()[1]}")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    try:
        yield
    finally:
        listener.close()


def test_a_silent_hub_makes_a_model_unavailable_within_the_hub_timeout(monkeypatch, tmp_path):
    manager = ModelManager(suite_settings(str(tmp_path), hub_timeout_seconds=1.0))
    with silent_hub(monkeypatch, tmp_path):
        started = time.monotonic()
        with pytest.raises(ModelUnavailableError, match="the hub did not answer") as info:
            manager.asr("1.7B")
        assert time.monotonic() - started < 5
        statuses = {status.hub_id: status for status in manager.statuses()}
    assert "QASR_MODEL_DIR" in str(info.value)
    assert not any(status.available for status in statuses.values())
    assert time.monotonic() - started < 10  # the three statuses were asked in parallel


def test_status_says_where_each_model_comes_from(settings, tmp_path):
    manager = ModelManager(suite_settings(settings.model_dir))
    statuses = manager.statuses()
    assert [s.hub_id for s in statuses] == [*ASR_MODELS.values(), ALIGNER_MODEL]
    assert all(s.available and s.note == "local folder" and os.path.isdir(s.source) for s in statuses)
    offline = ModelManager(suite_settings(str(tmp_path))).status(ALIGNER_MODEL)
    assert not offline.available and "HF_HUB_OFFLINE" in offline.note


def test_a_load_runs_beside_the_scheduler_and_stalls_nobody(settings, monkeypatch):
    """While one model loads (held open here until the check is done), a model already loaded keeps transcribing."""
    from qasr_space.inference import run_asr
    from tests.checkpoints import SCRIPTED_SENTENCE
    from tests.media import tone

    manager = ModelManager(suite_settings(settings.model_dir, batch_wait_ms=0))
    ready = manager.asr("0.6B")
    load_threads, release = [], threading.Event()
    load = manager._load

    def held_load(hub_id: str, model_class: type):
        load_threads.append(threading.get_ident())
        assert release.wait(60)
        return load(hub_id, model_class)

    monkeypatch.setattr(manager, "_load", held_load)
    loader = threading.Thread(target=manager.asr, args=("1.7B",))
    loader.start()
    try:
        while not load_threads:
            time.sleep(0.01)
        assert run_asr(ready, [tone(1.0)], ["English"], [None])[0].text == SCRIPTED_SENTENCE
        assert not manager.is_loaded(ASR_MODELS["1.7B"])
    finally:
        release.set()
        loader.join()
    assert manager.is_loaded(ASR_MODELS["1.7B"])
    assert load_threads[0] not in (SCHEDULER.run(threading.get_ident), threading.get_ident())


def test_the_default_cache_holds_every_model_on_a_gpu_and_two_on_the_cpu(settings):
    assert ModelManager(suite_settings(settings.model_dir)).cache_size == 2
    assert ModelManager(suite_settings(settings.model_dir, device="cuda")).cache_size == 3
    assert ModelManager(suite_settings(settings.model_dir, model_cache_size=1)).cache_size == 1


def test_cache_is_bounded_lru(settings):
    manager = ModelManager(suite_settings(settings.model_dir, model_cache_size=2))
    first = manager.asr("0.6B")
    manager.asr("1.7B")
    assert manager.asr("0.6B") is first  # a hit refreshes it
    manager.aligner()
    assert manager.loaded() == ["Qwen/Qwen3-ASR-0.6B-hf", "Qwen/Qwen3-ForcedAligner-0.6B-hf"]
    assert first.model.dtype == torch.float32


def test_concurrent_requests_load_a_model_once(settings):
    manager = ModelManager(settings)
    got, errors = [], []

    def load():
        try:
            got.append(manager.asr("1.7B"))
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(got) == 4 and all(g is got[0] for g in got)


@pytest.mark.parametrize("bias", [True, False])
def test_few_rows_linear_computes_what_linear_does(bias):
    torch.manual_seed(0)
    plain = torch.nn.Linear(64, 96, bias=bias)
    few = torch.nn.Linear(64, 96, bias=bias)
    few.load_state_dict(plain.state_dict())
    use_few_rows_linear(few)
    assert type(few) is FewRowsLinear
    for shape in [(1, 64), (3, 64), (2, 1, 64), (4, 4, 64), (2, 20, 64)]:  # one row, few rows, many rows
        x = torch.randn(shape)
        assert few(x).shape == (*shape[:-1], 96)
        torch.testing.assert_close(few(x), plain(x))


def test_models_on_the_cpu_use_few_rows_linear(manager):
    layers = [m for m in manager.asr().model.modules() if isinstance(m, torch.nn.Linear)]
    assert layers and all(type(m) is FewRowsLinear for m in layers)


def test_few_rows_output_is_contiguous_except_from_the_output_layer(manager):
    """A transposed query sends attention down PyTorch's slow path and a transposed input sends the next
    `FewRowsLinear` down MKL's, so few-row outputs are contiguous; the output layer's logits may stay transposed."""
    torch.manual_seed(0)
    few = torch.nn.Linear(64, 96)
    use_few_rows_linear(few)
    assert few(torch.randn(4, 1, 64)).is_contiguous()
    model = manager.asr().model
    output_layer = model.get_output_embeddings()
    assert output_layer.transposed_output_ok
    assert not any(m.transposed_output_ok for m in model.modules() if isinstance(m, FewRowsLinear)
                   and m is not output_layer)


def test_model_work_runs_on_one_thread_whoever_asks(model_dir):
    """Every forward pass happens on the scheduler's one consumer thread, not in the callers' threads: libgomp keeps a
    thread pool per calling thread, and too many pools make every parallel region slow."""
    from qasr_space.inference import run_asr
    from tests.media import tone

    manager = ModelManager(suite_settings(model_dir, batch_wait_ms=0))
    model_thread = SCHEDULER.run(threading.get_ident)
    assert model_thread != threading.get_ident()
    seen, callers = set(), set()

    def call(model: str) -> None:
        callers.add(threading.get_ident())
        loaded = manager.asr(model)
        loaded.model.register_forward_pre_hook(lambda *_: seen.add(threading.get_ident()))
        run_asr(loaded, [tone(1.0)], [None], [None], 2)

    threads = [threading.Thread(target=call, args=(model,)) for model in ("0.6B", "1.7B", "0.6B", "1.7B")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {model_thread} and model_thread not in callers


def test_model_work_started_on_the_consumer_runs_there_at_once():
    result = []
    nested = threading.Thread(target=lambda: result.append(
        SCHEDULER.run(SCHEDULER.run, threading.get_ident)))
    nested.start()
    nested.join(timeout=10)
    assert result == [SCHEDULER.run(threading.get_ident)]


def test_model_work_in_a_forked_child_runs_in_the_callers_thread():
    """ZeroGPU runs each GPU call in a forked child, where the consumer thread does not exist: waiting for it would
    hang."""
    assert SCHEDULER.run(threading.get_ident) != threading.get_ident()  # the thread exists in the parent
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write_end, b"1" if SCHEDULER.run(threading.get_ident) == threading.get_ident() else b"0")
        os._exit(0)
    os.close(write_end)
    ready, _, _ = select.select([read_end], [], [], 30)
    if ready:
        answer = os.read(read_end, 1)
    else:
        answer = b"hung"
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert answer == b"1"
