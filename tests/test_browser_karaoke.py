"""The karaoke view in a real browser: its length label, keyboard access, the segment list, Follow along, the dark
theme and a phone's width.

One server and one browser serve the module, and two results are shared: 150 words aligned to a 30.6 s clip (enough
to overflow the transcript box and the segment list, on a desktop-sized page), and a 4 s clip transcribed on a
390 x 844 phone page in the dark theme. Every player is muted.
"""

from __future__ import annotations

import math

import pytest

from qasr_space.karaoke import clock
from tests.browser import ARTIFACTS, chromium, module_server, open_section, upload, wait_for_result
from tests.media import tone, write_media

sync_api = pytest.importorskip("playwright.sync_api")

AUDIO = "document.querySelector('#qasr-karaoke audio')"
WORDS = 150


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("karaoke-media")
    return {"clip": write_media(root / "talk.wav", tone(4.0), 16000, "wav"),
            "long_clip": write_media(root / "lecture.wav", tone(30.6), 16000, "wav")}


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    with module_server(model_dir, tmp_path_factory, "karaoke") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


def muted_when_ready(page) -> None:
    page.evaluate(f"{AUDIO}.muted = true")
    page.wait_for_function(f"{AUDIO}.readyState >= 1", timeout=10_000)


@pytest.fixture(scope="module")
def page(browser, server, media):
    """150 words aligned to the 30.6 s clip on a 1280 x 1000 page."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(server)
    upload(page, media["long_clip"])
    open_section(page, "qasr-options")
    page.get_by_label("Align my own text").check()
    page.fill("#qasr-align-text textarea", " ".join(f"word{i}" for i in range(WORDS)))
    page.click("#qasr-run")
    wait_for_result(page)
    muted_when_ready(page)
    yield page
    page.close()


@pytest.fixture(scope="module")
def phone(browser, server, media):
    """The 4 s clip transcribed on a 390 x 844 page in the dark theme."""
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(server + "?__theme=dark")
    upload(page, media["clip"])
    page.click("#qasr-run")
    wait_for_result(page)
    muted_when_ready(page)
    yield page
    page.close()


def pause_at_start(page) -> None:
    page.evaluate(f"() => {{ const a = {AUDIO}; a.pause(); a.currentTime = 0; }}")


def assert_playing_from(page, start: float) -> None:
    """The player plays, from `start` (give or take what it played since)."""
    page.wait_for_function(f"!{AUDIO}.paused", timeout=5_000)
    time = page.evaluate(f"{AUDIO}.currentTime")
    assert start - 0.05 <= time < start + 0.75, f"playing at {time}, not from {start}"


def focused(page) -> dict:
    return page.evaluate("""() => { const e = document.activeElement;
        return {cls: e.className, text: e.textContent, start: parseFloat(e.dataset.start), tabindex: e.tabIndex}; }""")


def starts(page, selector: str) -> list[float]:
    return page.eval_on_selector_all(f"#qasr-karaoke {selector}", "els => els.map(e => parseFloat(e.dataset.start))")


def test_the_length_label_is_what_the_player_shows(page):
    duration = page.evaluate(f"{AUDIO}.duration")
    assert 30.5 < duration < 30.7  # the player floors this to 0:30; rounding said 0:31
    assert page.inner_text("#qasr-karaoke .qk-length") == clock(math.floor(duration)) == "0:30"


def test_words_are_spaced_like_plain_text(page):
    """The gap between two words' letters is the space between them, no wider: the highlight's padding does not add
    to it (with a span per segment it looked like a double space)."""
    gap, space = page.evaluate("""() => {
        const [first, second] = document.querySelectorAll('#qasr-karaoke .qk-word'), range = new Range();
        range.selectNodeContents(first);
        const end = range.getBoundingClientRect().right;
        range.selectNodeContents(second);
        const start = range.getBoundingClientRect().left;
        range.selectNode(first.nextSibling);
        return [start - end, range.getBoundingClientRect().width]; }""")
    assert space > 2 and abs(gap - space) < 0.5


def test_the_keyboard_reaches_every_word_and_plays_from_it(page):
    pause_at_start(page)
    page.focus("#qasr-karaoke .qk-follow input")
    for _ in range(12):  # past the player's own controls
        page.keyboard.press("Tab")
        if "qk-word" in focused(page)["cls"]:
            break
    assert "qk-word" in focused(page)["cls"]
    word_starts = starts(page, ".qk-word")
    first = focused(page)
    assert first["tabindex"] == 0
    sync_api.expect(page.locator(":focus")).to_have_role("button")
    sync_api.expect(page.locator(":focus")).to_have_accessible_name(f"{first['text']}, {clock(first['start'])}")

    page.keyboard.press("Home")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert focused(page)["text"] == "word2"
    page.keyboard.press("Enter")
    assert_playing_from(page, word_starts[2])
    page.keyboard.press("End")
    assert focused(page)["text"] == f"word{WORDS - 1}"
    page.keyboard.press(" ")
    assert_playing_from(page, word_starts[-1])

    page.keyboard.press("Tab")  # one Tab stop for all the words: the next is the segment list
    segment_starts = starts(page, ".qk-segment")
    assert "qk-segment" in focused(page)["cls"]
    page.keyboard.press("Home")
    page.keyboard.press("ArrowDown")
    assert focused(page)["start"] == segment_starts[1]
    page.keyboard.press("Enter")
    assert_playing_from(page, segment_starts[1])
    pause_at_start(page)


def test_clicking_a_segment_seeks_there_plays_and_lights_it(page):
    pause_at_start(page)
    segment = page.locator("#qasr-karaoke .qk-segment").nth(2)
    start = float(segment.get_attribute("data-start"))
    time, text = segment.inner_text().split(maxsplit=1)
    assert time == clock(start) and text.startswith("word")
    sync_api.expect(segment).to_have_accessible_name(f"{time} {text}")
    segment.click()
    assert_playing_from(page, start)
    page.wait_for_function("document.querySelector('#qasr-karaoke .qk-segment.qk-active') !== null")
    assert float(page.get_attribute("#qasr-karaoke .qk-segment.qk-active", "data-start")) == start
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.locator("#qasr-karaoke").screenshot(path=str(ARTIFACTS / "karaoke-playing.png"))
    pause_at_start(page)


def scroll_tops(page) -> list[float]:
    return page.eval_on_selector_all("#qasr-karaoke .qk-text, #qasr-karaoke .qk-segments",
                                     "boxes => boxes.map(b => b.scrollTop)")


def play_the_last_word(page) -> None:
    """From the start (nothing lit), play from the last word until it lights up."""
    pause_at_start(page)
    page.evaluate(f"() => {{ const a = {AUDIO}; a.currentTime = {starts(page, '.qk-word')[-1] + 0.01}; a.play(); }}")
    page.wait_for_function(f"document.querySelector('#qasr-karaoke .qk-word.qk-active')?.textContent === "
                           f"'word{WORDS - 1}'", timeout=5_000)


def test_follow_along_off_highlights_without_scrolling_and_back_on_brings_the_lit_word_into_view(page):
    pause_at_start(page)
    page.eval_on_selector_all("#qasr-karaoke .qk-text, #qasr-karaoke .qk-segments",
                              "boxes => boxes.forEach(b => b.scrollTo({top: 0, behavior: 'instant'}))")
    assert page.eval_on_selector("#qasr-karaoke .qk-text", "b => b.scrollHeight > b.clientHeight")
    assert page.eval_on_selector("#qasr-karaoke .qk-segments", "b => b.scrollHeight > b.clientHeight")
    page.uncheck("#qasr-karaoke .qk-follow input")
    play_the_last_word(page)
    page.wait_for_timeout(500)  # longer than a smooth scroll takes
    page.evaluate(f"{AUDIO}.pause()")
    assert page.locator("#qasr-karaoke .qk-segment.qk-active").count() == 1
    assert page.locator("#qasr-karaoke .qk-word.qk-active").inner_text() == f"word{WORDS - 1}"
    assert scroll_tops(page) == [0, 0]

    # Back on, what is lit comes into view at once, playing or not.
    page.check("#qasr-karaoke .qk-follow input")
    page.wait_for_function("document.querySelector('#qasr-karaoke .qk-text').scrollTop > 0 && "
                           "document.querySelector('#qasr-karaoke .qk-segments').scrollTop > 0", timeout=5_000)
    pause_at_start(page)


def test_the_dark_theme_covers_the_player(phone):
    assert phone.evaluate("document.body.classList.contains('dark')")
    assert phone.evaluate(f"getComputedStyle({AUDIO}).colorScheme") == "dark"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    phone.locator("#qasr-karaoke").screenshot(path=str(ARTIFACTS / "karaoke-dark.png"))


def test_a_phone_shows_the_segments_below_the_text_without_scrolling_sideways(phone):
    phone.locator("#qasr-karaoke .qk-segments").scroll_into_view_if_needed()
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    text, segments = (phone.locator(f"#qasr-karaoke {box}").bounding_box() for box in (".qk-text", ".qk-segments"))
    assert segments["y"] >= text["y"] + text["height"] and segments["x"] + segments["width"] <= 390


def test_follow_along_off_survives_a_new_result(phone):
    """Gradio patches the markup in place for each new value; the choice is the script's, so it stays."""
    phone.uncheck("#qasr-karaoke .qk-follow input")
    phone.eval_on_selector("#qasr-karaoke .qk-root", "root => root.setAttribute('data-old', '')")
    phone.click("#qasr-run")
    phone.wait_for_selector("#qasr-karaoke .qk-root:not([data-old])", state="attached")
    wait_for_result(phone)
    phone.wait_for_function("document.querySelector('#qasr-karaoke .qk-word').getAttribute('role') === 'button'")
    assert not phone.is_checked("#qasr-karaoke .qk-follow input")
