"""SRT, WebVTT, JSON, text, enhanced LRC and TSV output: byte for byte where the format is fixed, and parsed back
where a rule decides (cue splitting, word tags), so what is checked is what a player or a spreadsheet reads."""

from __future__ import annotations

import csv
import io
import json
import random
import re

import pytest

from qasr_space.errors import QasrError
from qasr_space.results import Chunk, Segment, Transcript, Word
from qasr_space.writers import (CUE_LINES, FORMATS, CueLimits, render_transcript, to_json, to_lrc, to_srt, to_tsv,
                                to_txt, to_vtt, write_transcript)


def two_segments() -> Transcript:
    words = [
        Word("Hello,", 0.0, 0.6),
        Word(" world.", 0.7, 1.5),
        Word(" How", 1.5, 1.8),
        Word(" are", 1.8, 2.0),
        Word(" you?", 2.0, 2.25),
    ]
    for word in words[2:]:  # the second line starts after a minute
        word.start, word.end = word.start + 60, word.end + 60
    return Transcript(
        language="English",
        text="Hello, world. How are you?",
        duration=63.0,
        words=words,
        segments=[Segment("Hello, world.", 0.0, 1.5, words[:2]), Segment("How are you?", 61.5, 62.25, words[2:])],
        model="Qwen/Qwen3-ASR-0.6B",
        chunks=[Chunk(0.0, 63.0, "Hello, world. How are you?", "English")],
    )


def one_cue(text: str, start: float = 0.0, end: float = 1.0) -> Transcript:
    return Transcript(language=None, text=text, duration=end, segments=[Segment(text, start, end)])


def test_srt_exact():
    assert to_srt(two_segments()) == (
        "1\n00:00:00,000 --> 00:00:01,500\nHello, world.\n\n2\n00:01:01,500 --> 00:01:02,250\nHow are you?\n"
    )


def test_vtt_exact():
    assert to_vtt(two_segments()) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello, world.\n\n00:01:01.500 --> 00:01:02.250\nHow are you?\n"
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
    unbroken = "x" * 50  # one word: never split, however long
    assert to_srt(one_cue(unbroken)).splitlines()[2:] == [unbroken]
    chinese = "很" * 50  # one word per character, as the aligner counts them: two lines, cut between characters
    assert to_srt(one_cue(chinese)).splitlines()[2:] == ["很" * 25, "很" * 25]


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
        "lrc": (".lrc", "text/plain"),
        "tsv": (".tsv", "text/tab-separated-values"),
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


def test_render_transcript_names_every_format_when_one_is_unknown():
    with pytest.raises(QasrError, match="srt, vtt, json, txt, lrc, tsv"):
        render_transcript(two_segments(), "docx")
    assert render_transcript(two_segments(), "lrc") == to_lrc(two_segments())


# ---------------------------------------------------------------------------------------------------------------
# Enhanced LRC and TSV, read back as a player or a spreadsheet reads them

LRC_LINE = re.compile(r"\[(\d{2,}):(\d{2})\.(\d{2})\](.*)")
LRC_TAG = re.compile(r"<(\d{2,}):(\d{2})\.(\d{2})>([^<]*)")


def lrc_seconds(minutes: str, seconds: str, centis: str) -> float:
    return int(minutes) * 60 + int(seconds) + int(centis) / 100


def parse_lrc(lrc: str) -> list[tuple[float, str]]:
    """(time, text after the time tag) of every line; fails on a line that is not `[mm:ss.xx]...`."""
    assert lrc.endswith("\n")
    lines = []
    for line in lrc.splitlines():
        match = LRC_LINE.fullmatch(line)
        assert match, line
        lines.append((lrc_seconds(*match.groups()[:3]), match[4]))
    return lines


def sung() -> Transcript:
    """Two speakers, word-timed, the second line in Chinese (its words glued) and past 75 minutes."""
    english = [Word("Never", 12.04, 12.5, "Anna"), Word(" gonna", 12.5, 12.84, "Anna"),
               Word(" give,", 12.84, 13.2, "Anna"), Word(" you", 13.3, 13.72, "Anna"),
               Word(" up.", 13.72, 14.16, "Anna")]
    chinese = [Word("你", 4503.2, 4503.5, "Ben"), Word("好，", 4503.5, 4503.9, "Ben"),
               Word("世", 4504.0, 4504.2, "Ben"), Word("界。", 4504.2, 4504.666, "Ben")]
    return Transcript(
        language="English", text="Never gonna give, you up. 你好，世界。", duration=4510.0,
        words=english + chinese,
        segments=[Segment("Never gonna give, you up.", 12.04, 14.16, english, "Anna"),
                  Segment("你好，世界。", 4503.2, 4504.666, chinese, "Ben")],
        speakers=["Anna", "Ben"])


def test_lrc_tags_every_word_with_its_start_and_closes_the_line_with_its_end():
    t = sung()
    lines = parse_lrc(to_lrc(t))
    assert len(lines) == len(t.segments)
    for (time, body), segment in zip(lines, t.segments):
        assert time == pytest.approx(segment.start, abs=0.005)
        lead, tagged = body.split("<", 1)
        assert lead == f"{segment.speaker}: "
        tags = LRC_TAG.findall("<" + tagged)
        *words, (m, s, c, after_last) = tags
        assert after_last == ""
        assert lrc_seconds(m, s, c) == pytest.approx(segment.words[-1].end, abs=0.005)
        assert [lrc_seconds(m, s, c) for m, s, c, _ in words] == pytest.approx([w.start for w in segment.words],
                                                                              abs=0.005)
        assert [text.strip() for *_, text in words] == [w.text.strip() for w in segment.words]
        assert "".join(text for *_, text in words).strip() == segment.text  # as the transcript reads, CJK unspaced
    assert to_lrc(t).splitlines()[1].startswith("[75:03.20]Ben: <75:03.20>你<75:03.50>好，<75:04.00>世")


def test_lrc_without_word_times_has_one_plain_line_per_segment():
    t = Transcript(language=None, text="First line. Second\tline", duration=4600.0,
                   segments=[Segment("First line.", 0.004, 2.0), Segment("  ", 2.0, 3.0),
                             Segment("Second\nline", 4503.206, 4504.0, speaker="Anna")])
    assert parse_lrc(to_lrc(t)) == [(0.0, "First line."), (pytest.approx(4503.21), "Anna: Second line")]
    assert to_lrc(Transcript(language=None, text="", duration=0.0)) == ""


def parse_tsv(tsv: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE))


def test_tsv_is_whispers_table_in_milliseconds():
    t = two_segments()
    t.segments[1].text = "How\tare\nyou?"
    header, *rows = parse_tsv(to_tsv(t))
    assert header == ["start", "end", "text"]
    assert [[int(start), int(end), text] for start, end, text in rows] == [
        [round(1000 * s.start), round(1000 * s.end), " ".join(s.text.split())] for s in t.segments]
    assert rows[1][2] == "How are you?"


def test_tsv_adds_a_speaker_column_only_with_speakers():
    header, *rows = parse_tsv(to_tsv(sung()))
    assert header == ["start", "end", "text", "speaker"]
    assert [(int(r[0]), int(r[1]), r[3]) for r in rows] == [(12040, 14160, "Anna"), (4503200, 4504666, "Ben")]
    assert parse_tsv(to_tsv(Transcript(language=None, text="", duration=0.0))) == [["start", "end", "text"]]


# ---------------------------------------------------------------------------------------------------------------
# Cue limits: long segments split into cues at word boundaries


def srt_seconds(stamp: str) -> float:
    h, m, s = stamp.replace(",", ".").split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def parse_srt(srt: str) -> list[tuple[float, float, list[str]]]:
    """(start, end, text lines) of each cue; fails unless the cues are numbered 1, 2, 3 ... and framed by blank
    lines with no empty cue."""
    cues = []
    for number, block in enumerate(srt.split("\n\n"), 1):
        index, times, *lines = block.strip("\n").split("\n")
        assert index == str(number) and lines and all(line.strip() for line in lines), block
        start, end = times.split(" --> ")
        cues.append((srt_seconds(start), srt_seconds(end), lines))
    return cues


def parse_vtt(vtt: str, speaker: str | None) -> list[tuple[float, float, list[str]]]:
    """(start, end, text lines) of each cue, its voice tag checked and taken off."""
    header, *blocks = vtt.split("\n\n")
    assert header == "WEBVTT"
    cues = []
    for block in blocks:
        times, *lines = block.strip("\n").split("\n")
        voice = f"<v {speaker}>" if speaker else ""
        assert lines and lines[0].startswith(voice) and all(line.strip() for line in lines), block
        start, end = times.split(" --> ")
        cues.append((srt_seconds(start), srt_seconds(end), [lines[0][len(voice):], *lines[1:]]))
    return cues


def random_segments(rng: random.Random, speaker: str | None) -> list[Segment]:
    """Word-timed segments of 1 to 60 words: short and long words (one of 24 letters, longer than a narrow line),
    commas and full stops, the odd word sung for 8 s, longer than a cue may last."""
    segments, clock = [], 0.0
    for _ in range(rng.randint(1, 4)):
        words = []
        for i in range(rng.randint(1, 60)):
            text = "".join(rng.choice("abcdefghij") for _ in range(rng.choice([1, 2, 3, 4, 5, 7, 9, 12, 24])))
            text += rng.choice(["", "", "", "", ",", "."])
            seconds = 8.0 if rng.random() < 0.03 else rng.uniform(0.1, 1.2)
            words.append(Word(("" if i == 0 else " ") + text, round(clock, 3), round(clock + seconds, 3), speaker))
            clock += seconds + rng.uniform(0.0, 0.3)
        segments.append(Segment("".join(w.text for w in words), words[0].start, words[-1].end, words, speaker))
        clock += 1.0
    return segments


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("limits", [CueLimits(), CueLimits(10, 1.0), CueLimits(20, 3.0), CueLimits(200, 60.0)],
                         ids=["default", "10-chars-1s", "20-chars-3s", "200-chars-60s"])
def test_cues_keep_every_word_in_order_within_the_limits_timed_by_their_words(seed, limits):
    rng = random.Random(seed)
    speaker = "Anna" if seed % 2 else None
    segments = random_segments(rng, speaker)
    words = [w for s in segments for w in s.words]
    t = Transcript(language="English", text=" ".join(s.text for s in segments), duration=words[-1].end,
                   words=words, segments=segments, speakers=[speaker] if speaker else [])
    for lead, cues in [(f"[{speaker}] " if speaker else "", parse_srt(to_srt(t, limits))),
                       ("", parse_vtt(to_vtt(t, limits), speaker))]:
        position = 0
        for start, end, lines in cues:
            assert lines[0].startswith(lead)
            shown = " ".join(lines)[len(lead):].split()
            assert shown == [w.text.strip() for w in words[position:position + len(shown)]]
            own = words[position:position + len(shown)]
            position += len(shown)
            assert start == pytest.approx(own[0].start, abs=0.0005)
            assert end == pytest.approx(max(w.end for w in own), abs=0.0005)
            if len(own) > 1:  # a single word may overflow: it is never split
                assert len(lines) <= CUE_LINES and all(len(line) <= limits.line_chars for line in lines), lines
                assert end - start <= limits.seconds + 0.0005
        assert position == len(words)  # every word shown, each once


def test_a_long_segment_splits_after_punctuation_rather_than_where_the_cue_fills():
    text = ("Alpha bravo charlie delta echo foxtrot golf hotel, india juliet kilo lima mike november oscar papa "
            "quebec romeo sierra tango")
    words = [Word(("" if i == 0 else " ") + token, i * 0.2, i * 0.2 + 0.15) for i, token in enumerate(text.split())]
    t = Transcript(language="English", text=text, duration=5.0,
                   segments=[Segment(text, words[0].start, words[-1].end, words)])
    first, second = parse_srt(to_srt(t))
    assert " ".join(first[2]).endswith("hotel,") and " ".join(second[2]).startswith("india")
    assert (first[0], first[1], second[0]) == (0.0, pytest.approx(words[7].end), pytest.approx(words[8].start))
    (start, end, lines), = parse_srt(to_srt(t, CueLimits(line_chars=70)))  # one cue holds it all: not split
    assert (start, end) == (0.0, pytest.approx(words[-1].end)) and " ".join(lines) == text


def test_without_word_times_a_long_segment_is_split_in_time_by_its_share_of_the_text():
    text = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"
    t = one_cue(text, 10.0, 40.0)
    cues = parse_srt(to_srt(t))
    assert [w for _, _, lines in cues for w in " ".join(lines).split()] == text.split()
    assert cues[0][0] == 10.0 and cues[-1][1] == 40.0
    assert all(end - start <= 7.0 for start, end, _ in cues)
    assert all(a[1] == b[0] for a, b in zip(cues, cues[1:]))  # each cue starts where the one before ended
    for start, end, lines in cues:  # its time is its share of the characters, space before it included
        share = len(" ".join(lines)) + (start > 10.0)
        assert end - start == pytest.approx(30.0 * share / len(text), abs=0.002)


@pytest.mark.parametrize("line_chars, seconds, words", [
    (9, 7.0, "from 10 to 200, not 9"), (201, 7.0, "from 10 to 200, not 201"), (42.0, 7.0, "whole number"),
    (True, 7.0, "not True"), ("42", 7.0, "not '42'"), (None, 7.0, "not None"),
    (42, 0.5, "from 1 to 60, not 0.5"), (42, 61, "from 1 to 60, not 61"), (42, float("nan"), "not nan"),
    (42, float("inf"), "not inf"), (42, "7", "not '7'"), (42, False, "not False"),
])
def test_cue_limits_out_of_range_or_not_numbers_name_the_range(line_chars, seconds, words):
    with pytest.raises(QasrError, match=re.escape(words)):
        CueLimits(line_chars, seconds)


def test_cue_limits_take_the_ends_of_their_ranges():
    assert CueLimits(10, 1) == CueLimits(10, 1.0) and CueLimits(200, 60.0).line_chars == 200
