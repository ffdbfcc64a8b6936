"""Mapping aligner words back onto punctuated text, and cutting words into subtitle lines."""

from __future__ import annotations

import pytest

from qasr_space.results import Chunk, Segment, Word
from qasr_space.timing import alignment_tokens, build_segments, segments_from_chunks, words_from_alignment


def aligned(*words: str, step: float = 0.5) -> list[dict]:
    """Aligner output for `words`, one every `step` seconds, each lasting most of that."""
    return [{"text": w, "start_time": i * step, "end_time": i * step + step * 0.8} for i, w in enumerate(words)]


def texts(text: str, *words: str) -> list[str]:
    result = [w.text for w in words_from_alignment(text, aligned(*words))]
    assert "".join(result) == text
    return result


def timed(*items: tuple[str, float, float]) -> list[Word]:
    return [Word(text, start, end) for text, start, end in items]


def line(text: str, start: float = 0.0, step: float = 0.3) -> list[Word]:
    """Words for `text` with the real tokeniser and evenly spaced times: a stand-in for an aligned transcript."""
    tokens = alignment_tokens(text)
    starts = [start + i * step for i in range(len(tokens))]
    items = [{"text": t, "start_time": s, "end_time": s + 0.25} for t, s in zip(tokens, starts)]
    return words_from_alignment(text, items)


# --- words_from_alignment --------------------------------------------------------------------------------------------


def test_english_punctuation_and_quotes_stay_with_their_words():
    text = '"Hello," she said. "It\'s cold."'
    assert texts(text, "Hello", "she", "said", "It's", "cold") == ['"Hello,"', " she", " said.", ' "It\'s', ' cold."']


def test_times_come_from_the_aligner():
    words = words_from_alignment("Hello, world.", aligned("Hello", "world"))
    assert words == [Word("Hello,", 0.0, 0.4), Word(" world.", 0.5, 0.9)]


def test_chinese_maps_one_word_per_character_with_full_width_punctuation():
    assert texts("你好，世界。", "你", "好", "世", "界") == ["你", "好，", "世", "界。"]


def test_mixed_chinese_and_english():
    text = "我用Python写代码。Hello 世界！"
    words = ("我", "用", "Python", "写", "代", "码", "Hello", "世", "界")
    expected = ["我", "用", "Python", "写", "代", "码。", "Hello", " 世", "界！"]
    assert texts(text, *words) == expected


def test_opening_punctuation_goes_with_the_next_word():
    assert texts("¿Qué tal? ¡Bien!", "Qué", "tal", "Bien") == ["¿Qué", " tal?", " ¡Bien!"]
    assert texts("“你好”他说：「走」。", "你", "好", "他", "说", "走") == ["“你", "好”", "他", "说：", "「走」。"]
    assert texts("dit : « bien ».", "dit", "bien") == ["dit :", " « bien »."]
    assert texts("Bonjour ! Ça va ?", "Bonjour", "Ça", "va") == ["Bonjour !", " Ça", " va ?"]


def test_apostrophes_are_part_of_the_word():
    assert texts("Don't stop, it's fine.", "Don't", "stop", "it's", "fine") == ["Don't", " stop,", " it's", " fine."]
    # A typographic apostrophe is punctuation to the aligner: it sends "dont".
    assert texts("I don’t know.", "I", "dont", "know") == ["I", " don’t", " know."]


def test_punctuation_inside_numbers_and_abbreviations_is_skipped():
    # split_words_for_alignment drops "." and "," without splitting: "3.5" -> "35", "3,000" -> "3000".
    text = "It costs 3.5 dollars, or 3,000 yen in the U.S."
    words = ("It", "costs", "35", "dollars", "or", "3000", "yen", "in", "the", "US")
    expected = ["It", " costs", " 3.5", " dollars,", " or", " 3,000", " yen", " in", " the", " U.S."]
    assert texts(text, *words) == expected


def test_whitespace_at_the_ends_is_kept():
    assert texts("  Don't   stop  ", "Don't", "stop") == ["  Don't", "   stop  "]


def test_duplicate_words_map_in_order():
    words = words_from_alignment("the the cat, the end", aligned("the", "the", "cat", "the", "end"))
    assert [w.text for w in words] == ["the", " the", " cat,", " the", " end"]
    assert [w.start for w in words] == [0.0, 0.5, 1.0, 1.5, 2.0]


def test_offset_is_added_and_times_clamped_to_the_audio():
    items = [
        {"text": "a", "start_time": 0.0, "end_time": 0.5},
        {"text": "b", "start_time": 0.4, "end_time": 0.9},
        {"text": "c", "start_time": 1.2, "end_time": 1.5},
    ]
    words = words_from_alignment("a b c", items, offset=10.0, duration=11.0)
    assert words == [Word("a", 10.0, 10.5), Word(" b", 10.4, 10.9), Word(" c", 11.0, 11.0)]


def test_offset_does_not_leave_float_noise():
    (word,) = words_from_alignment("a", [{"text": "a", "start_time": 0.2, "end_time": 0.7}], offset=0.1)
    assert (word.start, word.end) == (0.3, 0.8)


def test_times_never_go_negative_or_backwards():
    items = [
        {"text": "a", "start_time": -0.2, "end_time": 0.5},
        {"text": "b", "start_time": 0.6, "end_time": 0.3},
        {"text": "c", "start_time": 0.4, "end_time": 0.45},
    ]
    words = words_from_alignment("a b c", items)
    assert [(w.start, w.end) for w in words] == [(0.0, 0.5), (0.6, 0.6), (0.6, 0.6)]


def test_unfound_word_takes_the_unclaimed_text():
    words = words_from_alignment("Hello, big world.", aligned("Hello", "bog", "world"))
    assert [w.text for w in words] == ["Hello,", " big", " world."]
    assert words[1] == Word(" big", 0.5, 0.9)


def test_unfound_word_with_nothing_unclaimed_is_empty_and_no_text_is_lost():
    assert texts("Hello, world.", "Hello", "zzz", "world") == ["Hello,", "", " world."]
    assert texts("Hello, world.", "zzz", "world", "qq") == ["Hello,", " world.", ""]
    assert texts("abc", "", "abc") == ["", "abc"]


def test_no_aligned_words_gives_no_words():
    assert words_from_alignment("", []) == []
    assert words_from_alignment("Hi.", []) == []


def test_tokeniser_matches_transformers():
    """`alignment_tokens` stands in for the processor where there are no timestamps; it must cut the same way."""
    processing = pytest.importorskip("transformers.models.qwen3_asr.processing_qwen3_asr")
    split = processing.Qwen3ASRProcessor.split_words_for_alignment
    samples = [
        '"Hello," she said. "It\'s 3.5 degrees!"',
        "It costs 3,000 yen in the U.S., e.g. well-known",
        "我用Python写代码。Hello 世界！",
        "“你好”他说：「走」。",
        "¿Qué tal? ¡Bien! Ça va ? « Oui »",
        "I don’t know—maybe  \n tomorrow…",
    ]
    for text in samples:
        tokens = split(None, text)
        assert alignment_tokens(text) == tokens
        words = words_from_alignment(text, aligned(*tokens))
        assert "".join(w.text for w in words) == text


# --- build_segments --------------------------------------------------------------------------------------------------


def test_segments_break_after_sentence_ends():
    words = timed(
        ("Hello.", 0.0, 0.4), (" How", 0.5, 0.7), (" are", 0.7, 0.9), (" you?", 0.9, 1.2), (" Fine.", 1.3, 1.6)
    )
    segments = build_segments(words)
    assert [(s.text, s.start, s.end) for s in segments] == [
        ("Hello.", 0.0, 0.4),
        ("How are you?", 0.5, 1.2),
        ("Fine.", 1.3, 1.6),
    ]
    assert segments[1].words == words[1:4]


def test_sentence_end_is_seen_through_closing_quotes_and_in_chinese():
    words = timed(('He said "stop."', 0.0, 1.0), (" Then", 1.1, 1.3), (" went.", 1.3, 1.5))
    assert [s.text for s in build_segments(words)] == ['He said "stop."', "Then went."]
    assert [s.text for s in build_segments(line("你好，世界。再见！"))] == ["你好，世界。", "再见！"]


def test_segments_break_at_pauses_longer_than_max_gap():
    words = timed(("one", 0.0, 0.5), (" two", 1.3, 1.5), (" three", 2.4, 2.6))
    assert [s.text for s in build_segments(words)] == ["one two", "three"]  # 0.8 s is not a pause, 0.9 s is
    assert [s.text for s in build_segments(words, max_gap=0.5)] == ["one", "two", "three"]


def test_segments_stay_within_max_chars():
    text = "The quick brown fox jumps over the lazy dog and keeps running far away"
    segments = build_segments(line(text))
    assert [s.text for s in segments] == ["The quick brown fox jumps over the lazy", "dog and keeps running far away"]
    assert (segments[0].start, segments[0].end, segments[1].start) == (0.0, 2.35, 2.4)


def test_full_line_splits_after_a_comma():
    text = "Well, this sentence runs on and on, because it never stops talking about it."
    assert [s.text for s in build_segments(line(text))] == [
        "Well, this sentence runs on and on,",
        "because it never stops talking about it.",
    ]


def test_chinese_counts_one_per_character():
    text = "一二三四五六七八九十" * 5
    segments = build_segments(line(text, step=0.1))
    assert [len(s.text) for s in segments] == [42, 8]


def test_word_longer_than_a_line_stands_alone():
    long_word = " " + "x" * 50
    words = timed(("a", 0.0, 0.1), (long_word, 0.2, 0.3), (" b", 0.4, 0.5))
    assert [s.text for s in build_segments(words)] == ["a", "x" * 50, "b"]


def test_segments_stay_within_max_duration():
    words = [Word(f" w{i}", float(i), i + 1.0) for i in range(10)]
    segments = build_segments(words)
    assert [(s.start, s.end) for s in segments] == [(0.0, 7.0), (7.0, 10.0)]


def test_empty_words_make_no_segment():
    words = timed(("Hi.", 0.0, 0.5), ("", 2.0, 2.5), (" Bye.", 4.0, 4.5))
    assert [s.text for s in build_segments(words)] == ["Hi.", "Bye."]
    assert build_segments([]) == []


# --- segments_from_chunks --------------------------------------------------------------------------------------------


def test_chunk_time_is_shared_by_text_length():
    segments = segments_from_chunks([Chunk(0.0, 10.0, "Hello world. This is a test.", "English")])
    assert segments == [Segment("Hello world.", 0.0, 4.444), Segment("This is a test.", 4.444, 10.0)]


def test_long_chunk_is_cut_at_spaces_and_keeps_its_offset():
    text = "The quick brown fox jumps over the lazy dog and keeps running far away"
    segments = segments_from_chunks([Chunk(30.0, 40.0, text, "English")])
    assert segments == [
        Segment("The quick brown fox jumps over the lazy", 30.0, 35.652),
        Segment("dog and keeps running far away", 35.652, 40.0),
    ]


def test_chinese_chunk_is_cut_between_characters():
    segments = segments_from_chunks([Chunk(0.0, 5.0, "一二三四五六七八九十" * 5, "Chinese")])
    assert [(len(s.text), s.start, s.end) for s in segments] == [(42, 0.0, 4.2), (8, 4.2, 5.0)]


def test_chunks_in_order_and_empty_ones_skipped():
    chunks = [
        Chunk(0.0, 2.0, "First.", "English"),
        Chunk(2.0, 4.0, "   ", None),
        Chunk(4.0, 6.0, "", None),
        Chunk(6.0, 8.0, "...", None),
        Chunk(8.0, 9.0, " Last one ", "English"),
    ]
    assert segments_from_chunks(chunks) == [
        Segment("First.", 0.0, 2.0),
        Segment("...", 6.0, 8.0),
        Segment("Last one", 8.0, 9.0),
    ]
    assert segments_from_chunks([]) == []
