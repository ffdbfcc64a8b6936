"""Write a `Transcript` as SRT, WebVTT, JSON, plain text, enhanced LRC or TSV. Kept apart from the UI, like
openai/whisper's writers, so the CLI, the API and the Space all produce byte-identical files.

SRT and VTT cues follow `CueLimits` (by default the broadcast norm: 42 characters a line, two lines, 7 s): a segment
too long for them is split into several cues at word boundaries, preferably after punctuation, each timed by its
words, or by its share of the segment's time when there are no word timestamps.
"""

from __future__ import annotations

import json
import numbers
import os
import re
from dataclasses import dataclass
from itertools import accumulate, groupby
from operator import attrgetter
from pathlib import Path
from typing import Callable

from qasr_space.errors import QasrError, shown
from qasr_space.results import Segment, Transcript, Word
from qasr_space.timing import (CLAUSE_END, SENTENCE_END, alignment_tokens, build_segments, ends_with,
                               segments_from_chunks, words_from_alignment)

#: The broadcast subtitle norm: characters a line, lines a cue, seconds a cue stays on screen.
LINE_CHARS = 42
CUE_LINES = 2
CUE_SECONDS = 7.0
#: What a caller may ask for instead: narrower lines suit phones, wider ones a cinema screen.
LINE_CHARS_RANGE = (10, 200)
CUE_SECONDS_RANGE = (1.0, 60.0)


@dataclass(frozen=True)
class CueLimits:
    """How much one SRT or VTT cue may hold: `CUE_LINES` lines of `line_chars` characters, on screen for `seconds`.

    Values come from API callers and the command line, so a bad one is a `QasrError` naming the range, raised when
    the limits are made: before any model work.
    """

    line_chars: int = LINE_CHARS
    seconds: float = CUE_SECONDS

    def __post_init__(self) -> None:
        low, high = LINE_CHARS_RANGE
        if isinstance(self.line_chars, bool) or not isinstance(self.line_chars, numbers.Integral) \
                or not low <= self.line_chars <= high:
            raise QasrError(f"Characters per subtitle line must be a whole number from {low} to {high}, not "
                            f"{shown(self.line_chars)}.")
        low, high = CUE_SECONDS_RANGE
        if isinstance(self.seconds, bool) or not isinstance(self.seconds, numbers.Real) \
                or not low <= self.seconds <= high:  # NaN and infinity fail the comparison too
            raise QasrError(f"Seconds per subtitle cue must be a number from {low:g} to {high:g}, not "
                            f"{shown(self.seconds)}.")


def _milliseconds(seconds: float) -> int:
    """Whole milliseconds, never negative: every writer rounds the total once, so 59.9996 s is 60000 ms."""
    return max(0, round(seconds * 1000))


def _timestamp(seconds: float, separator: str) -> str:
    """HH:MM:SS<sep>mmm from whole milliseconds, so 59.9996 s gives 00:01:00,000, not 00:00:59,1000. Hours simply
    grow past two digits."""
    hours, ms = divmod(_milliseconds(seconds), 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def _one_line(text: str) -> str:
    """Runs of whitespace (newlines and tabs included) as one space: a newline inside a cue, an LRC line or a TSV
    row would end it early."""
    return " ".join(text.split())


def _cues(t: Transcript) -> list[Segment]:
    """The transcript's segments; failing those, lines built from its words, its chunks, or its whole text."""
    if t.segments:
        return t.segments
    if t.words:
        return build_segments(t.words)
    if t.chunks:
        return segments_from_chunks(t.chunks)
    return [Segment(t.text.strip(), 0.0, t.duration)] if t.text.strip() else []


def _pieces(segment: Segment) -> list[Word]:
    """The segment's words with text; without word timestamps, its text cut where the aligner would cut it into
    words (between CJK characters too), each piece timed by its share of the segment's characters."""
    timed = [w for w in segment.words if w.text.strip()]
    if timed or not segment.text.strip():
        return timed
    tokens = alignment_tokens(segment.text)
    if not tokens:  # punctuation or symbols only: one piece
        return [Word(segment.text, segment.start, segment.end)]
    untimed = words_from_alignment(segment.text, [{"text": t, "start_time": 0.0, "end_time": 0.0} for t in tokens])
    total, span, done = len(segment.text), max(segment.end - segment.start, 0.0), 0
    pieces = []
    for word in untimed:
        start = segment.start + span * done / total
        done += len(word.text)
        pieces.append(Word(word.text, round(start, 3), round(segment.start + span * done / total, 3)))
    return pieces


def _spaced(words: list[Word]) -> list[str]:
    """Each word as shown, led by a space where the transcript has whitespace between it and the word before, and
    by nothing where the two are glued (CJK characters, say): joined, they are the cue's text on one line."""
    return [("" if i == 0 or not (w.text[:1].isspace() or words[i - 1].text[-1:].isspace()) else " ")
            + _one_line(w.text) for i, w in enumerate(words)]


def _lines(words: list[Word], lead: str, line_chars: int) -> list[str] | None:
    """`lead` and the words on one line, or on two split at the word boundary that balances them best, each line at
    most `line_chars` long; None when they need more. A single word is one line, however long: it is never split."""
    shown_words = _spaced(words)
    whole = lead + "".join(shown_words)
    if len(whole) <= line_chars or len(words) == 1:
        return [whole]
    best, first = None, len(lead)
    for k in range(1, len(words)):  # the second line starts at word k, without the space before it
        first += len(shown_words[k - 1])
        second = len(whole) - first - (shown_words[k][:1] == " ")
        if first <= line_chars and second <= line_chars and (best is None or abs(first - second) < best[0]):
            best = (abs(first - second), k)
    if best is None:
        return None
    k = best[1]
    return [lead + "".join(shown_words[:k]), "".join(shown_words[k:]).lstrip(" ")]


def _seconds(words: list[Word]) -> float:
    return max(w.end for w in words) - words[0].start


def _fits(words: list[Word], lead: str, limits: CueLimits) -> bool:
    return _seconds(words) <= limits.seconds and _lines(words, lead, limits.line_chars) is not None


def _cut(words: list[Word], limits: CueLimits) -> int:
    """Where to end a cue that `words` overflows by its last word: after the last sentence or clause end that leaves
    the cue at least half full (by characters or by time), as `build_segments` breaks lines; else before that last
    word."""
    lengths = list(accumulate(len(text) for text in _spaced(words)))
    for k in range(len(words) - 2, 0, -1):
        half_full = lengths[k - 1] >= limits.line_chars * CUE_LINES / 2 or _seconds(words[:k]) >= limits.seconds / 2
        if half_full and ends_with(words[k - 1].text, SENTENCE_END | CLAUSE_END):
            return k
    return len(words) - 1


def _split(segment: Segment, lead: str, limits: CueLimits) -> list[tuple[float, float, list[str]]]:
    """(start, end, lines) of the cues that show `segment` within `limits`: the segment itself when it fits, else
    consecutive runs of its words, every word in order in exactly one cue, each cue timed by its own words."""
    pieces = _pieces(segment)
    if not pieces:
        return []
    if _fits(pieces, lead, limits):
        return [(segment.start, max(segment.end, segment.start), _lines(pieces, lead, limits.line_chars))]
    runs, current = [], []
    for word in pieces:
        current.append(word)
        while len(current) > 1 and not _fits(current, lead, limits):
            cut = _cut(current, limits)
            runs.append(current[:cut])
            current = current[cut:]
    runs.append(current)
    return [(run[0].start, max(w.end for w in run), _lines(run, lead, limits.line_chars)) for run in runs]


def _subtitle_cues(t: Transcript, limits: CueLimits, labelled: bool
                   ) -> list[tuple[float, float, list[str], str | None]]:
    """(start, end, lines, speaker) of every cue, in order; with `labelled`, each cue's first line starts with
    `[speaker] `, counted in its length. No cue is empty: an empty one would break SRT's blank-line framing."""
    cues = []
    for segment in _cues(t):
        speaker = _one_line(segment.speaker) if segment.speaker else None
        lead = f"[{speaker}] " if labelled and speaker else ""
        cues.extend((start, end, lines, speaker) for start, end, lines in _split(segment, lead, limits))
    return cues


def to_srt(t: Transcript, limits: CueLimits = CueLimits()) -> str:
    """SubRip: numbered cues, comma before the milliseconds, a blank line between cues; a speaker leads its cue as
    `[Anna]` (SubRip has no voice markup)."""
    return "\n".join(f"{i}\n{_timestamp(start, ',')} --> {_timestamp(end, ',')}\n" + "\n".join(lines) + "\n"
                     for i, (start, end, lines, _) in enumerate(_subtitle_cues(t, limits, labelled=True), 1))


def _escape_vtt(text: str) -> str:
    """WebVTT cue text is markup: escaping `<` and `>` keeps tags out, and `-->` too (it would end the cue text)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(t: Transcript, limits: CueLimits = CueLimits()) -> str:
    """WebVTT: the `WEBVTT` header, then cues with a dot before the milliseconds and escaped text; a speaker is a
    voice tag, `<v Anna>`, which players show and style."""
    return "WEBVTT\n\n" + "\n".join(
        f"{_timestamp(start, '.')} --> {_timestamp(end, '.')}\n{f'<v {_escape_vtt(speaker)}>' if speaker else ''}"
        + "\n".join(_escape_vtt(line) for line in lines) + "\n"
        for start, end, lines, speaker in _subtitle_cues(t, limits, labelled=False))


def to_json(t: Transcript) -> str:
    """Everything, readable: `Transcript.from_dict(json.loads(...))` gives the transcript back."""
    return json.dumps(t.to_dict(), ensure_ascii=False, indent=2)


def to_txt(t: Transcript) -> str:
    """The text; with speakers, one paragraph per turn, led by its speaker's name."""
    if not t.speakers:
        return t.text + "\n"
    turns = [(speaker, " ".join(s.text.strip() for s in run)) for speaker, run in groupby(_cues(t), attrgetter("speaker"))]
    return "\n\n".join(f"{speaker}: {text}" if speaker else text for speaker, text in turns) + "\n"


def _lrc_timestamp(seconds: float) -> str:
    """mm:ss.xx from whole centiseconds; minutes grow past 59 (`[75:03.20]`), which LRC players accept."""
    minutes, centis = divmod(max(0, round(seconds * 100)), 6000)
    return f"{minutes:02d}:{centis // 100:02d}.{centis % 100:02d}"


def to_lrc(t: Transcript) -> str:
    """Enhanced (A2) LRC, for lyrics players: one `[mm:ss.xx]` line per segment; with word timestamps, each word led
    by its `<mm:ss.xx>` start and the line closed by its last word's end, so players light up word by word. Without
    tags the line reads as the transcript does. A speaker leads the line as `Anna: `."""
    lines = []
    for segment in _cues(t):
        words = [w for w in segment.words if w.text.strip()]
        lead = f"{_one_line(segment.speaker)}: " if segment.speaker else ""
        if words:
            body = "".join(f"{' ' if shown.startswith(' ') else ''}<{_lrc_timestamp(w.start)}>{shown.lstrip(' ')}"
                           for w, shown in zip(words, _spaced(words)))
            body += f"<{_lrc_timestamp(max(w.end for w in words))}>"
        else:
            body = _one_line(segment.text)
        if body:
            lines.append(f"[{_lrc_timestamp(segment.start)}]{lead}{body}\n")
    return "".join(lines)


def to_tsv(t: Transcript) -> str:
    """Tab-separated, as openai/whisper writes it: a `start`, `end`, `text` header, then one row per segment with
    its times in whole milliseconds; a `speaker` column follows when the transcript has speakers. Tabs and newlines
    in the text become spaces, so every row has its columns."""
    header = ["start", "end", "text", *(["speaker"] if t.speakers else [])]
    rows = ["\t".join(header)]
    for segment in _cues(t):
        text = _one_line(segment.text)
        if text:
            start = _milliseconds(segment.start)
            speaker = [_one_line(segment.speaker or "")] if t.speakers else []
            rows.append("\t".join([str(start), str(max(_milliseconds(segment.end), start)), text, *speaker]))
    return "\n".join(rows) + "\n"


#: name -> (writer, file suffix, MIME type)
FORMATS: dict[str, tuple[Callable[..., str], str, str]] = {
    "srt": (to_srt, ".srt", "application/x-subrip"),
    "vtt": (to_vtt, ".vtt", "text/vtt"),
    "json": (to_json, ".json", "application/json"),
    "txt": (to_txt, ".txt", "text/plain"),
    "lrc": (to_lrc, ".lrc", "text/plain"),
    "tsv": (to_tsv, ".tsv", "text/tab-separated-values"),
}
#: The formats whose writers take `CueLimits`.
CUE_FORMATS = ("srt", "vtt")


def render_transcript(t: Transcript, fmt: str, limits: CueLimits = CueLimits()) -> str:
    """`t` in the format named `fmt`, SRT and VTT cues within `limits`.

    `fmt` can come from an API caller, so an unknown one is a `QasrError` (their mistake), not a crash.
    """
    if fmt not in FORMATS:
        raise QasrError(f"Unknown output format {shown(fmt)}: choose one of {', '.join(FORMATS)}.")
    writer = FORMATS[fmt][0]
    return writer(t, limits) if fmt in CUE_FORMATS else writer(t)


def write_transcript(t: Transcript, fmt: str, path: str | os.PathLike[str], limits: CueLimits = CueLimits()) -> str:
    """Write `render_transcript(t, fmt, limits)` to `path` as UTF-8 with `\\n` line ends on every OS; returns the
    path as a string. Nothing is written for an unknown format."""
    Path(path).write_text(render_transcript(t, fmt, limits), encoding="utf-8", newline="")
    return str(path)


def file_stem(name: str) -> str:
    """A safe base name for download files, from an upload's name or a fetched page's title: letters, digits, `_`,
    `.` and `-` only, never leading dots, so it is a file or folder name and never a path."""
    return re.sub(r"[^\w.-]+", "_", name).strip("._")[:60] or "transcript"


def write_all(t: Transcript, folder: str | os.PathLike[str], stem: str) -> list[str]:
    """`t` in every format of `FORMATS`, as `folder/stem.srt`, `folder/stem.vtt` and so on: the downloads a page
    offers for one transcript. Returns the paths, in the order of `FORMATS`."""
    return [write_transcript(t, fmt, os.path.join(folder, stem + suffix)) for fmt, (_, suffix, _) in FORMATS.items()]
