"""Write a `Transcript` as SRT, WebVTT, JSON or plain text. Kept apart from the UI, like openai/whisper's writers,
so the CLI, the API and the Space all produce byte-identical files."""

from __future__ import annotations

import json
import os
from itertools import groupby
from operator import attrgetter
from pathlib import Path
from typing import Callable

from qasr_space.errors import QasrError
from qasr_space.results import Segment, Transcript
from qasr_space.timing import build_segments, segments_from_chunks

#: Cue text longer than this is wrapped onto two lines (the usual broadcast subtitle limit).
LINE_CHARS = 42


def _timestamp(seconds: float, separator: str) -> str:
    """HH:MM:SS<sep>mmm, rounding the total to whole milliseconds first so 59.9996 s gives 00:01:00,000, not
    00:00:59,1000. Hours simply grow past two digits."""
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def _cue_text(text: str) -> str:
    """One line, or two split at the space nearest the middle when long. Newlines in the text are folded first: a
    blank line inside a cue would end it early in every player."""
    text = " ".join(text.split())
    if len(text) <= LINE_CHARS or " " not in text:
        return text
    middle = len(text) / 2
    cut = min((i for i, char in enumerate(text) if char == " "), key=lambda i: abs(i - middle))
    return f"{text[:cut]}\n{text[cut + 1:]}"


def _cues(t: Transcript) -> list[Segment]:
    """The transcript's segments; failing those, lines built from its words, its chunks, or its whole text."""
    if t.segments:
        return t.segments
    if t.words:
        return build_segments(t.words)
    if t.chunks:
        return segments_from_chunks(t.chunks)
    return [Segment(t.text.strip(), 0.0, t.duration)] if t.text.strip() else []


def _timed_cues(t: Transcript, separator: str) -> list[tuple[str, str, str, str | None]]:
    """(start, end, text, speaker) for every cue that has text; an empty cue would break SRT's blank-line framing."""
    cues = []
    for segment in _cues(t):
        text = " ".join(segment.text.split())
        if text:
            end = max(segment.end, segment.start)
            cues.append((_timestamp(segment.start, separator), _timestamp(end, separator), text, segment.speaker))
    return cues


def to_srt(t: Transcript) -> str:
    """SubRip: numbered cues, comma before the milliseconds, a blank line between cues; a speaker leads its cue as
    `[Anna]` (SubRip has no voice markup)."""
    cues = _timed_cues(t, ",")
    return "\n".join(f"{i}\n{start} --> {end}\n{_cue_text(f'[{speaker}] {text}' if speaker else text)}\n"
                     for i, (start, end, text, speaker) in enumerate(cues, 1))


def _escape_vtt(text: str) -> str:
    """WebVTT cue text is markup: escaping `<` and `>` keeps tags out, and `-->` too (it would end the cue text)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(t: Transcript) -> str:
    """WebVTT: the `WEBVTT` header, then cues with a dot before the milliseconds and escaped text; a speaker is a
    voice tag, `<v Anna>`, which players show and style."""
    cues = _timed_cues(t, ".")
    return "WEBVTT\n\n" + "\n".join(
        f"{start} --> {end}\n{f'<v {_escape_vtt(speaker)}>' if speaker else ''}{_escape_vtt(_cue_text(text))}\n"
        for start, end, text, speaker in cues)


def to_json(t: Transcript) -> str:
    """Everything, readable: `Transcript.from_dict(json.loads(...))` gives the transcript back."""
    return json.dumps(t.to_dict(), ensure_ascii=False, indent=2)


def to_txt(t: Transcript) -> str:
    """The text; with speakers, one paragraph per turn, led by its speaker's name."""
    if not t.speakers:
        return t.text + "\n"
    turns = [(speaker, " ".join(s.text.strip() for s in run)) for speaker, run in groupby(_cues(t), attrgetter("speaker"))]
    return "\n\n".join(f"{speaker}: {text}" if speaker else text for speaker, text in turns) + "\n"


#: name -> (writer, file suffix, MIME type)
FORMATS: dict[str, tuple[Callable[[Transcript], str], str, str]] = {
    "srt": (to_srt, ".srt", "application/x-subrip"),
    "vtt": (to_vtt, ".vtt", "text/vtt"),
    "json": (to_json, ".json", "application/json"),
    "txt": (to_txt, ".txt", "text/plain"),
}


def write_transcript(t: Transcript, fmt: str, path: str | os.PathLike[str]) -> str:
    """Write `t` to `path` as UTF-8 with `\\n` line ends on every OS; returns the path as a string.

    `fmt` can come from an API caller, so an unknown one is a `QasrError` (their mistake), not a crash.
    """
    if fmt not in FORMATS:
        raise QasrError(f"Unknown output format {fmt!r}: choose one of {', '.join(FORMATS)}.")
    writer = FORMATS[fmt][0]
    Path(path).write_text(writer(t), encoding="utf-8", newline="")
    return str(path)
