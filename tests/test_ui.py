"""The Space's handlers, called as Gradio calls them, with the scripted checkpoints: fast checks of the adapter.

The browser tests (`test_browser.py`) drive the same handlers through a real server and Chromium; these cover the
cases a browser cannot reach cheaply (a 3 h file, every kind of bad input) and the pure parts (karaoke markup,
ZeroGPU sizing).
"""

from __future__ import annotations

import html
import inspect
import itertools
import json
import os
import pickle
import re
import shutil
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from urllib.parse import unquote

import gradio as gr
import numpy as np
import pytest

from qasr_space import gpu
from qasr_space.access import UPLOAD_REFUSAL
from qasr_space.errors import AudioError, QasrError
from qasr_space.karaoke import render_karaoke
from qasr_space.languages import ALIGNER_LANGUAGES, LANGUAGES
from qasr_space.models import ModelManager
from qasr_space.results import Transcript, Word
from qasr_space.settings import Settings
from qasr_space.streaming import LiveSession
from qasr_space import ui as ui_module
from qasr_space.ui import (ALIGN, ASSETS_DIR, AUTO, EXAMPLES, FILE_SOURCE, LIVE_SOURCE, RECORD_SOURCE, SERVER_FAULT,
                           TRANSCRIBE, URL_SOURCE, ServedFiles, SpaceUI, build_demo, mode_layout, model_status_line,
                           render_ui, timestamps_option)
from qasr_space.writers import FORMATS, to_srt
from tests.browser import static_server
from tests.checkpoints import SCRIPTED_SENTENCE
from tests.media import tone, write_media, write_sparse_wav
from tests.engines import VLLM, suite_settings

XSS = '<img src=x onerror="window.__xss=1">'
#: One download per export format.
EXPORT_SUFFIXES = {suffix for _, suffix, _ in FORMATS.values()}


def no_progress(*args, **kwargs) -> None:
    """Stands in for `gr.Progress`, which only reports inside a running Gradio event."""


@pytest.fixture(scope="session")
def uploads(tmp_path_factory) -> str:
    """Where the handlers may read files, standing in for Gradio's upload folder: every test's temporary folder."""
    return str(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def ui(manager, tmp_path_factory, uploads) -> SpaceUI:
    return SpaceUI(manager, ServedFiles(str(tmp_path_factory.mktemp("served"))), uploads)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    return str(write_media(tmp_path_factory.mktemp("clips") / "talk.wav", tone(4.0), 16000, "wav"))


def run(ui: SpaceUI, file_path=None, *, source=FILE_SOURCE, recording=None, url=None, mode=TRANSCRIBE, text=None,
        model="0.6B", language=AUTO, context=None, timestamps=True, speakers="Off") -> list[tuple]:
    """Every update the handler yields, in order."""
    return list(ui.run(source, file_path, recording, url, mode, text, model, language, context, timestamps, speakers,
                       no_progress))


def refusal(updates: list[tuple]) -> str:
    """The message the result area shows in place of a result: the last update must be such a refusal."""
    shown = re.fullmatch(r'<div class="qk-notice qk-error" role="alert">(.*)</div>', updates[-1][2], re.S)
    assert shown, updates[-1][2][:300]
    assert updates[-1][3] is None and updates[-1][5] is None  # no downloads, nothing kept
    return html.unescape(shown.group(1))


def words_in(karaoke: str) -> list[tuple[str, float, float]]:
    return [(html.unescape(text), float(start), float(end)) for start, end, text in
            re.findall(r'<span class="qk-word" data-start="([\d.]+)" data-end="([\d.]+)">(.*?)</span>', karaoke)]


def test_transcribe_shows_progress_then_the_result_and_downloads(ui, clip):
    updates = run(ui, clip)
    assert updates[0][:2] == ("", "") and "Transcribing" in updates[0][2] and updates[0][3] is None
    language, text, karaoke, files, *_ = updates[-1]
    assert (language, text) == ("Detected: English", SCRIPTED_SENTENCE)
    words = words_in(karaoke)
    assert " ".join(w for w, _, _ in words) == SCRIPTED_SENTENCE
    assert all(0 <= start <= end <= 4.0 for _, start, end in words)
    assert [start for _, start, _ in words] == sorted(start for _, start, _ in words)
    assert "gradio_api/file=" + clip in karaoke  # uploads are played from where Gradio stored them
    by_suffix = {Path(f).suffix: Path(f) for f in files}
    assert set(by_suffix) == EXPORT_SUFFIXES and all(f.stem == "talk" for f in by_suffix.values())
    transcript = Transcript.from_dict(json.loads(by_suffix[".json"].read_text()))
    assert by_suffix[".srt"].read_text() == to_srt(transcript)
    assert "00:00:00,320 --> " in by_suffix[".srt"].read_text()
    assert by_suffix[".txt"].read_text() == SCRIPTED_SENTENCE + "\n"


def test_partial_text_and_progress_appear_as_chunks_finish(model_dir, tmp_path, uploads):
    settings = suite_settings(model_dir, chunk_seconds=2.0, batch_size=1)
    ui = SpaceUI(ModelManager(settings), ServedFiles(str(tmp_path)), uploads)
    path = write_media(tmp_path / "long.wav", tone(6.0), 16000, "wav")
    fractions = []
    updates = list(ui.run(FILE_SOURCE, str(path), None, None, TRANSCRIBE, None, "0.6B", AUTO, None, True, "Off",
                          lambda fraction, desc=None: fractions.append(fraction)))
    texts = [text for _, text, *_ in updates]
    chunks = len(updates) - 2  # one update before the first chunk, one per chunk, then the final one with files
    assert chunks >= 3
    assert texts == ["", *(" ".join([SCRIPTED_SENTENCE] * k) for k in range(1, chunks + 1)), texts[-2]]
    assert [files is None for _, _, _, files, *_ in updates] == [True] * (chunks + 1) + [False]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(set(fractions)) >= 4


def test_the_selected_tab_says_which_input_is_used(ui, clip, tmp_path):
    other = str(write_media(tmp_path / "other.wav", np.zeros(16000, np.float32), 16000, "wav"))  # silence
    assert run(ui, other, source=RECORD_SOURCE, recording=clip)[-1][1] == SCRIPTED_SENTENCE
    assert run(ui, clip, source=FILE_SOURCE, recording=other)[-1][1] == SCRIPTED_SENTENCE


def test_video_files_are_transcribed_and_played_from_a_wav(ui, tmp_path):
    path = write_media(tmp_path / "talk.mkv", tone(2.0), 16000, "mkv", with_video=True)
    _, text, karaoke, *_ = run(ui, str(path))[-1]
    played = re.search(r'src="gradio_api/file=([^"]+)"', karaoke).group(1)
    assert text == SCRIPTED_SENTENCE
    assert played.endswith("/audio.wav") and os.path.getsize(played) > 2 * 16000 * 2


def test_without_timestamps_the_karaoke_seeks_by_segment(ui, clip):
    _, text, karaoke, *_ = run(ui, clip, timestamps=False)[-1]
    segments = words_in(karaoke)
    assert " ".join(s for s, _, _ in segments) == SCRIPTED_SENTENCE
    assert segments[0][1] == 0.0 and segments[-1][2] == 4.0


def test_language_the_aligner_lacks_is_said_in_the_result(ui, clip):
    language, text, karaoke, *_ = run(ui, clip, language="Greek", timestamps=True)[-1]
    assert language == "Forced: Greek" and text == SCRIPTED_SENTENCE
    assert "timestamps unavailable for Greek" in karaoke


def test_align_own_text_escapes_markup(ui, clip):
    _, text, karaoke, files, *_ = run(ui, clip, mode=ALIGN, text=f"{XSS} Hello world", language="English")[-1]
    assert text == f"{XSS} Hello world"
    assert "<img" not in karaoke and "&lt;img" in karaoke
    assert [w for w, _, _ in words_in(karaoke)] == ["<img", "src=x", 'onerror="window.__xss=1">', "Hello", "world"]
    assert len(files) == len(EXPORT_SUFFIXES)


def test_karaoke_escapes_every_user_controlled_string():
    transcript = Transcript(language="English", text="", duration=2.0,
                            words=[Word(" <b>bold</b>", 0.0, 0.5), Word(' "quoted" & more', 0.5, 1.0)],
                            warnings=["<script>alert(1)</script>"])
    page = render_karaoke(transcript, 'gradio_api/file=/tmp/a"b.wav', title='<img src=x onerror="x()">')
    assert not re.search(r"<(b|script|img)\b", page)
    assert 'src="gradio_api/file=/tmp/a&quot;b.wav"' in page
    assert "&lt;img src=x onerror=&quot;x()&quot;&gt;" in page and "&lt;script&gt;" in page
    assert [w for w, _, _ in words_in(page)] == ["<b>bold</b>", '"quoted" & more']


@pytest.mark.parametrize("make, kwargs, message", [
    (None, {}, "No audio: upload an audio or video file"),
    (lambda d: d / "clip.wav", {"source": RECORD_SOURCE}, "No recording yet"),
    (lambda d: d / "broken.mp3", {}, "could not be decoded"),
    (lambda d: write_media(d / "short.wav", tone(0.1), 16000, "wav"), {}, "too short"),
    (lambda d: write_media(d / "silence.wav", np.zeros(32000, np.float32), 16000, "wav"), {}, "No speech found"),
    (lambda d: d / "clip.wav", {"language": "Klingon"}, "Unknown language 'Klingon'"),
    (lambda d: write_sparse_wav(d / "long.wav", 3 * 3600), {}, "3:00:00 long, over the 2:00:00 limit"),
    (lambda d: d / "clip.wav", {"mode": ALIGN, "text": "  "}, "text to align is empty"),
    (lambda d: d / "clip.wav", {"mode": ALIGN, "language": "Greek", "text": "Hi"}, "no timestamps for Greek"),
    (None, {"source": URL_SOURCE, "url": " "}, "URL field is empty"),
    (None, {"source": LIVE_SOURCE}, "Live transcription runs while you record"),
])
def test_bad_input_is_a_gradio_error_that_names_the_problem(ui, tmp_path, make, kwargs, message):
    (tmp_path / "broken.mp3").write_bytes(b"\x00garbage" * 300)
    write_media(tmp_path / "clip.wav", tone(1.0), 16000, "wav")
    path = str(make(tmp_path)) if make else None
    folders = os.listdir(ui.served.root)
    assert message in refusal(run(ui, path, **kwargs))
    assert os.listdir(ui.served.root) == folders  # a failed request leaves no files behind


def test_the_handler_still_works_after_errors(ui, clip, tmp_path):
    refusal(run(ui, str(write_media(tmp_path / "silence.wav", np.zeros(16000, np.float32), 16000, "wav"))))
    assert run(ui, clip)[-1][1] == SCRIPTED_SENTENCE


def test_a_server_fault_is_logged_and_shown_in_the_result_area_and_the_run_still_ends(ui, clip, monkeypatch, caplog):
    """A bug of the server's (here a fake: writing the downloads raises) ends the run with a notice, not a
    traceback, so the page's listeners for a successful end (hiding Cancel) still run."""
    def broken_writer(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(ui_module, "write_all", broken_writer)
    folders = os.listdir(ui.served.root)
    with caplog.at_level("ERROR", logger="qasr_space.ui"):
        assert refusal(run(ui, clip)) == SERVER_FAULT
    assert "disk on fire" in caplog.text
    assert os.listdir(ui.served.root) == folders


def test_a_run_yields_at_every_progress_tick_even_when_its_status_stays_the_same(ui, monkeypatch, tmp_path):
    """Gradio stops a cancelled run only at a yield, and ignores the page's next Transcribe until then; a status
    stuck on one text (here a fake that never changes) must not hold it."""
    monkeypatch.setattr(ui_module, "PROGRESS_SECONDS", 0.001)
    monkeypatch.setattr(ui_module, "progress_status", lambda snapshot, share=True: "Transcribing… (a fake status)")
    updates = run(ui, str(write_media(tmp_path / "talk.wav", tone(8.0), 16000, "wav")))
    ticks_before_the_text = [update for update in updates if "a fake status" in update[2] and update[1] == ""]
    assert len(ticks_before_the_text) >= 3
    assert updates[-1][1] == SCRIPTED_SENTENCE


class FakeSlowAligner:
    """A fake of the page's aligner call that holds each call until the test says go, then aligns for real: it
    stands in for a long alignment (a 3 h file), which the scripted aligner never is."""

    def __init__(self, real):
        self.real, self.go, self.started, self.finished = real, threading.Event(), [], []

    def __call__(self, *args):
        self.started.append(args)
        self.go.wait(timeout=120)
        result = self.real(*args)
        self.finished.append(args)
        return result


# The aligner (held by a fake) and the input's reading: the ASR engine is not reached.
@pytest.mark.engine_free
def test_cancel_in_a_long_step_stops_the_run_at_once_and_cancelled_steps_cannot_pile_up(manager, clip, tmp_path,
                                                                                       uploads, monkeypatch):
    """Gradio cancels a run by closing its generator, which it can do only at a yield. A run waiting on a long
    blocking step yields every tick, so it is closed at once, leaving no folder; the step ends aside. Cancelled
    steps still running hold the workers (as many as the queue runs requests), so they cannot pile up: the next
    run waits for a worker, yielding, and cancelled before it starts, never runs."""
    monkeypatch.setattr(ui_module, "ASIDE_TICK_SECONDS", 0.01)
    served = ServedFiles(str(tmp_path / "served"))
    page = SpaceUI(manager, served, uploads)
    aligner = FakeSlowAligner(page._align_text)
    monkeypatch.setattr(page, "_align_text", aligner)
    workers = page.settings.concurrency_limit

    def aligning(until, most_ticks: int, status: str = "Aligning…"):
        """A run of Align mode, followed until `until()` holds or for `most_ticks` updates saying `status`."""
        updates = page.run(FILE_SOURCE, clip, None, None, ALIGN, "a test", "0.6B", "English", None, True, "Off",
                           no_progress)
        ticks = 0
        for update in updates:
            ticks += status in update[2]
            if until() or ticks >= most_ticks:
                return updates, ticks
        pytest.fail("the run ended while its aligner was held")

    for started in range(1, workers + 1):
        held, _ = aligning(lambda: len(aligner.started) == started, most_ticks=3000)
        assert len(aligner.started) == started
        held.close()
        assert not aligner.finished and os.listdir(served.root) == []
    queued, ticks = aligning(lambda: False, most_ticks=20, status=ui_module.READING)  # even its file waits
    queued.close()
    assert ticks == 20 and len(aligner.started) == workers, "a step cancelled while it waited for a worker ran"
    aligner.go.set()
    _, text, karaoke, files, *_ = run(page, clip, mode=ALIGN, text="a test", language="English")[-1]
    assert text == "a test" and len(files) == len(EXPORT_SUFFIXES)
    assert len(aligner.started) == len(aligner.finished) == workers + 1


def test_url_input_shows_title_and_length_and_plays_the_fetched_audio(model_dir, tmp_path, uploads):
    media = tmp_path / "site"
    media.mkdir()
    write_media(media / "interview.m4a", tone(3.0), 16000, "m4a")
    served = ServedFiles(str(tmp_path / "served"))
    ui = SpaceUI(ModelManager(suite_settings(model_dir, allow_private_urls=True)), served, uploads)
    with static_server(media) as base:
        _, text, karaoke, files, *_ = run(ui, source=URL_SOURCE, url=base + "interview.m4a")[-1]
    assert text == SCRIPTED_SENTENCE
    assert re.search(r'<span class="qk-title">interview \(0:03\)</span>', karaoke)
    played = re.search(r'src="gradio_api/file=([^"]+)"', karaoke).group(1)
    assert played.startswith(served.root) and played.endswith(".m4a") and os.path.getsize(played) > 0
    assert Path(files[0]).name == "interview.srt"


def test_timestamps_are_offered_only_where_the_aligner_has_the_language():
    assert timestamps_option(AUTO, True)["interactive"] is True
    assert timestamps_option("German", True)["interactive"] is True
    greek = timestamps_option("Greek", True)
    assert greek["interactive"] is False and greek["value"] is False and "Greek" in greek["info"]


def test_going_back_to_a_language_with_timestamps_restores_the_users_choice():
    """Arabic turns the box off; back on Auto it is as the user left it, on or off."""
    assert timestamps_option("Arabic", True)["value"] is False
    assert timestamps_option(AUTO, True)["value"] is True and timestamps_option("German", False)["value"] is False


def test_align_mode_offers_the_aligner_languages_only():
    text_box, model, context, timestamps, language, button = mode_layout(ALIGN, "Greek")
    assert text_box["visible"] and not model["visible"] and not context["visible"] and not timestamps["visible"]
    assert language["choices"] == [AUTO, *ALIGNER_LANGUAGES] and language["value"] == AUTO
    assert button["value"] == "Align"
    *_, language, button = mode_layout(TRANSCRIBE, "German")
    assert language["choices"] == [AUTO, *LANGUAGES] and language["value"] == "German"


def test_examples_exist_and_run(ui, tmp_path):
    for name, language, timestamps, _ in EXAMPLES:
        assert (ASSETS_DIR / name).stat().st_size > 1000
    cached = shutil.copy(ASSETS_DIR / EXAMPLES[0][0], tmp_path)  # Gradio runs an example from its cached copy
    _, text, karaoke, *_ = list(ui.run_example(cached, AUTO, True, progress=no_progress))[-1]
    assert text == SCRIPTED_SENTENCE and words_in(karaoke)


def test_ui_mounts_as_a_tab_of_another_app(manager):
    with gr.Blocks() as parent:
        with gr.Tab("Something else"):
            gr.Markdown("hello")
        with gr.Tab("ASR"):
            render_ui(manager)
    ids = {c.get("props", {}).get("elem_id") for c in parent.get_config_file()["components"]}
    assert {"qasr-file", "qasr-record", "qasr-url", "qasr-live", "qasr-run", "qasr-karaoke"} <= ids
    assert isinstance(build_demo(manager), gr.Blocks)


def test_gpu_duration_grows_with_the_audio_and_is_capped():
    minute = np.zeros(60 * 16000, np.float32)
    assert gpu.gpu_seconds(minute[:16000]) == gpu.BASE_GPU_SECONDS
    assert gpu.gpu_seconds(np.zeros(10 * 60 * 16000, np.float32)) > gpu.gpu_seconds(minute)
    assert gpu.gpu_seconds(np.zeros(4 * 3600 * 16000, np.float32)) == gpu.MAX_GPU_SECONDS
    assert gpu.gpu_seconds([np.zeros(10 * 60 * 16000, np.float32)] * 2) == gpu.gpu_seconds(
        np.zeros(20 * 60 * 16000, np.float32))  # a list of clips counts all of them


def test_gpu_calls_turn_user_errors_into_gradio_errors():
    @gpu.on_gpu
    def call(audio):
        raise AudioError("bad audio")

    @gpu.on_gpu
    def stream(audio):
        yield 1
        raise QasrError("bad chunk")

    with pytest.raises(gr.Error, match="bad audio"):
        call(np.zeros(10))
    with pytest.raises(gr.Error, match="bad chunk"):
        list(stream(np.zeros(10)))
    assert gpu.zero_gpu_settings(Settings()) == Settings()  # off ZeroGPU, nothing changes


def mic_chunks(seconds: float, chunk_seconds: float = 0.5) -> list[tuple[int, np.ndarray]]:
    """What Chromium streams: (48000, int16) chunks holding only the new audio."""
    samples = (tone(seconds, 48000) * 32767).astype(np.int16)
    step = int(chunk_seconds * 48000)
    return [(48000, samples[i:i + step]) for i in range(0, len(samples), step)]


def test_live_microphone_shows_text_while_speaking_then_the_full_result(ui):
    session = None
    shown = []
    for chunk in mic_chunks(3.0):
        html_text, session = ui.live_update(chunk, session, "0.6B", AUTO, XSS)
        shown.append(html_text)
    assert SCRIPTED_SENTENCE in html.unescape(shown[-1])
    assert "qk-tentative" in shown[-1] and "<img" not in shown[-1]
    updates = list(ui.live_finish(session, "0.6B", AUTO, None, True, progress=no_progress))
    assert updates[0][:2] == ("", "")  # "Transcribing…" first, like an upload
    language, text, karaoke, files, _, _, _, live = updates[-1]
    assert (language, text) == ("Detected: English", SCRIPTED_SENTENCE) and session.finished
    assert "qk-tentative" not in live and SCRIPTED_SENTENCE in html.unescape(live)  # stopped: nothing is grey
    assert [w for w, *_ in words_in(karaoke)] == SCRIPTED_SENTENCE.split()
    assert {Path(f).suffix for f in files} == EXPORT_SUFFIXES
    assert "recording.wav" in karaoke


def test_live_sessions_of_two_people_stay_apart(ui):
    talking, silent = None, None
    for chunk in mic_chunks(2.0):
        _, talking = ui.live_update(chunk, talking, "0.6B", AUTO, None)
        _, silent = ui.live_update((48000, np.zeros_like(chunk[1])), silent, "0.6B", AUTO, None)
    assert talking is not silent
    assert talking.live_text().text == SCRIPTED_SENTENCE and silent.live_text().text == ""


def test_live_stop_without_recording_is_a_clear_error(ui):
    for session in (None, LiveSession()):
        updates = list(ui.live_finish(session, "0.6B", AUTO, None, True, progress=no_progress))
        assert "Nothing was recorded" in refusal([u[:7] for u in updates])


class FakeZeroGPU:
    """A fake of `spaces.GPU` on ZeroGPU, which cannot run here: the call's arguments and results (each item a
    generator yields) cross as pickles, as they do to and from ZeroGPU's worker process, and the duration function
    is called with the call's arguments. Records the durations asked for."""

    def __init__(self):
        self.durations: list[int] = []

    def GPU(self, duration):  # noqa: N802 (the name of the function it stands in for)
        def decorate(fn):
            def across(value):
                return pickle.loads(pickle.dumps(value))

            if inspect.isgeneratorfunction(fn):
                def call(*args, **kwargs):
                    self.durations.append(duration(*args, **kwargs))
                    for item in fn(*across(args), **across(kwargs)):
                        yield across(item)
            else:
                def call(*args, **kwargs):
                    self.durations.append(duration(*args, **kwargs))
                    return across(fn(*across(args), **across(kwargs)))
            return call
        return decorate


def test_every_model_call_of_the_page_crosses_a_zero_gpu_boundary(manager, tmp_path, monkeypatch, clip, uploads):
    """Upload, align, live updates and the live final pass all run their model work inside `spaces.GPU`, with
    arguments and results that pickle; nothing GPU-bound runs outside it (the worker is where the GPU is)."""
    fake = FakeZeroGPU()
    monkeypatch.setattr(gpu, "spaces", fake)
    monkeypatch.setattr("qasr_space.ui.ON_ZERO_GPU", True)
    zero_ui = SpaceUI(manager, ServedFiles(str(tmp_path)), uploads)
    assert run(zero_ui, clip)[-1][1] == SCRIPTED_SENTENCE
    assert run(zero_ui, clip, mode=ALIGN, text="Hello there", language="English")[-1][1] == "Hello there"
    asked = len(fake.durations)
    session = None
    for chunk in mic_chunks(3.0):
        html_text, session = zero_ui.live_update(chunk, session, "0.6B", AUTO, None)
    assert SCRIPTED_SENTENCE in html.unescape(html_text) and session.model_calls >= 2
    assert len(fake.durations) - asked == session.model_calls  # each live model call went through spaces.GPU
    assert list(zero_ui.live_finish(session, "0.6B", AUTO, None, True, progress=no_progress))[-1][1] == SCRIPTED_SENTENCE
    assert len(fake.durations) - asked == session.model_calls + 1
    assert all(gpu.BASE_GPU_SECONDS <= d <= gpu.MAX_GPU_SECONDS for d in fake.durations)


def test_the_page_reads_only_files_in_the_upload_folder(ui, tmp_path_factory):
    """A handler called with any other path (as a forged request could) gets one answer, whether the file exists,
    is audio, or is missing; nothing is read."""
    outside = tempfile.mkdtemp()  # not under the upload folder the handlers were given
    try:
        audio = str(write_media(Path(outside) / "secret.wav", tone(2.0), 16000, "wav"))
        messages = set()
        for path in (audio, "/etc/passwd", os.path.join(outside, "missing.wav"), "../../etc/passwd"):
            for source in (FILE_SOURCE, RECORD_SOURCE):
                messages.add(refusal(run(ui, path, source=source, recording=path)))
        assert messages == {UPLOAD_REFUSAL}
    finally:
        shutil.rmtree(outside)


def test_error_messages_show_user_text_as_text(ui):
    for url in (f"ftp://x/{XSS}", f"https://[{XSS}"):
        updates = run(ui, source=URL_SOURCE, url=url)
        assert "<img" not in updates[-1][2] and refusal(updates)
    assert XSS in refusal(run(ui, source=URL_SOURCE, url=f"https://[{XSS}"))  # shown as text, escaped in the markup


def test_long_context_and_text_are_refused_before_the_audio_is_read(ui, clip):
    folders = os.listdir(ui.served.root)
    assert "context is 4,001 characters long, over this server's limit of 4,000" in refusal(
        run(ui, clip, context="x" * 4001))
    assert "text to align is 12,001 characters long" in refusal(run(ui, clip, mode=ALIGN, text="w " * 6000 + "w"))
    assert "over the limit of 360 for 4.0 s of audio" in refusal(run(ui, clip, mode=ALIGN, text="word " * 100))
    assert os.listdir(ui.served.root) == folders


def test_a_model_that_is_not_loaded_yet_shows_a_loading_stage(model_dir, tmp_path, uploads, clip):
    fresh = SpaceUI(ModelManager(suite_settings(model_dir)), ServedFiles(str(tmp_path)), uploads)
    stages = []
    list(fresh.run(FILE_SOURCE, clip, None, None, TRANSCRIBE, None, "0.6B", AUTO, None, True, "Off",
                   lambda fraction, desc=None: stages.append(desc)))
    loading = [i for i, desc in enumerate(stages) if desc.startswith("Loading")]
    transcribing = [i for i, desc in enumerate(stages) if desc.startswith("Transcribing")]
    asr_load = [] if VLLM else ["Loading Qwen3-ASR-0.6B-hf (first use)"]  # a vLLM server holds its model already
    assert [stages[i] for i in loading] == [*asr_load, "Loading Qwen3-ForcedAligner-0.6B-hf (first use)"]
    assert loading[-1] < transcribing[0]
    stages.clear()
    list(fresh.run(FILE_SOURCE, clip, None, None, TRANSCRIBE, None, "0.6B", AUTO, None, True, "Off",
                   lambda fraction, desc=None: stages.append(desc)))
    assert not any(desc.startswith("Loading") for desc in stages)  # loaded once, kept


def test_the_page_says_which_models_can_run(manager, tmp_path):
    with gr.Blocks() as page:
        render_ui(manager)
    markdown = {c["props"].get("elem_id"): c["props"].get("value") for c in page.get_config_file()["components"]}
    assert markdown["qasr-models"] == ("Models: 0.6B ready (local folder) · 1.7B ready (local folder) · "
                                       "word timestamps ready (local folder)")
    missing = ModelManager(suite_settings(str(tmp_path)))
    assert "0.6B unavailable: the hub is switched off here (HF_HUB_OFFLINE)" in model_status_line(missing.statuses())


def test_live_recordings_are_capped_in_number_and_length(model_dir, tmp_path, uploads):
    settings = suite_settings(model_dir, max_live_sessions=2, max_live_seconds=2.0)
    capped = SpaceUI(ModelManager(settings), ServedFiles(str(tmp_path)), uploads)
    chunk = mic_chunks(0.5)[0]
    _, first = capped.live_update(chunk, None, "0.6B", AUTO, None)
    _, second = capped.live_update(chunk, None, "0.6B", AUTO, None)
    with pytest.raises(gr.Error, match="already taking 2 live recordings, its limit"):
        capped.live_update(chunk, None, "0.6B", AUTO, None)
    with pytest.raises(gr.Error, match="reached the 2 s limit"):
        for chunk in mic_chunks(2.0):
            capped.live_update(chunk, first, "0.6B", AUTO, None)
    capped.live_sessions.release(second)  # what Gradio does when the page's state expires or the tab closes
    assert second.released and len(second.audio) == 0
    _, third = capped.live_update(chunk, None, "0.6B", AUTO, None)
    assert capped.live_sessions.active() == 2 and third is not second


def test_a_live_update_refuses_a_context_over_the_limit(ui):
    """The page's box caps its length, but a forged call can send anything: every update would repeat it. A refused
    call keeps no recording slot: the page keeps no state from it, so its next chunk opens another."""
    active = ui.live_sessions.active()
    for _ in range(ui.settings.max_live_sessions + 1):
        with pytest.raises(gr.Error, match="context is 1,048,576 characters long"):
            ui.live_update(mic_chunks(1.0)[0], None, "0.6B", AUTO, "c" * (1 << 20))
    assert ui.live_sessions.active() == active


@pytest.mark.parametrize("chunk, message", [
    ((1_000_000, np.zeros(1000, np.int16)), "sample rate of 1000000"),
    ((10, np.zeros(10, np.int16)), "sample rate of 10"),
    ((48000, np.zeros(48000 * 11, np.int16)), "more than 10 s of audio"),
    ((48000, np.full(4800, np.nan, np.float32)), "NaN or infinity"),
])
def test_absurd_live_chunks_are_refused(ui, chunk, message):
    active = ui.live_sessions.active()
    with pytest.raises(gr.Error, match=message):
        ui.live_update(chunk, None, "0.6B", AUTO, None)
    assert ui.live_sessions.active() == active


def test_a_chunk_after_stop_joins_no_recording_and_start_begins_a_new_one(model_dir, tmp_path, uploads):
    page = SpaceUI(ModelManager(suite_settings(model_dir)), ServedFiles(str(tmp_path)), uploads)
    session = None
    for chunk in mic_chunks(1.0):
        _, session = page.live_update(chunk, session, "0.6B", AUTO, None)
    assert list(page.live_finish(session, "0.6B", AUTO, None, False, progress=no_progress))[-1][1] == SCRIPTED_SENTENCE
    recorded = session.seconds
    _, late = page.live_update(mic_chunks(0.5)[0], session, "0.6B", AUTO, None)  # arrives after the stop
    assert late is session and session.seconds == recorded and page.live_sessions.active() == 0
    assert page.live_start(session) is None and not session.released  # its final pass may still need it
    _, abandoned = page.live_update(mic_chunks(0.5)[0], None, "0.6B", AUTO, None)
    assert page.live_start(abandoned) is None and abandoned.released and page.live_sessions.active() == 0


def test_speakers_show_as_coloured_turns_and_renaming_reaches_every_download(model_dir, dialog2, tmp_path_factory,
                                                                           uploads):
    page = SpaceUI(ModelManager(suite_settings(model_dir, chunk_seconds=10.0)),
                   ServedFiles(str(tmp_path_factory.mktemp("served-speakers"))), uploads)
    updates = list(page.run(FILE_SOURCE, dialog2.path, None, None, TRANSCRIBE, None, "0.6B", AUTO, None, True, AUTO,
                            no_progress))
    assert any("Finding speakers…" in update[2] for update in updates[:-1])
    _, text, karaoke, files, names, shown, _ = updates[-1]
    assert names["visible"] and names["value"] == [["Speaker 1", "Speaker 1"], ["Speaker 2", "Speaker 2"]]
    assert text.startswith(f"Speaker 1: {SCRIPTED_SENTENCE}") and "\n\nSpeaker 2: " in text
    assert karaoke.count('<div class="qk-turn"') >= 2 and '<span class="qk-speaker">Speaker 2</span>' in karaoke
    assert len(set(re.findall(r"--qk-speaker: (#[0-9a-f]{6})", karaoke))) == 2

    text, karaoke, files, named = page.rename(shown, [["Speaker 1", "Anna"], ["Speaker 2", "<b>Bob</b>"]])
    assert text.startswith("Anna: ") and "\n\n<b>Bob</b>: " in text
    assert '<span class="qk-speaker">&lt;b&gt;Bob&lt;/b&gt;</span>' in karaoke and "<b>Bob" not in karaoke
    by_suffix = {Path(f).suffix: Path(f).read_text(encoding="utf-8") for f in files}
    assert "[Anna] Hello" in by_suffix[".srt"] and "[<b>Bob</b>] Hello" in by_suffix[".srt"]
    assert "<v &lt;b&gt;Bob&lt;/b&gt;>Hello" in by_suffix[".vtt"]
    assert json.loads(by_suffix[".json"])["speakers"] == ["Anna", "<b>Bob</b>"]
    assert by_suffix[".txt"].startswith("Anna: Hello")
    # fixing a word and re-timing keeps the turns and the names, and the names in the box are not timed as words
    retimed = list(page.retime(named, text.replace("Hello", "Hullo", 1), progress=no_progress))[-1]
    assert retimed[1].startswith("Anna: Hullo world") and retimed[5].transcript.speakers == ["Anna", "<b>Bob</b>"]
    assert not {"Anna:", "<b>Bob</b>:"} & {w for w, _, _ in words_in(retimed[2])}
    assert "[Anna] Hullo" in next(Path(f) for f in retimed[3] if f.endswith(".srt")).read_text(encoding="utf-8")
    # renaming starts from the labels diarization gave, so a second rename replaces the first
    assert page.rename(shown, [["Speaker 1", "Ann"], ["Speaker 2", ""]])[0].startswith("Ann: ")
    with pytest.raises(gr.Error, match="too long"):
        page.rename(shown, [["Speaker 1", "x" * 100]])
    with pytest.raises(gr.Error, match="transcribe with Speakers on first"):
        page.rename(None, [["Speaker 1", "Anna"]])


def test_align_mode_finds_speakers_too(ui, dialog2):
    """Your own text, timed, with who said it: the page's Align mode keeps the Speakers option."""
    text = " ".join(turn.text for turn in dialog2.turns)
    updates = run(ui, dialog2.path, mode=ALIGN, text=text, language="English", speakers="2")
    assert any("Finding speakers…" in update[2] for update in updates[:-1])
    _, shown_text, karaoke, files, names, shown, _ = updates[-1]
    assert names["visible"] and [row[0] for row in names["value"]] == ["Speaker 1", "Speaker 2"]
    assert shown_text.startswith("Speaker ") and '<span class="qk-speaker">Speaker' in karaoke
    assert shown.transcript.speakers == ["Speaker 1", "Speaker 2"]
    assert "<v Speaker" in next(Path(f) for f in files if f.endswith(".vtt")).read_text(encoding="utf-8")


def test_an_edited_transcript_is_re_timed_and_every_download_follows(ui, clip):
    final = run(ui, clip)[-1]
    shown = final[5]
    edited = final[1].replace("test", "trial run")
    updates = list(ui.retime(shown, edited, progress=no_progress))
    language, text, karaoke, files, _, kept, extras = updates[-1]
    assert language == "Detected: English" and extras["visible"] and kept.media_path == shown.media_path
    words = words_in(karaoke)
    assert [w for w, _, _ in words] == edited.split()
    assert [start for _, start, _ in words] == sorted(start for _, start, _ in words)
    assert all(0 <= start <= end <= 4.0 for _, start, end in words)
    srt = next(Path(f) for f in files if f.endswith(".srt")).read_text()
    assert "trial run" in srt and "00:00:0" in srt
    assert "there is no result to re-time" in refusal(list(ui.retime(None, "words", progress=no_progress))).lower()
    assert "text to align is empty" in refusal(list(ui.retime(shown, "  ", progress=no_progress)))


def test_several_files_and_a_zip_get_a_row_each_and_one_zip_of_everything(ui, clip, tmp_path):
    second = write_media(tmp_path / "second <i>take.wav", tone(3.0), 16000, "wav")
    silent = write_media(tmp_path / "quiet.wav", np.zeros(32000, np.float32), 16000, "wav")
    archive = tmp_path / "talks.zip"
    with zipfile.ZipFile(archive, "w") as packed:
        packed.write(clip, "day 1/intro.wav")
        packed.writestr("notes.pdf", b"%PDF")
    updates = list(ui.run_several([clip, str(second), str(silent), str(archive)], "0.6B", AUTO, None, True,
                                  progress=no_progress))
    table, bundled = updates[-1]
    assert all(zip_path is None for _, zip_path in updates[:-1]) and len(updates) >= 1 + 2 * 4
    rows = re.findall(r'<tr class="qs-(\w+)"><td>(.*?)</td><td>(.*?)</td><td class="qs-result">(.*?)</td>', table)
    assert [(status, html.unescape(name)) for status, name, _, _ in rows] == [
        ("done", "talk.wav"), ("done", "second <i>take.wav"), ("failed", "quiet.wav"),
        ("done", "talks.zip/day 1/intro.wav")]
    assert "<i>take" not in table and SCRIPTED_SENTENCE in html.unescape(rows[0][3])
    assert "No speech found" in html.unescape(rows[2][3])
    assert "notes.pdf in talks.zip is not audio or video" in html.unescape(table)
    links = re.findall(r'href="gradio_api/file=([^"]+)"', table)
    assert len(links) == 3 * len(EXPORT_SUFFIXES) and all(os.path.isfile(unquote(link)) for link in links)
    with zipfile.ZipFile(bundled) as packed:
        names = packed.namelist()
        assert "failed.txt" in names and "quiet.wav: " in packed.read("failed.txt").decode()
        assert len([n for n in names if n.endswith(".srt")]) == 3


def test_several_files_refuse_bad_requests_before_any_model_work(ui, tmp_path):
    assert "context is 4,001 characters" in html.unescape(
        list(ui.run_several([], "0.6B", AUTO, "x" * 4001, True, progress=no_progress))[-1][0])
    refused = list(ui.run_several(["/etc/passwd"], "0.6B", AUTO, None, True, progress=no_progress))
    assert refused[-1][1] is None and UPLOAD_REFUSAL in html.unescape(refused[-1][0])
    assert 'role="alert"' in list(ui.run_several(None, "0.6B", AUTO, None, True, progress=no_progress))[-1][0]


def test_a_batch_that_decodes_for_a_while_shows_progress_and_closing_the_run_cancels_it(model_dir, tmp_path, uploads,
                                                                                      clip, monkeypatch):
    """The decoding here is a fake (the tiny model decodes in milliseconds): it runs until its watch is cancelled,
    reporting a step every 10 ms, as a long batch would."""
    page = SpaceUI(ModelManager(suite_settings(model_dir)), ServedFiles(str(tmp_path)), uploads)
    monkeypatch.setattr("qasr_space.ui.PROGRESS_SECONDS", 0.05)
    seen = {}

    def fake_slow_decoding(audio, *, watch, **options):
        seen["watch"] = watch
        watch.expect(len(audio) / 16000, 1)
        watch.decoding_started([len(audio) / 16000], 1000)
        step = 0
        while not watch.cancelled:
            step += 1
            watch.decoding_step(step)
            time.sleep(0.01)
        watch.raise_if_cancelled()
        yield  # never reached: a generator, like the real one

    monkeypatch.setattr("qasr_space.ui.iter_transcribe", fake_slow_decoding)
    updates = page.run(FILE_SOURCE, clip, None, None, TRANSCRIBE, None, "0.6B", AUTO, None, False, "Off", no_progress)
    statuses = []
    for update in updates:
        statuses.append(update[2])
        if re.search(r"Transcribing… \d+%, about 0:\d\d left", update[2]):
            break
    assert len(statuses) >= 2 and not seen["watch"].cancelled
    updates.close()  # what Gradio does when Cancel is pressed
    deadline = time.monotonic() + 5
    while not seen["watch"].cancelled and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen["watch"].cancelled and seen["watch"].snapshot().cancelled
