"""Plain result types, in the spirit of faster-whisper's `Word` and `Segment`: no Gradio, no torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class AsrOutput:
    """What the model said for one clip; `language` is the model's own tag (None when forced or silent)."""

    text: str
    language: str | None
    truncated: bool


@dataclass
class Word:
    """One aligned word (or CJK character). `text` keeps its leading space and punctuation, so
    `"".join(w.text for w in words)` gives back the transcript."""

    text: str
    start: float
    end: float
    #: Who said it, when speakers were asked for (`diarize.assign_speakers`).
    speaker: str | None = None


@dataclass
class Segment:
    """A subtitle-sized run of words (or a whole chunk when there are no word timestamps). With speakers, a segment
    never spans two of them."""

    text: str
    start: float
    end: float
    words: list[Word] = field(default_factory=list)
    speaker: str | None = None


@dataclass
class SpeakerTurn:
    """A stretch of audio where one speaker talks, as diarization found it; turns of different speakers may
    overlap where two talk at once."""

    speaker: str
    start: float
    end: float


@dataclass
class Overlap:
    """A stretch where two or more people talk at once."""

    start: float
    end: float


@dataclass
class Chunk:
    """One piece of the audio as it went through the model; `truncated` means it hit `max_new_tokens`."""

    start: float
    end: float
    text: str
    language: str | None
    truncated: bool = False


@dataclass
class Transcript:
    """Everything a run produced. `words` is empty when timestamps were off or unavailable; `warnings` says why."""

    language: str | None
    text: str
    duration: float
    words: list[Word] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    model: str = ""
    chunks: list[Chunk] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: With speakers: their names in order of first appearance, their turns, and where they talk over each other.
    speakers: list[str] = field(default_factory=list)
    turns: list[SpeakerTurn] = field(default_factory=list)
    overlaps: list[Overlap] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON; words and segments carry a `speaker` key only when they have a speaker."""
        data = asdict(self)
        for item in [*data["words"], *data["segments"], *(w for s in data["segments"] for w in s["words"])]:
            if item["speaker"] is None:
                del item["speaker"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Transcript":
        def words(items: list[dict]) -> list[Word]:
            return [Word(**w) for w in items]

        return cls(
            language=data.get("language"),
            text=data.get("text", ""),
            duration=data.get("duration", 0.0),
            words=words(data.get("words", [])),
            segments=[Segment(s["text"], s["start"], s["end"], words(s.get("words", [])), s.get("speaker"))
                      for s in data.get("segments", [])],
            model=data.get("model", ""),
            chunks=[Chunk(**c) for c in data.get("chunks", [])],
            warnings=list(data.get("warnings", [])),
            speakers=list(data.get("speakers", [])),
            turns=[SpeakerTurn(**t) for t in data.get("turns", [])],
            overlaps=[Overlap(**o) for o in data.get("overlaps", [])],
        )
