"""Turn forced-aligner output into `Word`s and subtitle-sized `Segment`s. Pure Python: no torch, no Gradio.

The aligner (transformers' `Qwen3ASRProcessor`) times words with their punctuation stripped; the transcript the
user sees keeps it. `words_from_alignment` maps one onto the other so that, as in faster-whisper, each
`Word.text` keeps its leading whitespace and punctuation and the words concatenate back to the transcript.
"""

from __future__ import annotations

import re
import unicodedata

from qasr_space.results import Chunk, Segment, Word

#: Characters after which a subtitle line ends (a sentence is over).
SENTENCE_END = frozenset(".!?…。！？｡‼⁇⁈⁉؟।॥")
#: Characters after which a too-long line is best split (a clause is over).
CLAUSE_END = frozenset(",;:，、；：﹐﹑")
#: Opening punctuation travels with the word after it: Unicode's Ps/Pi categories, plus these (which are Po).
_OPENERS = frozenset("¿¡")

_WHITESPACE = re.compile(r"\s+")


def _is_cjk(char: str) -> bool:
    """Same ranges as transformers' `_is_cjk_char`: the aligner times these one character at a time."""
    code = ord(char)
    return (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0x20000 <= code <= 0x2A6DF
        or 0x2A700 <= code <= 0x2B73F
        or 0x2B740 <= code <= 0x2B81F
        or 0x2B820 <= code <= 0x2CEAF
        or 0xF900 <= code <= 0xFAFF
        or 0x2F800 <= code <= 0x2FA1F
    )


def _is_kept(char: str) -> bool:
    """Characters the aligner keeps in its words (transformers' `_is_kept_char`): letters, numbers, apostrophes."""
    return char == "'" or unicodedata.category(char)[0] in "LN" or _is_cjk(char)


def _is_opening(char: str) -> bool:
    return unicodedata.category(char) in ("Ps", "Pi") or char in _OPENERS


def alignment_tokens(text: str) -> list[str]:
    """The words `Qwen3ASRProcessor.split_words_for_alignment` makes for languages other than Japanese and Korean.

    Punctuation is dropped without splitting ("3.5" -> "35", "don't" stays whole); whitespace splits; each CJK
    ideograph is a word of its own.
    """
    tokens: list[str] = []
    buffer = ""
    for char in text:
        if _is_cjk(char) or char.isspace():
            if buffer:
                tokens.append(buffer)
            buffer = ""
            if not char.isspace():
                tokens.append(char)
        elif _is_kept(char):
            buffer += char
    if buffer:
        tokens.append(buffer)
    return tokens


def _match_at(text: str, word: str, pos: int) -> int | None:
    """End of `word` matched at `pos` (where its first character is), skipping punctuation inside it ("35" matches
    "3.5"); None if it does not match."""
    j = pos + 1
    for char in word[1:]:
        while j < len(text) and text[j] != char and not _is_kept(text[j]) and not text[j].isspace():
            j += 1
        if j == len(text) or text[j] != char:
            return None
        j += 1
    return j


def _find(text: str, word: str, cursor: int) -> tuple[int, int] | None:
    """First match of `word` at or after `cursor`. Normally that is the next kept character; searching further
    lets the mapping recover if the aligner was given slightly different text."""
    pos = text.find(word[:1], cursor) if word else -1
    while pos != -1:
        end = _match_at(text, word, pos)
        if end is not None:
            return pos, end
        pos = text.find(word[0], pos + 1)
    return None


def _piece_start(text: str, lo: int, hi: int) -> int:
    """Where the piece of a word whose letters start at `hi` begins, the previous word's letters ending at `lo`.

    Trailing punctuation stays with the previous word, opening punctuation goes with this one, and the cut falls
    at whitespace when there is some: 'Hello, "world' -> 'Hello,' + ' "world'; 'Bonjour ! Ça' -> 'Bonjour !' + ' Ça'.
    """
    gap = text[lo:hi]
    runs = list(_WHITESPACE.finditer(gap))
    if not runs:  # glued (CJK, "3.5", "说：「走"): only opening brackets move over
        while hi > lo and _is_opening(text[hi - 1]):
            hi -= 1
        return hi
    for run in runs[:-1]:  # a token standing between two runs of whitespace: does it open what follows?
        if _is_opening(gap[run.end()]):
            return lo + run.start()
    return lo + runs[-1].start()


def _next_kept(text: str, pos: int) -> int:
    while pos < len(text) and not _is_kept(text[pos]):
        pos += 1
    return pos


def _clamp(seconds: float, duration: float | None) -> float:
    seconds = max(0.0, round(seconds, 3))
    return seconds if duration is None else min(seconds, duration)


def words_from_alignment(
    text: str, aligned: list[dict], offset: float = 0.0, duration: float | None = None
) -> list[Word]:
    """Map the aligner's punctuation-free words back onto `text`, so the returned words concatenate to `text` exactly.

    `aligned` is one sample of `Qwen3ASRProcessor.decode_forced_alignment`: `{"text", "start_time", "end_time"}`.
    Times get `offset` added (the chunk's place in the whole audio), are rounded to the millisecond and clamped to
    [0, duration]; starts never go backwards. An aligned word that cannot be found in `text` still gets a `Word`,
    holding whatever text lies unclaimed where it should have been (possibly ""), so no text is lost.
    """
    spans: list[tuple[int, int] | None] = []
    cursor = 0
    for item in aligned:
        span = _find(text, str(item["text"]), cursor)
        spans.append(span)
        if span is not None:
            cursor = span[1]

    bounds: list[int] = []
    prev_end = 0
    for i, span in enumerate(spans):
        if i == 0:
            start = 0
        elif span is not None:
            start = _piece_start(text, prev_end, span[0])
        else:
            start = _piece_start(text, prev_end, _next_kept(text, prev_end))
        bounds.append(max(start, bounds[-1]) if bounds else start)
        if span is not None:
            prev_end = span[1]
    bounds.append(len(text))

    words: list[Word] = []
    last_start = 0.0
    for i, item in enumerate(aligned):
        start = max(_clamp(float(item["start_time"]) + offset, duration), last_start)
        end = max(_clamp(float(item["end_time"]) + offset, duration), start)
        last_start = start
        words.append(Word(text[bounds[i] : bounds[i + 1]], start, end))
    return words


def ends_with(text: str, chars: frozenset[str]) -> bool:
    """Whether `text` ends with one of `chars`, looking past closing quotes and brackets ('ok."' ends a sentence)."""
    text = text.rstrip()
    while text and (unicodedata.category(text[-1]) in ("Pe", "Pf") or text[-1] in "\"'"):
        text = text[:-1]
    return bool(text) and text[-1] in chars


def _text(words: list[Word]) -> str:
    return "".join(w.text for w in words).strip()


def _segment(words: list[Word]) -> Segment:
    return Segment(_text(words), words[0].start, max(w.end for w in words), list(words))


def _split_at_clause(words: list[Word], max_chars: int) -> tuple[list[Word], list[Word]]:
    """Split a full line after its last comma-like word, if that keeps at least half a line; else keep it whole.
    Subtitles read better broken at a clause than wherever the line happened to fill up."""
    for k in range(len(words) - 1, -1, -1):
        if ends_with(words[k].text, CLAUSE_END) and len(_text(words[: k + 1])) >= max_chars // 2:
            return words[: k + 1], words[k + 1 :]
    return words, []


def build_segments(
    words: list[Word], max_chars: int = 42, max_gap: float = 0.8, max_duration: float = 7.0
) -> list[Segment]:
    """Group words into subtitle lines: a line ends after a sentence, at a pause over `max_gap` seconds, and before it
    would run past about `max_chars` characters (one per CJK character) or `max_duration` seconds. A line that
    fills up is split after its last comma when that leaves a reasonable first part. Lines with no text are dropped.
    """
    segments: list[Segment] = []
    current: list[Word] = []

    def flush(chunk: list[Word]) -> None:
        if _text(chunk):
            segments.append(_segment(chunk))

    for word in words:
        if current:
            if word.start - current[-1].end > max_gap:
                flush(current)
                current = []
            elif len(_text(current + [word])) > max_chars or word.end - current[0].start > max_duration:
                head, current = _split_at_clause(current, max_chars)
                flush(head)
        current.append(word)
        if ends_with(word.text, SENTENCE_END):
            flush(current)
            current = []
    if current:
        flush(current)
    return segments


def segments_from_chunks(chunks: list[Chunk]) -> list[Segment]:
    """Subtitle lines when there are no word timestamps: each chunk's text is cut like `build_segments` would cut it
    (sentence ends, commas, spaces, between CJK characters) and the chunk's time is shared out by text length.
    The segments carry no words, since their times are only estimates."""
    segments: list[Segment] = []
    for chunk in chunks:
        tokens = alignment_tokens(chunk.text)
        if tokens:
            untimed = [{"text": token, "start_time": 0.0, "end_time": 0.0} for token in tokens]
            pieces = [s.text for s in build_segments(words_from_alignment(chunk.text, untimed))]
        else:  # punctuation or symbols only: nothing to split on
            pieces = [chunk.text.strip()] if chunk.text.strip() else []
        total = sum(len(p) for p in pieces)
        span = max(chunk.end - chunk.start, 0.0)
        done = 0
        for piece in pieces:
            start = chunk.start + span * done / total
            done += len(piece)
            segments.append(Segment(piece, round(start, 3), round(chunk.start + span * done / total, 3)))
    return segments
