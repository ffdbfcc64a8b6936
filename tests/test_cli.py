"""`python -m qasr_space`: output formats, and one clear stderr line with a non-zero exit for each bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from qasr_space.cli import main
from qasr_space.results import Transcript
from qasr_space.writers import CueLimits, to_srt
from tests.checkpoints import SCRIPTED_SENTENCE
from tests.engines import suite_env
from tests.media import tone, write_media


@pytest.fixture
def cli_env(monkeypatch, model_dir):
    for name, value in suite_env(model_dir).items():
        monkeypatch.setenv(name, value)
    return model_dir


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return str(write_media(tmp_path_factory.mktemp("cli") / "clip.mp3", tone(3.0), 16000, "mp3"))


def test_json_with_word_timestamps_from_a_real_process(cli_env, clip):
    env = dict(os.environ, **suite_env(cli_env))
    done = subprocess.run([sys.executable, "-m", "qasr_space", "transcribe", clip, "--timestamps"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["text"] == SCRIPTED_SENTENCE and data["language"] == "English"
    assert set(data["words"][0]) == {"text", "start", "end"}
    assert [w["text"].strip() for w in data["words"]] == SCRIPTED_SENTENCE.split()


@pytest.mark.parametrize("fmt, head", [("srt", "1\n00:00:"), ("vtt", "WEBVTT\n\n"), ("txt", SCRIPTED_SENTENCE),
                                       ("lrc", "[00:00."), ("tsv", "start\tend\ttext\n")])
def test_subtitle_formats_to_a_file(cli_env, clip, tmp_path, fmt, head):
    out = tmp_path / f"out.{fmt}"
    assert main(["transcribe", clip, "--timestamps", "--format", fmt, "-o", str(out), "--language", "en"]) == 0
    assert out.read_text(encoding="utf-8").startswith(head)


def test_lrc_tags_each_word_and_tsv_has_a_row_per_segment(cli_env, clip, capsys):
    assert main(["transcribe", clip, "--timestamps", "--language", "en", "--format", "json"]) == 0
    transcript = Transcript.from_dict(json.loads(capsys.readouterr().out))
    assert main(["transcribe", clip, "--timestamps", "--language", "en", "--format", "lrc"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(transcript.segments) > 1
    for line, segment in zip(lines, transcript.segments):
        tags = [(int(m) * 60 + int(s) + int(c) / 100, text)
                for m, s, c, text in re.findall(r"<(\d+):(\d\d)\.(\d\d)>([^<]*)", line)]
        assert line.startswith("[00:0") and [text.strip() for _, text in tags] == [*segment.text.split(), ""]
        assert [time for time, _ in tags] == pytest.approx([w.start for w in segment.words] + [segment.end], abs=0.005)
    assert main(["transcribe", clip, "--language", "en", "--format", "tsv"]) == 0
    header, *rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert header == ["start", "end", "text"] and " ".join(text for *_, text in rows) == SCRIPTED_SENTENCE


def test_subtitle_limits_split_the_cues(cli_env, clip, capsys):
    assert main(["transcribe", clip, "--timestamps", "--language", "en"]) == 0
    transcript = Transcript.from_dict(json.loads(capsys.readouterr().out))
    assert main(["transcribe", clip, "--timestamps", "--language", "en", "--format", "srt", "--max-line-chars", "10",
                 "--max-cue-seconds", "1.5"]) == 0
    srt = capsys.readouterr().out
    assert srt == to_srt(transcript, CueLimits(10, 1.5)) and srt != to_srt(transcript)
    lines = [line for block in srt.split("\n\n") for line in block.strip().split("\n")[2:]]
    assert " ".join(lines).split() == SCRIPTED_SENTENCE.split() and all(len(line) <= 10 for line in lines)


def test_align_command(cli_env, clip, capsys):
    assert main(["align", clip, "--text", "Hello there, world.", "--language", "English", "--format", "txt"]) == 0
    assert capsys.readouterr().out == "Hello there, world.\n"


def _bad_inputs(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.mp3"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4000))
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n" * 50)
    silent = write_media(tmp_path / "silent.wav", np.zeros(32000, np.float32), 16000, "wav")
    good = write_media(tmp_path / "good.wav", tone(2.0), 16000, "wav")
    return {
        "missing": (["transcribe", str(tmp_path / "nope.wav")], "not found"),
        "empty": (["transcribe", str(empty)], "empty"),
        "corrupt": (["transcribe", str(corrupt)], "decoded"),
        "not audio": (["transcribe", str(text)], "decoded"),
        "unknown language": (["transcribe", str(good), "--language", "xx"], "Unknown language"),
        "unknown model": (["transcribe", str(good), "--model", "9B"], "Unknown model"),
        "narrow lines": (["transcribe", str(good), "--max-line-chars", "5"], "from 10 to 200, not 5"),
        "long cues": (["align", str(good), "--text", "hi", "--max-cue-seconds", "90"], "from 1 to 60, not 90.0"),
        "silence": (["transcribe", str(silent)], "No speech"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "corrupt", "not audio", "unknown language", "unknown model",
                                  "narrow lines", "long cues", "silence"])
def test_bad_input_is_one_clear_line(cli_env, tmp_path, capsys, case):
    argv, words = _bad_inputs(tmp_path)[case]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and words.lower() in err.lower(), err
    assert "\n" not in err and "Traceback" not in err


def test_bad_input_from_a_real_process_has_no_traceback(cli_env, tmp_path):
    done = subprocess.run([sys.executable, "-m", "qasr_space", "transcribe", str(tmp_path / "missing.ogg")],
                          capture_output=True, text=True, env=dict(os.environ, **suite_env(cli_env)), timeout=300)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr


def test_speakers_label_the_subtitles(cli_env, dialog2, capsys, monkeypatch):
    monkeypatch.setenv("QASR_CHUNK_SECONDS", "10")  # the scripted model's sentence once per chunk: words in each turn
    assert main(["transcribe", dialog2.path, "--speakers", "2", "--timestamps", "--format", "srt"]) == 0
    srt = capsys.readouterr().out
    assert "[Speaker 1] Hello" in srt and "[Speaker 2] Hello" in srt
    assert main(["transcribe", dialog2.path, "--speakers", "two"]) == 1
    assert "Speakers 'two' is not understood" in capsys.readouterr().err
    text = " ".join(turn.text for turn in dialog2.turns)
    assert main(["align", dialog2.path, "--text", text, "--language", "en", "--speakers", "2", "--format", "vtt"]) == 0
    assert "<v Speaker 1>" in capsys.readouterr().out
