"""The model manager: local folders, clear errors when a model cannot be had, a bounded cache, one load at a time."""

from __future__ import annotations

import os
import select
import signal
import threading
import time

import pytest
import torch

from qasr_space.errors import ModelUnavailableError, UnknownModelError
from qasr_space.models import FewRowsLinear, ModelManager, asr_model_name, pick_device, use_few_rows_linear
from qasr_space.settings import Settings


def test_hub_ids_resolve_to_local_folders(settings):
    manager = ModelManager(settings)
    assert manager.resolve("Qwen/Qwen3-ASR-0.6B-hf").startswith(settings.model_dir)
    assert manager.resolve("Qwen/Not-There") == "Qwen/Not-There"
    assert ModelManager(Settings(model_dir=None)).resolve("Qwen/Qwen3-ASR-0.6B-hf") == "Qwen/Qwen3-ASR-0.6B-hf"


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
    manager = ModelManager(Settings(model_dir=str(tmp_path)))
    started = time.monotonic()
    with pytest.raises(ModelUnavailableError) as info:
        manager.asr("1.7B")
    message = str(info.value)
    assert "Qwen/Qwen3-ASR-1.7B-hf" in message and "QASR_MODEL_DIR" in message
    assert time.monotonic() - started < 30


def test_cache_is_bounded_lru(settings):
    manager = ModelManager(Settings(model_dir=settings.model_dir, model_cache_size=2))
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
    """Loading and every forward pass happen on the manager's one model thread, not in the callers' threads:
    libgomp keeps a thread pool per calling thread, and too many pools make every parallel region slow."""
    from qasr_space.inference import run_asr
    from tests.media import tone

    manager = ModelManager(Settings(model_dir=model_dir, batch_wait_ms=0))
    model_thread = manager.run_model_work(threading.get_ident)
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


def test_model_work_started_on_the_model_thread_runs_there_at_once(model_dir):
    manager = ModelManager(Settings(model_dir=model_dir))
    result = []
    nested = threading.Thread(target=lambda: result.append(
        manager.run_model_work(manager.run_model_work, threading.get_ident)))
    nested.start()
    nested.join(timeout=10)
    assert result == [manager.run_model_work(threading.get_ident)]


def test_model_work_in_a_forked_child_runs_in_the_callers_thread(model_dir):
    """ZeroGPU runs each GPU call in a forked child, where the model thread does not exist: waiting for it would hang."""
    manager = ModelManager(Settings(model_dir=model_dir))
    assert manager.run_model_work(threading.get_ident) != threading.get_ident()  # the thread exists in the parent
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write_end, b"1" if manager.run_model_work(threading.get_ident) == threading.get_ident() else b"0")
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
