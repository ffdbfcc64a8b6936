"""The karaoke markup, without a browser: spacing, escaping, the length label, the segment list and its names."""

from __future__ import annotations

import html
import re

import pytest

from qasr_space.karaoke import KARAOKE_CSS, clock, render_karaoke
from qasr_space.results import Segment, Transcript, Word

HOSTILE = '<img src=x onerror="x()"> ${window.x=1} {{value}} & "quoted"'


def shown_text(page: str) -> str:
    """The transcript box's text as a browser shows it (its markup is only spans and escaped text)."""
    box = re.search(r'<div class="qk-text"[^>]*>(.*?)</div>(?:<ol|</div>)', page).group(1)
    return html.unescape(re.sub(r"<[^>]+>", "", box))


def segment_list(page: str) -> list[tuple[str, str, float]]:
    """(time shown, text, data-start) for each segment button."""
    return [(time, html.unescape(text), float(start)) for start, time, text in re.findall(
        r'<button type="button" class="qk-segment" data-start="([\d.]+)" data-end="[\d.]+">'
        r'<span class="qk-time">([\d:]+)</span> (.*?)</button>', page)]


def untimed(text: str, *segments: tuple[str, float, float], speakers: list[str] | None = None,
            spoken_by: tuple[str, ...] = ()) -> Transcript:
    """A transcript without word timestamps: its text and its segments, as `collect` builds them."""
    return Transcript(language="English", text=text, duration=10.0,
                      segments=[Segment(t, s, e, speaker=spoken_by[i] if spoken_by else None)
                                for i, (t, s, e) in enumerate(segments)],
                      speakers=speakers or [])


@pytest.mark.parametrize("seconds, shown", [(0.0, "0:00"), (5.9, "0:05"), (59.999, "0:59"), (60.0, "1:00"),
                                            (754.5, "12:34"), (3723.99, "1:02:03")])
def test_clock_floors_the_seconds_as_players_do(seconds, shown):
    assert clock(seconds) == shown


def test_the_length_label_floors_like_the_player():
    page = render_karaoke(Transcript(language="English", text="Hi.", duration=5.96,
                                     words=[Word("Hi.", 0.1, 0.5)]), "a.wav")
    assert '<span class="qk-length">0:05</span>' in page


def test_word_timestamps_keep_the_text_s_own_spacing():
    words = [Word("Hello", 0.0, 0.4), Word(" world,", 0.5, 0.9), Word(" 你", 1.0, 1.2), Word("好", 1.2, 1.4)]
    page = render_karaoke(Transcript(language="English", text="Hello world, 你好", duration=2.0, words=words), "a.wav")
    assert shown_text(page) == "Hello world, 你好"
    assert '<span class="qk-word" data-start="0.500" data-end="0.900">world,</span>' in page  # the space is outside


def test_without_word_timestamps_segments_are_joined_by_one_space():
    transcript = untimed("First sentence. Second one.  Third, after two spaces.",
                         ("First sentence.", 0.0, 2.0), (" Second one. ", 2.0, 4.0),
                         ("Third, after two spaces.", 4.0, 6.0))
    page = render_karaoke(transcript, "a.wav")
    assert shown_text(page) == "First sentence. Second one. Third, after two spaces."
    assert '<span class="qk-word" data-start="2.000" data-end="4.000">Second one.</span>' in page


def test_without_word_timestamps_chinese_sentences_get_no_space():
    transcript = untimed("你好。今天天气很好。Hello again.", ("你好。", 0.0, 1.0), ("今天天气很好。", 1.0, 3.0),
                         ("Hello again.", 3.0, 4.0))
    assert shown_text(render_karaoke(transcript, "a.wav")) == "你好。今天天气很好。Hello again."


def test_a_segment_missing_from_the_text_is_set_off_by_one_space():
    transcript = untimed("", ("One.", 0.0, 1.0), ("Two.", 1.0, 2.0))
    assert shown_text(render_karaoke(transcript, "a.wav")) == "One. Two."


def test_speaker_turns_without_word_timestamps_start_without_a_space():
    transcript = untimed("Hi there. How are you? Fine.", ("Hi there.", 0.0, 1.0), ("How are you?", 1.0, 2.0),
                         ("Fine.", 2.0, 3.0), speakers=["Anna", "Bob"], spoken_by=("Anna", "Anna", "Bob"))
    page = render_karaoke(transcript, "a.wav")
    turns = re.findall(r'<div class="qk-turn"[^>]*><span class="qk-speaker">(\w+)</span>(.*?)</div>', page)
    assert [(name, re.sub(r"<[^>]+>", "", body)) for name, body in turns] == \
        [("Anna", "Hi there. How are you?"), ("Bob", "Fine.")]


def test_every_user_controlled_string_is_escaped():
    transcript = Transcript(language="English", text=HOSTILE, duration=3.0,
                            words=[Word(HOSTILE, 0.0, 1.0, speaker=HOSTILE)],
                            segments=[Segment(HOSTILE, 0.0, 1.0, speaker=HOSTILE)], speakers=[HOSTILE],
                            warnings=[HOSTILE])
    page = render_karaoke(transcript, f'gradio_api/file=/tmp/{HOSTILE}.wav', title=HOSTILE, status=HOSTILE)
    assert not re.search(r"<(img|b|script)\b", page) and 'onerror="' not in page
    escaped = html.escape(HOSTILE)
    assert page.count(escaped) == 7  # the URL, title, speaker, word, segment, warning and status
    assert segment_list(page) == [("0:00", HOSTILE, 0.0)]


def test_the_segment_list_gives_each_segment_its_start_and_text():
    transcript = untimed("Opening words. Then, after a minute, more.",
                         ("Opening words.", 0.32, 2.5), ("Then, after a minute, more.", 61.9, 64.0))
    page = render_karaoke(transcript, "a.wav")
    assert segment_list(page) == [("0:00", "Opening words.", 0.32), ("1:01", "Then, after a minute, more.", 61.9)]
    assert '<ol class="qk-segments" aria-label="Segments">' in page


def test_speakers_edge_their_segments_in_their_colour():
    transcript = untimed("Hi. Hello.", ("Hi.", 0.0, 1.0), ("Hello.", 1.0, 2.0), speakers=["Anna", "Bob"],
                         spoken_by=("Anna", "Bob"))
    page = render_karaoke(transcript, "a.wav")
    colours = re.findall(r'<li style="--qk-speaker: (#[0-9a-f]{6})"><button', page)
    assert len(colours) == 2 and colours[0] != colours[1]


def test_the_lists_are_named_and_the_keys_are_told():
    page = render_karaoke(untimed("One.", ("One.", 0.0, 1.0)), "a.wav")
    assert '<div class="qk-text" role="group" aria-label="Transcript">' in page
    assert "Tab to the text: arrow keys move, Enter plays." in page
    assert '<label class="qk-follow"><input type="checkbox" checked> Follow along</label>' in page


def test_nothing_timed_yet_shows_the_player_and_the_status_only():
    page = render_karaoke(Transcript(language=None, text="", duration=4.0), "a.wav", status="Transcribing…")
    assert "qk-body" not in page and "qk-follow" not in page and "qk-hint" not in page
    assert "<audio" in page and '<p class="qk-status" role="status">Transcribing…</p>' in page


def test_the_css_survives_gradio_s_template_literal():
    """gr.HTML runs css_template through a JS template literal: a backquote, backslash or dollar-brace would break
    or change it."""
    assert not re.search(r"[`\\]|\$\{", KARAOKE_CSS)
