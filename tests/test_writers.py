"""SRT, WebVTT, JSON and text output, byte for byte."""

from __future__ import annotations

import json

import pytest

from qasr_space.errors import QasrError
from qasr_space.results import Chunk, Segment, Transcript, Word
from qasr_space.writers import FORMATS, to_json, to_srt, to_txt, to_vtt, write_transcript


def two_segments() -> Transcript:
    words = [
        Word("Hello,", 0.0, 0.6),
        Word(" world.", 0.7, 1.5),
        Word(" How", 1.5, 1.8),
        Word(" are", 1.8, 2.0),
        Word(" you?", 2.0, 62.25),
    ]
    return Transcript(
        language="English",
        text="Hello, world. How are you?",
        duration=63.0,
        words=words,
        segments=[Segment("Hello, world.", 0.0, 1.5, words[:2]), Segment("How are you?", 1.5, 62.25, words[2:])],
        model="Qwen/Qwen3-ASR-0.6B",
        chunks=[Chunk(0.0, 63.0, "Hello, world. How are you?", "English")],
    )


def one_cue(text: str, start: float = 0.0, end: float = 1.0) -> Transcript:
    return Transcript(language=None, text=text, duration=end, segments=[Segment(text, start, end)])


def test_srt_exact():
    assert to_srt(two_segments()) == (
        "1\n00:00:00,000 --> 00:00:01,500\nHello, world.\n\n2\n00:00:01,500 --> 00:01:02,250\nHow are you?\n"
    )


def test_vtt_exact():
    assert to_vtt(two_segments()) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello, world.\n\n00:00:01.500 --> 00:01:02.250\nHow are you?\n"
    )


@pytest.mark.parametrize(
    ("seconds", "srt"),
    [
        (0.0, "00:00:00,000"),
        (0.0004, "00:00:00,000"),
        (0.0006, "00:00:00,001"),
        (1.9994, "00:00:01,999"),
        (59.9996, "00:01:00,000"),
        (3599.9996, "01:00:00,000"),
        (3723.456, "01:02:03,456"),
        (100 * 3600 + 0.5, "100:00:00,500"),
        (-0.25, "00:00:00,000"),
    ],
)
def test_timestamps_round_to_whole_milliseconds(seconds, srt):
    assert to_srt(one_cue("x", seconds, seconds)).splitlines()[1] == f"{srt} --> {srt}"
    vtt = srt.replace(",", ".")
    assert to_vtt(one_cue("x", seconds, seconds)).splitlines()[2] == f"{vtt} --> {vtt}"


def test_end_before_start_is_lifted_to_start():
    assert to_srt(one_cue("x", 2.0, 1.0)).splitlines()[1] == "00:00:02,000 --> 00:00:02,000"


def test_vtt_escapes_markup_and_arrows():
    text = "<img src=x onerror=alert(1)> a --> b & c"
    vtt = to_vtt(one_cue(text))
    assert vtt.splitlines()[3] == "&lt;img src=x onerror=alert(1)&gt; a --&gt; b &amp; c"
    assert [line for line in vtt.splitlines() if "-->" in line] == ["00:00:00.000 --> 00:00:01.000"]
    assert "<" not in vtt


def test_long_cue_wraps_at_the_space_nearest_the_middle():
    text = "The quick brown fox jumps over the lazy dog and runs"
    assert to_srt(one_cue(text)).splitlines()[2:4] == ["The quick brown fox jumps", "over the lazy dog and runs"]
    short = "x" * 42
    assert to_srt(one_cue(short)).splitlines()[2] == short
    unbroken = "很" * 50
    assert to_srt(one_cue(unbroken)).splitlines()[2:] == [unbroken]


def test_newlines_inside_cue_text_cannot_end_the_cue():
    srt = to_srt(one_cue("one\n\ntwo\r\n three"))
    assert srt == "1\n00:00:00,000 --> 00:00:01,000\none two three\n"


def test_empty_segments_are_skipped_and_numbering_stays_dense():
    t = Transcript(
        language=None, text="a b", duration=3.0,
        segments=[Segment("a", 0.0, 1.0), Segment("  ", 1.0, 2.0), Segment("b", 2.0, 3.0)],
    )
    assert to_srt(t) == "1\n00:00:00,000 --> 00:00:01,000\na\n\n2\n00:00:02,000 --> 00:00:03,000\nb\n"


def test_segments_without_words_still_get_cues():
    t = Transcript(language="Chinese", text="你好。", duration=2.0, segments=[Segment("你好。", 0.25, 1.75)])
    assert to_vtt(t) == "WEBVTT\n\n00:00:00.250 --> 00:00:01.750\n你好。\n"


def test_without_segments_cues_come_from_words_then_chunks_then_text():
    words = [Word("Hi.", 0.0, 0.5), Word(" Bye.", 1.0, 1.5)]
    from_words = Transcript(language=None, text="Hi. Bye.", duration=2.0, words=words)
    assert to_srt(from_words) == "1\n00:00:00,000 --> 00:00:00,500\nHi.\n\n2\n00:00:01,000 --> 00:00:01,500\nBye.\n"
    from_chunks = Transcript(language=None, text="Hi.", duration=2.0, chunks=[Chunk(1.0, 2.0, "Hi.", None)])
    assert to_srt(from_chunks) == "1\n00:00:01,000 --> 00:00:02,000\nHi.\n"
    text_only = Transcript(language=None, text=" Hi. ", duration=2.0)
    assert to_srt(text_only) == "1\n00:00:00,000 --> 00:00:02,000\nHi.\n"


def test_empty_transcript():
    t = Transcript(language=None, text="", duration=0.0)
    assert to_srt(t) == ""
    assert to_vtt(t) == "WEBVTT\n\n"
    assert to_txt(t) == "\n"


def test_json_round_trips():
    t = two_segments()
    t.language = "Chinese"
    t.text = "你好，世界。"
    t.warnings = ["chunk 1 hit max_new_tokens"]
    t.chunks[0].truncated = True
    out = to_json(t)
    assert out == json.dumps(t.to_dict(), ensure_ascii=False, indent=2)
    assert "你好，世界。" in out
    data = json.loads(out)
    assert data["words"][0] == {"text": "Hello,", "start": 0.0, "end": 0.6}
    assert Transcript.from_dict(data) == t


def test_txt_is_the_text_with_a_newline():
    assert to_txt(two_segments()) == "Hello, world. How are you?\n"


def test_formats_table():
    assert {name: (suffix, mime) for name, (_, suffix, mime) in FORMATS.items()} == {
        "srt": (".srt", "application/x-subrip"),
        "vtt": (".vtt", "text/vtt"),
        "json": (".json", "application/json"),
        "txt": (".txt", "text/plain"),
    }


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_write_transcript_writes_utf8_with_lf(tmp_path, fmt):
    t = two_segments()
    t.text = "你好 — “world”"
    writer, suffix, _ = FORMATS[fmt]
    path = tmp_path / f"out{suffix}"
    assert write_transcript(t, fmt, path) == str(path)
    assert path.read_bytes() == writer(t).encode("utf-8")


def test_write_transcript_rejects_unknown_format(tmp_path):
    with pytest.raises(QasrError, match="srt, vtt, json, txt"):
        write_transcript(two_segments(), "docx", tmp_path / "out.docx")
    assert not (tmp_path / "out.docx").exists()
