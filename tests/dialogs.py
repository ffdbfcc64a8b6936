"""Multi-speaker dialogs spoken by espeak-ng voices, with exact reference turns, for diarization tests and the bench.

Real synthetic speech (not tones) is what a speaker-embedding model needs to tell voices apart, and espeak-ng is
fast and deterministic, so a 60 s dialog builds in about a second. Each turn's reference times are the voiced span
of its utterance (espeak's leading and trailing silence trimmed by energy), so a DER against them is exact.

The layout follows how diarizers fail: turns mostly alternate, but sometimes one speaker takes two turns in a row
after a 1.5–3 s pause (where a diarizer that merges a speaker's segments wrongly bridges the pause); with
`overlap=True` about every third turn starts 1–2 s before the previous one ends.
"""

from __future__ import annotations

import os
import random
import subprocess
import tempfile
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soxr

SR = 16000
ESPEAK_SR = 22050
LEAD_IN = 0.5  # silence before the first turn and after the last one
TURN_MIN, TURN_MAX = 3.0, 8.0  # voiced length of a turn
SAME_SPEAKER_PAUSE = (1.5, 3.0)
CHANGE_GAP = (0.2, 1.2)
OVERLAP = (1.0, 2.0)
REPEAT_PROBABILITY = 0.2  # how often a speaker keeps the floor after a pause
PEAK = 0.9


@dataclass(frozen=True)
class Voice:
    """An espeak-ng voice: variant, pitch (-p, 0–99) and speed (-s, words per minute) chosen to sound apart."""

    name: str
    pitch: int
    speed: int


#: Speaker "A", "B", ... in order: different accents, sexes, pitches and speeds.
VOICES: tuple[Voice, ...] = (
    Voice("en-us+m3", pitch=35, speed=165),
    Voice("en-gb+f2", pitch=70, speed=150),
    Voice("en-us+f4", pitch=50, speed=180),
    Voice("en-gb-scotland+m1", pitch=20, speed=140),
)

WORDS = (
    "the morning train was late again so we walked along the river past the old mill and the market where "
    "people sell bread cheese apples honey flowers and fresh fish every weekend while children play near the "
    "fountain and their parents talk about work weather football music prices holidays gardens and the new "
    "library that opened last summer with a large reading room quiet corners bright windows comfortable chairs "
    "and a small cafe serving coffee tea soup sandwiches cakes and lemonade to students teachers visitors "
    "tourists writers and anyone who needs a warm place to think plan rest read or simply watch the rain"
).split()


@dataclass(frozen=True)
class Turn:
    """One reference turn: who spoke and the voiced span in seconds; `text` is what was said."""

    speaker: str
    start: float
    end: float
    text: str = ""


@dataclass
class Dialog:
    """A built dialog: the WAV's path, its length in seconds, the reference turns and the overlap regions."""

    path: str
    duration: float
    turns: list[Turn]
    overlaps: list[tuple[float, float]] = field(default_factory=list)

    @property
    def speakers(self) -> list[str]:
        return sorted({t.speaker for t in self.turns})

    def samples(self) -> np.ndarray:
        """The audio as float32 in [-1, 1] at 16 kHz, as the app hands it to the diarizer."""
        return read_wav(self.path)


def read_wav(path: str | os.PathLike[str]) -> np.ndarray:
    """A 16-bit mono WAV as float32 in [-1, 1]."""
    with wave.open(str(path), "rb") as f:
        data = f.readframes(f.getnframes())
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def _write_wav(path: str | os.PathLike[str], audio: np.ndarray) -> None:
    pcm = np.clip(np.round(audio * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(SR)
        f.writeframes(pcm.tobytes())


def speak(text: str, voice: Voice) -> np.ndarray:
    """`text` in `voice` at 16 kHz, trimmed to its voiced span (so its length is the reference turn's length)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "u.wav"
        subprocess.run(["espeak-ng", "-v", voice.name, "-p", str(voice.pitch), "-s", str(voice.speed),
                        "-w", str(out), text], check=True, capture_output=True)
        with wave.open(str(out), "rb") as f:
            rate = f.getframerate()
            raw = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    audio = soxr.resample(raw, rate, SR).astype(np.float32) if rate != SR else raw
    return trim(audio)


def trim(audio: np.ndarray, threshold_db: float = -40.0) -> np.ndarray:
    """Cut leading and trailing silence: keep from the first to the last sample louder than `threshold_db` of the
    peak. Sample-exact, so the reference starts on the first audible sample, not on a frame border."""
    loud = np.flatnonzero(np.abs(audio) > np.abs(audio).max() * 10 ** (threshold_db / 20))
    return audio[loud[0]:loud[-1] + 1]


def _utterance(rng: random.Random, voice: Voice, target: float) -> tuple[str, np.ndarray]:
    """Words from `rng` spoken by `voice` for about `target` seconds, always within [TURN_MIN, TURN_MAX].

    The word count is corrected from the measured rate; the words themselves are drawn once, so the result
    depends only on the rng's state (deterministic per seed)."""
    pool = [rng.choice(WORDS) for _ in range(int(TURN_MAX * voice.speed / 60 * 2))]
    count = max(3, round(target * voice.speed / 60))
    for _ in range(6):
        text = " ".join(pool[:count])
        audio = speak(text, voice)
        length = len(audio) / SR
        if TURN_MIN <= length <= TURN_MAX and abs(length - target) < 0.75:
            break
        count = min(len(pool), max(3, round(count * target / length)))
    if not TURN_MIN <= length <= TURN_MAX:
        raise RuntimeError(f"could not make a {TURN_MIN}-{TURN_MAX} s utterance for {voice.name} ({length:.2f} s)")
    return text, audio


def overlap_regions(turns: list[Turn]) -> list[tuple[float, float]]:
    """The regions where two or more turns are active at once, merged and sorted."""
    events = sorted([(t.start, 1) for t in turns] + [(t.end, -1) for t in turns], key=lambda e: (e[0], e[1]))
    regions: list[tuple[float, float]] = []
    active, opened = 0, 0.0
    for time, step in events:
        if step > 0 and active == 1:
            opened = time
        if step < 0 and active == 2 and time > opened:
            regions.append((opened, time))
        active += step
    return regions


def build_dialog(out_path: str | os.PathLike[str], *, speakers: int, seconds: float, seed: int = 0,
                 overlap: bool = False) -> Dialog:
    """Write a `seconds`-long dialog of `speakers` voices (2–4) to `out_path` (16 kHz mono 16-bit WAV).

    The file is `seconds` long to within one turn; speakers "A", "B", ... are VOICES in order. Deterministic
    for a given seed."""
    if not 1 <= speakers <= len(VOICES):
        raise ValueError(f"speakers must be 1..{len(VOICES)}")
    rng = random.Random(seed)
    names = [chr(ord("A") + i) for i in range(speakers)]
    placed: list[tuple[Turn, np.ndarray]] = []
    cursor = LEAD_IN  # where the next turn may start
    while True:
        previous = placed[-1][0] if placed else None
        if previous is None:
            speaker, start = rng.choice(names), cursor
        elif speakers > 1 and rng.random() >= REPEAT_PROBABILITY:
            speaker = rng.choice([n for n in names if n != previous.speaker])
            overlaps_previous = overlap and len(placed) % 3 == 2
            start = previous.end - rng.uniform(*OVERLAP) if overlaps_previous else cursor + rng.uniform(*CHANGE_GAP)
        else:
            speaker, start = previous.speaker, cursor + rng.uniform(*SAME_SPEAKER_PAUSE)
        room = seconds - LEAD_IN - start
        if room < TURN_MIN:
            break
        text, audio = _utterance(rng, VOICES[names.index(speaker)], min(rng.uniform(TURN_MIN, TURN_MAX), room))
        start = round(start * SR) / SR  # on a sample, so the WAV and the reference agree exactly
        turn = Turn(speaker, start, start + len(audio) / SR, text)
        placed.append((turn, audio))
        cursor = max(cursor, turn.end)
    if not placed:
        raise ValueError(f"{seconds} s is too short for one turn")
    duration = cursor + LEAD_IN
    mix = np.zeros(round(duration * SR), dtype=np.float32)
    for turn, audio in placed:
        first = round(turn.start * SR)
        mix[first:first + len(audio)] += audio
    mix *= PEAK / max(float(np.abs(mix).max()), PEAK)  # additive overlap may exceed full scale; never clip
    _write_wav(out_path, mix)
    turns = [t for t, _ in placed]
    return Dialog(str(out_path), len(mix) / SR, turns, overlap_regions(turns))
