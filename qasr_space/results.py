"""Plain result types, in the spirit of faster-whisper's `Word` and `Segment`: no Gradio, no torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Word:
    """One aligned word (or CJK character). `text` keeps its leading space and punctuation, so
    `"".join(w.text for w in words)` gives back the transcript."""

    text: str
    start: float
    end: float


@dataclass
class Segment:
    """A subtitle-sized run of words (or a whole chunk when there are no word timestamps)."""

    text: str
    start: float
    end: float
    words: list[Word] = field(default_factory=list)


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Transcript":
        def words(items: list[dict]) -> list[Word]:
            return [Word(**w) for w in items]

        return cls(
            language=data.get("language"),
            text=data.get("text", ""),
            duration=data.get("duration", 0.0),
            words=words(data.get("words", [])),
            segments=[Segment(s["text"], s["start"], s["end"], words(s.get("words", []))) for s in data.get("segments", [])],
            model=data.get("model", ""),
            chunks=[Chunk(**c) for c in data.get("chunks", [])],
            warnings=list(data.get("warnings", [])),
        )
