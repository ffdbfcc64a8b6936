"""The public API on a real server: `python app.py` on 127.0.0.1 with the scripted checkpoints, called through
`gradio_client` (the named endpoints) and the official `openai` package (the OpenAI-compatible REST route).

One server serves the whole module, started with small limits (1 MB uploads, 20 s of audio), an API token that
the REST route and the named endpoints require, private URLs allowed (a local HTTP server stands in for the web), and a batching window wide enough
that concurrent clients meet even on a busy two-core machine.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import certifi
import httpx
import openai
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from qasr_space import __version__, rest
from qasr_space.access import UPLOAD_REFUSAL
from qasr_space.languages import NAME_TO_CODE
from qasr_space.results import Transcript
from qasr_space.writers import CueLimits, to_lrc, to_srt, to_tsv, to_vtt
from tests.browser import app_server, static_server
from tests.checkpoints import SCRIPTED_SENTENCE
from tests.dialogs import build_dialog
from tests.engines import ENGINE, VLLM
from tests.media import tone, write_media

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WORDS = SCRIPTED_SENTENCE.split()
LIMITS = {"QASR_MAX_UPLOAD_MB": "1", "QASR_MAX_AUDIO_SECONDS": "20"}


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """Clips for every case: good, corrupt, too long (25 s, 0.8 MB), too big (40 s, 1.3 MB)."""
    folder = tmp_path_factory.mktemp("api-media")
    write_media(folder / "clip.wav", tone(3.0), 16000, "wav")
    write_media(folder / "long.wav", tone(25.0), 16000, "wav")
    write_media(folder / "big.wav", tone(40.0), 16000, "wav")
    (folder / "corrupt.wav").write_bytes(b"RIFF this is not audio at all " * 64)
    for i in range(8):
        write_media(folder / f"client{i}.wav", tone(1.0 + 0.25 * i, freq=150.0 + 20 * i), 16000, "wav")
    build_dialog(folder / "dialog.wav", speakers=2, seconds=18, seed=3)  # two voices, 7 s each
    return folder


@pytest.fixture(scope="module")
def web(media) -> str:
    """A local web server for `/transcribe_url`, serving the media folder."""
    with static_server(media) as base:
        yield base


@pytest.fixture(scope="module")
def url(model_dir) -> str:
    # 8 s chunks: the scripted model says its sentence once per chunk, so a dialog's turns each get words
    env = {**LIMITS, "QASR_API_TOKEN": TOKEN, "QASR_ALLOW_PRIVATE_URLS": "1", "QASR_CONCURRENCY": "8",
           "QASR_BATCH_SIZE": "8", "QASR_BATCH_WAIT_MS": "300", "QASR_CHUNK_SECONDS": "8"}
    with app_server(model_dir, env=env) as base:
        yield base


@pytest.fixture(scope="module")
def client(url) -> Client:
    """Made as the README shows, with one SSL context for all its requests; the concurrent-clients test uses the
    default construction."""
    return Client(url, verbose=False, ssl_verify=ssl.create_default_context(cafile=certifi.where()),
                  headers=AUTH)


@pytest.fixture(scope="module")
def oai(url) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}v1", api_key=TOKEN, max_retries=0)


def batching(client: Client) -> dict:
    return client.predict(api_name="/info")["batching"]


def check_transcript_and_subtitles(result: tuple, language: str, duration: float) -> Transcript:
    """The endpoint's (JSON, SRT, VTT) triple: the core's schema, and subtitle files made from that very transcript."""
    data, srt_path, vtt_path = result
    transcript = Transcript.from_dict(data)
    assert transcript.to_dict() == data
    assert transcript.text == SCRIPTED_SENTENCE and transcript.language == language
    assert transcript.duration == pytest.approx(duration, abs=0.05)
    assert Path(srt_path).read_text(encoding="utf-8") == to_srt(transcript)
    assert Path(vtt_path).read_text(encoding="utf-8") == to_vtt(transcript)
    return transcript


def test_info_lists_models_languages_limits_and_version(client):
    info = client.predict(api_name="/info")
    assert info["version"] == __version__ and info["engine"] == ENGINE
    assert [m["name"] for m in info["models"]] == ["0.6B", "1.7B"]
    assert len(info["languages"]) == 30 and {"name": "English", "code": "en"} in info["languages"]
    assert len(info["aligner_languages"]) == 11 and "German" in info["aligner_languages"]
    assert info["limits"]["max_upload_mb"] == 1 and info["limits"]["max_audio_seconds"] == 20
    assert info["batching"]["enabled"] and info["batching"]["max_clips"] == 8


def test_every_endpoint_is_named_and_described_on_the_api_page(url):
    endpoints = httpx.get(f"{url}gradio_api/info").json()["named_endpoints"]
    assert {"/transcribe", "/transcribe_url", "/align", "/info"} <= set(endpoints)
    assert all(len(e["description"]) > 40 for e in endpoints.values())
    assert [p["parameter_name"] for p in endpoints["/transcribe"]["parameters"]] == [
        "audio", "model", "language", "context", "timestamps", "speakers", "formats", "max_line_chars",
        "max_cue_seconds"]
    assert [p["parameter_name"] for p in endpoints["/align"]["parameters"]] == [
        "audio", "text", "language", "formats", "max_line_chars", "max_cue_seconds", "speakers"]


def test_transcribe_with_word_timestamps(client, media):
    result = client.predict(audio=handle_file(str(media / "clip.wav")), model="0.6B", language="fr",
                            context="a test", timestamps=True, api_name="/transcribe")
    transcript = check_transcript_and_subtitles(result, "French", 3.0)
    assert [w.text.strip() for w in transcript.words] == WORDS
    assert transcript.model == "Qwen/Qwen3-ASR-0.6B-hf"


def test_transcribe_url(client, web):
    result = client.predict(url=web + "clip.wav", model="Qwen/Qwen3-ASR-0.6B-hf", language="auto",
                            api_name="/transcribe_url")
    transcript = check_transcript_and_subtitles(result, "English", 3.0)
    assert transcript.words == []


def test_align_own_text(client, media):
    result = client.predict(audio=handle_file(str(media / "clip.wav")), text="Guten Tag, liebe Welt!",
                            language="de", api_name="/align")
    data = result[0]
    assert data["text"] == "Guten Tag, liebe Welt!" and data["language"] == "German"
    assert [w["text"] for w in data["words"]] == ["Guten", " Tag,", " liebe", " Welt!"]
    assert Path(result[1]).read_text(encoding="utf-8") == to_srt(Transcript.from_dict(data))


def test_lrc_and_tsv_files_on_request_read_back_as_the_transcript(client, media):
    data, lrc_path, tsv_path = client.predict(audio=handle_file(str(media / "clip.wav")), language="en",
                                              timestamps=True, formats="lrc,tsv", api_name="/transcribe")
    transcript = Transcript.from_dict(data)
    lrc, tsv = (Path(path).read_text(encoding="utf-8") for path in (lrc_path, tsv_path))
    assert Path(lrc_path).suffix == ".lrc" and lrc == to_lrc(transcript)
    lines = lrc.splitlines()
    assert len(lines) == len(transcript.segments)
    for line, segment in zip(lines, transcript.segments):  # [start]<word start>word ... <end of the last word>
        tags = [(int(m) * 60 + int(s) + int(c) / 100, text)
                for m, s, c, text in re.findall(r"<(\d+):(\d\d)\.(\d\d)>([^<]*)", line)]
        assert [text.strip() for _, text in tags] == [*segment.text.split(), ""]
        assert [time for time, _ in tags] == pytest.approx([w.start for w in segment.words] + [segment.end], abs=0.005)
    assert " ".join(w for line in lines for w in re.sub(r"\[.*?\]|<.*?>", " ", line).split()) == " ".join(WORDS)
    assert Path(tsv_path).suffix == ".tsv" and tsv == to_tsv(transcript)
    header, *rows = [line.split("\t") for line in tsv.splitlines()]
    assert header == ["start", "end", "text"]
    assert [(int(start), int(end), text) for start, end, text in rows] == [
        (round(s.start * 1000), round(s.end * 1000), s.text) for s in transcript.segments]
    data, tsv_path, nothing = client.predict(audio=handle_file(str(media / "clip.wav")), text="Guten Tag, liebe Welt!",
                                             language="de", formats="TSV", api_name="/align")
    assert nothing is None and Path(tsv_path).read_text(encoding="utf-8").endswith("\tGuten Tag, liebe Welt!\n")


def test_subtitle_limits_split_the_cues_of_both_files(client, media):
    data, srt_path, vtt_path = client.predict(audio=handle_file(str(media / "clip.wav")), language="en",
                                              timestamps=True, max_line_chars=10, max_cue_seconds=1.0,
                                              api_name="/transcribe")
    transcript = Transcript.from_dict(data)
    srt = Path(srt_path).read_text(encoding="utf-8")
    assert srt == to_srt(transcript, CueLimits(10, 1.0)) != to_srt(transcript)
    assert Path(vtt_path).read_text(encoding="utf-8") == to_vtt(transcript, CueLimits(10, 1.0))
    cues = [block.split("\n")[1:] for block in srt.strip("\n").split("\n\n")]
    assert len(cues) > len(transcript.segments)
    assert " ".join(" ".join(lines) for _, *lines in cues).split() == WORDS
    assert all(len(lines) <= 2 and all(len(line) <= 10 for line in lines) for _, *lines in cues)  # no word is longer
    for times, *lines in cues:
        start, end = (sum(float(part) * 60 ** i for i, part in enumerate(reversed(stamp.replace(",", ".").split(":"))))
                      for stamp in times.split(" --> "))
        assert end - start <= 1.0 or " " not in " ".join(lines), (times, lines)


def test_bad_file_options_are_refused_before_any_model_work(client, media):
    clip = handle_file(str(media / "clip.wav"))
    before = batching(client)["asr"]["requests"]
    for options, message in [
        ({"formats": "xml"}, "Unknown file format 'xml': choose one or two of srt, vtt, json, txt, lrc, tsv"),
        ({"formats": "srt,vtt,lrc"}, "`formats` names 3 files, but the endpoint returns at most 2"),
        ({"formats": ["lrc"]}, "`formats` must be text, not list"),
        ({"max_line_chars": 5}, "from 10 to 200, not 5"),
        ({"max_line_chars": 40.5}, "whole number from 10 to 200, not 40.5"),
        ({"max_cue_seconds": 0}, "from 1 to 60, not 0"),
        ({"max_cue_seconds": "long"}, "from 1 to 60, not 'long'"),
    ]:
        for endpoint, inputs in [("/transcribe", {"audio": clip}), ("/align", {"audio": clip, "text": "hello"})]:
            with pytest.raises(AppError) as caught:
                client.predict(**inputs, **options, api_name=endpoint)
            assert message in str(caught.value), (endpoint, options)
    assert batching(client)["asr"]["requests"] == before


def test_openai_client_gets_text_srt_and_verbose_json(oai, media):
    with open(media / "clip.wav", "rb") as f:
        assert oai.audio.transcriptions.create(file=f, model="qwen3-asr-0.6b").text == SCRIPTED_SENTENCE
    with open(media / "clip.wav", "rb") as f:
        text = oai.audio.transcriptions.create(file=f, model="qwen3-asr-0.6b", response_format="text")
    assert text.strip() == SCRIPTED_SENTENCE
    with open(media / "clip.wav", "rb") as f:
        srt = oai.audio.transcriptions.create(file=f, model="qwen3-asr-0.6b", language="en", response_format="srt")
    assert srt.startswith("1\n00:00:00,") and "Hello world" in srt and " --> " in srt
    with open(media / "clip.wav", "rb") as f:
        verbose = oai.audio.transcriptions.create(file=f, model="Qwen/Qwen3-ASR-0.6B-hf", language="de",
                                                  prompt="names", response_format="verbose_json",
                                                  timestamp_granularities=["word", "segment"])
    assert verbose.text == SCRIPTED_SENTENCE and verbose.language == "german"
    assert verbose.duration == pytest.approx(3.0, abs=0.05)
    assert [w.word for w in verbose.words] == WORDS
    assert all(0.0 <= w.start <= w.end <= verbose.duration for w in verbose.words)
    assert " ".join(s.text for s in verbose.segments) == SCRIPTED_SENTENCE
    assert [s.id for s in verbose.segments] == list(range(len(verbose.segments)))


def test_openai_clients_default_model_name_gets_the_default_model(oai, media):
    """Many OpenAI clients send `whisper-1` unless told otherwise: it is served, not refused."""
    with open(media / "clip.wav", "rb") as f:
        assert oai.audio.transcriptions.create(file=f, model="whisper-1").text == SCRIPTED_SENTENCE
    with open(media / "clip.wav", "rb") as f:
        srt = oai.audio.transcriptions.create(file=f, model="Whisper-1", language="en", response_format="srt")
    assert srt.startswith("1\n00:00:00,") and "Hello world" in srt


def test_openai_errors_are_openai_shaped_with_the_right_status(oai, url, media):
    def error(**kwargs) -> openai.APIStatusError:
        with pytest.raises(openai.APIStatusError) as caught:
            oai.audio.transcriptions.create(**{"model": "qwen3-asr-0.6b", **kwargs})
        return caught.value

    corrupt = error(file=(media / "corrupt.wav").read_bytes())
    assert corrupt.status_code == 400 and "could not be decoded" in corrupt.message
    assert corrupt.body["type"] == "invalid_request_error" and corrupt.body["param"] == "file"
    unknown_model = error(file=(media / "clip.wav").read_bytes(), model="whisper-9")
    assert unknown_model.status_code == 404 and unknown_model.body["code"] == "model_not_found"
    assert "Unknown model 'whisper-9'" in unknown_model.message and "whisper-1 gets the default model" in (
        unknown_model.message)
    unknown_language = error(file=(media / "clip.wav").read_bytes(), language="xx")
    assert unknown_language.status_code == 400 and unknown_language.body["param"] == "language"
    too_long = error(file=(media / "long.wav").read_bytes())
    assert too_long.status_code == 413 and "25.0 s" in too_long.message
    too_big = error(file=(media / "big.wav").read_bytes())
    assert too_big.status_code == 413 and "limit of 1 MB" in too_big.message
    bad_format = error(file=(media / "clip.wav").read_bytes(), response_format="xml")
    assert bad_format.status_code == 400 and bad_format.body["param"] == "response_format"

    wrong_key = openai.OpenAI(base_url=f"{url}v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        wrong_key.audio.transcriptions.create(file=(media / "clip.wav").read_bytes(), model="qwen3-asr-0.6b")
    assert caught.value.body["code"] == "invalid_api_key"

    headers = {"Authorization": f"Bearer {TOKEN}"}
    missing = httpx.post(f"{url}v1/audio/transcriptions", data={"model": "qwen3-asr-0.6b"}, files={"x": b"1"},
                         headers=headers)
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "file"


def test_oversized_upload_is_refused_while_it_streams_in(url):
    """No Content-Length (chunked): the server counts the body as it arrives and stops at the limit."""
    def body():
        yield b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        for _ in range(40):
            yield bytes(64 * 1024)
        yield b"\r\n--B--\r\n"

    response = httpx.post(f"{url}v1/audio/transcriptions", content=body(),
                          headers={"Authorization": f"Bearer {TOKEN}",
                                   "Content-Type": "multipart/form-data; boundary=B"})
    assert response.status_code == 413 and "limit of 1 MB" in response.json()["error"]["message"]


def test_rest_route_answers_503_on_zero_gpu(manager, monkeypatch):
    """ZeroGPU grants GPU time to Gradio requests only, so the plain FastAPI route says so instead of failing."""
    monkeypatch.setattr(rest, "ON_ZERO_GPU", True)
    app = FastAPI()
    app.include_router(rest.openai_router(manager))
    response = TestClient(app).post("/v1/audio/transcriptions", files={"file": ("a.wav", b"RIFF")})
    assert response.status_code == 503 and "gradio_client" in response.json()["error"]["message"]


@pytest.mark.parametrize("endpoint, kwargs, message", [
    ("/transcribe", {"audio": None}, "No audio file"),
    ("/transcribe", {"audio": "corrupt.wav"}, "could not be decoded"),
    ("/transcribe", {"audio": "clip.wav", "model": "9B"}, "Unknown model"),
    ("/transcribe", {"audio": "clip.wav", "language": "Klingon"}, "Unknown language"),
    ("/transcribe", {"audio": "long.wav"}, "over the 20.0 s limit"),
    ("/transcribe_url", {"url": ""}, "Only http:// and https:// URLs"),
    ("/transcribe_url", {"url": "corrupt.wav"}, "could not be decoded"),
    ("/transcribe_url", {"url": "clip.wav", "model": "9B"}, "Unknown model"),
    ("/transcribe_url", {"url": "clip.wav", "language": "Klingon"}, "Unknown language"),
    ("/transcribe_url", {"url": "long.wav"}, "over this server's 20.0 s limit"),
    ("/transcribe_url", {"url": "big.wav"}, "too large"),
    ("/align", {"audio": None, "text": "hello"}, "No audio file"),
    ("/align", {"audio": "corrupt.wav", "text": "hello"}, "could not be decoded"),
    ("/align", {"audio": "clip.wav", "text": "hello", "language": "Thai"}, "aligner has no timestamps for Thai"),
    ("/align", {"audio": "clip.wav", "text": "   "}, "empty"),
    ("/align", {"audio": "long.wav", "text": "hello"}, "over the 20.0 s limit"),
])
def test_bad_input_on_every_endpoint_gets_a_clear_error(client, media, web, endpoint, kwargs, message):
    kwargs = dict(kwargs)
    if kwargs.get("audio"):
        kwargs["audio"] = handle_file(str(media / kwargs["audio"]))
    if kwargs.get("url"):
        kwargs["url"] = web + kwargs["url"]
    with pytest.raises(AppError) as caught:
        client.predict(**kwargs, api_name=endpoint)
    assert message in str(caught.value) and "Traceback" not in str(caught.value)


def test_oversized_upload_to_a_gradio_endpoint_is_refused(client, url, media):
    with pytest.raises(ValueError, match="exceeds the maximum file size"):  # gradio_client checks before sending
        client.predict(audio=handle_file(str(media / "big.wav")), api_name="/transcribe")
    upload = httpx.post(f"{url}gradio_api/upload", files={"files": ("big.wav", (media / "big.wav").read_bytes())})
    assert upload.status_code == 413  # and the server refuses it whoever sends it


def test_eight_concurrent_clients_get_their_own_results_in_fewer_generate_calls(url, client, media):
    """Four `gradio_client` and four OpenAI clients at once, each with its own language and clip length, so a
    swapped result would show; the server's counter shows they shared `generate` calls (on the vLLM engine, one
    request each: the vLLM server batches them out of sight)."""
    languages = ["English", "French", "German", "Spanish", "Italian", "Dutch", "Polish", "Czech"]
    gradio_clients = [Client(url, verbose=False, headers=AUTH) for _ in range(4)]
    openai_client = openai.OpenAI(base_url=f"{url}v1", api_key=TOKEN, max_retries=0)
    before = batching(client)["asr"]
    barrier = threading.Barrier(8)

    def one(i: int) -> tuple[str, float]:
        path = str(media / f"client{i}.wav")
        barrier.wait()
        if i < 4:
            data = gradio_clients[i].predict(audio=handle_file(path), language=languages[i], context=f"client {i}",
                                             api_name="/transcribe")[0]
            return data["text"], data["language"], data["duration"]
        with open(path, "rb") as f:
            verbose = openai_client.audio.transcriptions.create(
                file=f, model="qwen3-asr-0.6b", language=NAME_TO_CODE[languages[i]],
                prompt=f"client {i}", response_format="verbose_json")
        return verbose.text, verbose.language.title(), verbose.duration

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    for i, (text, language, duration) in enumerate(results):
        assert (text, language) == (SCRIPTED_SENTENCE, languages[i])
        assert duration == pytest.approx(1.0 + 0.25 * i, abs=0.02)
    after = batching(client)["asr"]
    assert after["requests"] - before["requests"] == 8
    calls = after["model_calls"] - before["model_calls"]
    assert calls == 8 if VLLM else calls < 8


def raw_call(url: str, endpoint: str, data: list, headers: dict | None = None) -> tuple[str, object]:
    """One call of a named endpoint over plain HTTP, as any program could send it: (final event, its data)."""
    started = httpx.post(f"{url}gradio_api/call/{endpoint}", json={"data": data}, headers=headers, timeout=30)
    started.raise_for_status()
    stream = httpx.get(f"{url}gradio_api/call/{endpoint}/{started.json()['event_id']}", headers=headers, timeout=60)
    events = re.findall(r"event: (\w+)\ndata: (.*)", stream.text)
    event, payload = events[-1]
    return event, json.loads(payload)


def test_named_endpoints_need_the_token_and_info_does_not(url, media):
    anonymous = Client(url, verbose=False)
    for endpoint, kwargs in [("/transcribe", {"audio": handle_file(str(media / "clip.wav"))}),
                             ("/align", {"audio": handle_file(str(media / "clip.wav")), "text": "hi"}),
                             ("/transcribe_url", {"url": "http://127.0.0.1:9/clip.wav"})]:
        with pytest.raises(AppError, match="Missing or wrong API token"):
            anonymous.predict(**kwargs, api_name=endpoint)
    wrong = Client(url, verbose=False, headers={"Authorization": "Bearer nope"})
    with pytest.raises(AppError, match="Missing or wrong API token"):
        wrong.predict(url="http://127.0.0.1:9/clip.wav", api_name="/transcribe_url")
    assert anonymous.predict(api_name="/info")["token_required"] is True


def test_the_page_handlers_are_not_api_endpoints(url):
    endpoints = httpx.get(f"{url}gradio_api/info").json()
    assert set(endpoints["named_endpoints"]) == {"/transcribe", "/transcribe_url", "/align", "/info"}
    assert not endpoints["unnamed_endpoints"]
    for route in ("call/run", "call/run/", "call/v2/run", "run/run", "api/run", "call/live_update", "call/live_finish",
                  "call/run_example"):
        assert httpx.post(f"{url}gradio_api/{route}", json={"data": []}, headers=AUTH).status_code == 404, route


def test_only_uploaded_files_are_read_whatever_path_a_raw_call_names(url, tmp_path):
    """An audio file outside the upload folder, /etc/passwd and a missing path, each with and without Gradio's
    `meta` marker, through both file endpoints and every route that runs them: one refusal, the same for all."""
    outside = write_media(tmp_path / "secret.wav", tone(2.0), 16000, "wav")
    paths = [str(outside), "/etc/passwd", str(tmp_path / "missing.wav"), "http://169.254.169.254/latest"]
    answers = []
    for endpoint, extra in [("transcribe", ["0.6B", "auto", "", False]), ("align", ["hello", "auto"])]:
        for meta in ({}, {"meta": {"_type": "gradio.FileData"}}):
            for path in paths:
                for route in (f"call/{endpoint}", f"run/{endpoint}", "queue/join"):
                    body = {"data": [{"path": path, **meta}, *extra], "session_hash": "x", "fn_index": 0}
                    answer = httpx.post(f"{url}gradio_api/{route}", json=body, headers=AUTH, timeout=30)
                    answers.append((answer.status_code, answer.json()))
    assert answers == [(400, {"detail": UPLOAD_REFUSAL})] * len(answers)
    clip = handle_upload(url, outside)
    assert raw_call(url, "transcribe", [clip, 5, "auto", None, False], AUTH)[1]["error"] == (
        "`model` must be text, not int.")
    assert raw_call(url, "transcribe", [clip, "0.6B", "auto", None, "yes"], AUTH)[1]["error"] == (
        "`timestamps` must be true or false, not str.")
    event, data = raw_call(url, "transcribe", [clip, "0.6B", "auto", None, None], AUTH)
    assert event == "complete" and data[0]["text"] == SCRIPTED_SENTENCE


def handle_upload(url: str, path: Path) -> dict:
    """Upload a file as any HTTP client can (`POST /gradio_api/upload`), returning the reference to send."""
    stored = httpx.post(f"{url}gradio_api/upload", files={"files": (path.name, path.read_bytes())}).json()[0]
    return {"path": stored, "meta": {"_type": "gradio.FileData"}}


def test_a_raw_call_with_missing_inputs_is_told_how_many(url):
    answer = httpx.post(f"{url}gradio_api/call/transcribe", json={"data": []}, headers=AUTH)
    assert answer.status_code == 400
    assert answer.json()["detail"].startswith("The /transcribe endpoint takes 1 to 9 inputs and got 0")


def test_a_raw_call_may_leave_out_options_and_gets_their_defaults(url, media):
    """A program written before `speakers` existed sends five inputs, one written before `formats` six; one that
    sends only the audio is as valid, and so is one that sends null for the new options. All get SRT and VTT."""
    clip = handle_upload(url, media / "clip.wav")
    for data in ([clip, "0.6B", "auto", "", False], [clip, "0.6B", "auto", "", False, "off"], [clip],
                 [clip, None, None, None, False, None, None, None, None]):
        event, result = raw_call(url, "transcribe", data, AUTH)
        assert event == "complete" and result[0]["text"] == SCRIPTED_SENTENCE and "speakers" in result[0]
        assert result[0]["speakers"] == []
        assert [Path(file["path"]).suffix for file in result[1:]] == [".srt", ".vtt"]
    event, result = raw_call(url, "align", [clip, "Hello there.", "en"], AUTH)
    assert event == "complete" and [Path(file["path"]).suffix for file in result[1:]] == [".srt", ".vtt"]


def test_oversized_text_is_refused_at_once_and_the_next_request_is_served(client, media):
    clip = handle_file(str(media / "clip.wav"))
    huge = "x" * (1 << 20)
    with pytest.raises(AppError, match="context is 1,048,576 characters long"):
        client.predict(audio=clip, context=huge, api_name="/transcribe")
    with pytest.raises(AppError, match="text to align is 1,048,576 characters long"):
        client.predict(audio=clip, text=huge, api_name="/align")
    with pytest.raises(AppError, match=r"Unknown model 'x{79}…'"):
        client.predict(audio=clip, model=huge, api_name="/transcribe")
    result = client.predict(audio=clip, language="en", api_name="/transcribe")
    check_transcript_and_subtitles(result, "English", 3.0)


def test_server_keeps_serving_after_all_that(client, oai, media):
    result = client.predict(audio=handle_file(str(media / "clip.wav")), language="en", api_name="/transcribe")
    check_transcript_and_subtitles(result, "English", 3.0)
    with open(media / "clip.wav", "rb") as f:
        assert oai.audio.transcriptions.create(file=f, model="qwen3-asr-0.6b").text == SCRIPTED_SENTENCE


def test_with_no_hub_the_page_and_the_api_say_which_models_cannot_run(model_dir, tmp_path, media):
    """Only the 0.6B model is on disk and the hub is a listener on 127.0.0.1 that never answers (no request leaves
    this machine): the page says so from startup, the 1.7B model is refused within seconds, the 0.6B one works."""
    local = tmp_path / "models"
    local.mkdir()
    (local / "Qwen3-ASR-0.6B-hf").symlink_to(Path(model_dir) / "Qwen3-ASR-0.6B-hf")
    with socket.create_server(("127.0.0.1", 0)) as silent_hub:
        env = {"QASR_MODEL_DIR": str(local), "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0",
               "HF_ENDPOINT": f"http://127.0.0.1:{silent_hub.getsockname()[1]}", "HF_HOME": str(tmp_path / "hf"),
               "QASR_HUB_TIMEOUT": "2"}
        with app_server(model_dir, env=env) as base:
            page = httpx.get(base + "config").text
            assert "0.6B ready (local folder)" in page and "1.7B unavailable: the hub did not answer" in page
            client = Client(base, verbose=False)
            started = time.monotonic()
            with pytest.raises(AppError, match="Qwen/Qwen3-ASR-1.7B-hf is unavailable: the hub did not answer"):
                client.predict(audio=handle_file(str(media / "clip.wav")), model="1.7B", api_name="/transcribe")
            assert time.monotonic() - started < 30  # the hub timeout is 2 s; before, this took about 140 s
            data = client.predict(audio=handle_file(str(media / "clip.wav")), api_name="/transcribe")[0]
            assert data["text"] == SCRIPTED_SENTENCE


def test_speakers_through_gradio_client_in_the_json_and_both_subtitles(client, media):
    result = client.predict(audio=handle_file(str(media / "dialog.wav")), timestamps=True, speakers="2",
                            api_name="/transcribe")
    transcript = Transcript.from_dict(result[0])
    assert transcript.speakers == ["Speaker 1", "Speaker 2"]
    assert [s.speaker for s in transcript.segments][0] == "Speaker 1"
    assert {s.speaker for s in transcript.segments} == {"Speaker 1", "Speaker 2"}
    assert all(w.speaker in transcript.speakers for w in transcript.words)
    srt, vtt = (Path(path).read_text(encoding="utf-8") for path in result[1:])
    assert srt == to_srt(transcript) and "\n[Speaker 1] Hello" in srt and "\n[Speaker 2] Hello" in srt
    assert vtt == to_vtt(transcript) and "\n<v Speaker 2>Hello" in vtt
    plain = client.predict(audio=handle_file(str(media / "dialog.wav")), api_name="/transcribe")[0]
    assert plain["speakers"] == [] and "speaker" not in plain["segments"][0]
    with pytest.raises(AppError, match="Speakers 'a crowd' is not understood: give a number"):
        client.predict(audio=handle_file(str(media / "clip.wav")), speakers="a crowd", api_name="/transcribe")


def test_align_takes_speakers_as_its_last_input(client, media):
    """Your own text, timed by the aligner, with who said it; `speakers` comes last, after the layout options."""
    result = client.predict(audio=handle_file(str(media / "dialog.wav")), text="Hello there. How are you? Fine.",
                            language="en", speakers="2", api_name="/align")
    transcript = Transcript.from_dict(result[0])
    assert transcript.speakers == ["Speaker 1", "Speaker 2"] and len(transcript.turns) >= 2
    assert transcript.words and all(w.speaker in transcript.speakers for w in transcript.words)
    vtt = Path(result[2]).read_text(encoding="utf-8")
    assert vtt == to_vtt(transcript) and "<v Speaker 1>Hello" in vtt
    with pytest.raises(AppError, match="Speakers must be between 1 and 10"):
        client.predict(audio=handle_file(str(media / "clip.wav")), text="Hello.", speakers="12", api_name="/align")


def test_rest_diarized_json_and_speakers_in_verbose_json(oai, url, media):
    with open(media / "dialog.wav", "rb") as f:
        diarized = oai.audio.transcriptions.create(file=f, model="qwen3-asr-0.6b", response_format="diarized_json")
    assert [s.speaker for s in diarized.segments][:1] == ["Speaker 1"]
    assert {s.speaker for s in diarized.segments} == {"Speaker 1", "Speaker 2"}
    assert all(s.type == "transcript.text.segment" and s.start <= s.end for s in diarized.segments)
    assert diarized.text.startswith(SCRIPTED_SENTENCE) and diarized.duration == pytest.approx(14.67, abs=0.05)
    verbose = httpx.post(f"{url}v1/audio/transcriptions", headers=AUTH, timeout=120,
                         data={"model": "qwen3-asr-0.6b", "response_format": "verbose_json", "speakers": "1-2",
                               "timestamp_granularities[]": ["word", "segment"]},
                         files={"file": ("dialog.wav", (media / "dialog.wav").read_bytes())}).json()
    assert verbose["speakers"] == ["Speaker 1", "Speaker 2"]
    assert {w["speaker"] for w in verbose["words"]} == {s["speaker"] for s in verbose["segments"]} == {
        "Speaker 1", "Speaker 2"}
    text = httpx.post(f"{url}v1/audio/transcriptions", headers=AUTH, timeout=120,
                      data={"response_format": "text", "speakers": "2"},
                      files={"file": ("dialog.wav", (media / "dialog.wav").read_bytes())}).text
    assert text.startswith("Speaker 1: Hello") and "\n\nSpeaker 2: Hello" in text
    bad = httpx.post(f"{url}v1/audio/transcriptions", headers=AUTH, data={"speakers": "99"},
                     files={"file": ("clip.wav", (media / "clip.wav").read_bytes())})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "speakers"
    assert "between 1 and 10" in bad.json()["error"]["message"]
