"""Tests of the DER scorer (bench/der.py) on hand-made cases whose answers are worked out in the comments, and of
the espeak-ng dialog builder (tests/dialogs.py) that the diarization tests and the bench rely on for exact
references. Dialogs here are at most 20 s, so the module runs in a few seconds."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from bench.der import DerResult, der, overlap_precision_recall
from qasr_space.audio import SAMPLE_RATE, load_audio
from tests.dialogs import (CHANGE_GAP, OVERLAP, PEAK, SAME_SPEAKER_PAUSE, SR, TURN_MAX, TURN_MIN, VOICES, Turn,
                           build_dialog, overlap_regions, speak)

# --- the scorer ----------------------------------------------------------------------------------------------

REF = [(0.0, 5.0, "A"), (6.0, 10.0, "B"), (11.0, 14.0, "A")]  # 12 s of speech


def _close(result: DerResult, *, miss: float = 0.0, fa: float = 0.0, confusion: float = 0.0, total: float) -> None:
    assert result.miss == pytest.approx(miss, abs=1e-9)
    assert result.false_alarm == pytest.approx(fa, abs=1e-9)
    assert result.confusion == pytest.approx(confusion, abs=1e-9)
    assert result.total == pytest.approx(total, abs=1e-9)


def test_perfect_hypothesis_scores_zero_under_any_labels() -> None:
    result = der(REF, [(s, e, {"A": "spk0", "B": "spk1"}[k]) for s, e, k in REF])
    _close(result, total=12.0)
    assert result.rate == 0.0
    assert result.mapping == {"spk0": "A", "spk1": "B"}


def test_swapped_labels_score_zero_thanks_to_the_mapping() -> None:
    swapped = [(s, e, "B" if k == "A" else "A") for s, e, k in REF]
    result = der(REF, swapped)
    assert result.rate == 0.0
    assert result.mapping == {"B": "A", "A": "B"}


def test_a_missed_turn_is_missed_speech() -> None:
    # The last A turn (3 s) is not found: 3 of 12 s missed.
    result = der(REF, REF[:2])
    _close(result, miss=3.0, total=12.0)
    assert result.rate == pytest.approx(0.25)


def test_speech_where_nobody_spoke_is_false_alarm() -> None:
    # 2 s claimed in the 5–6 s gap, by a known speaker: false alarm, not confusion.
    result = der(REF, REF + [(5.0, 6.0, "A"), (10.0, 11.0, "B")])
    _close(result, fa=2.0, total=12.0)
    assert result.rate == pytest.approx(2 / 12)


def test_joining_a_speakers_turns_across_a_pause_is_false_alarm() -> None:
    # What senko's merged output does: A 0–4 and A 6–10 come back as one A 0–10; the 2 s pause is false alarm.
    result = der([(0.0, 4.0, "A"), (6.0, 10.0, "A")], [(0.0, 10.0, "x")])
    _close(result, fa=2.0, total=8.0)


def test_one_label_for_two_speakers_is_confusion_for_the_smaller_one() -> None:
    # x is mapped to A (6 s in common beats 2 s with B); B's 2 s are confusion.
    result = der([(0.0, 6.0, "A"), (6.0, 8.0, "B")], [(0.0, 8.0, "x")])
    _close(result, confusion=2.0, total=8.0)
    assert result.mapping == {"x": "A"}
    assert result.rate == pytest.approx(0.25)


def test_collar_forgives_boundary_errors_and_leaves_those_frames_unscored() -> None:
    ref = [(0.0, 5.0, "A"), (5.0, 10.0, "B")]
    late = [(0.0, 5.2, "x"), (5.2, 10.0, "y")]  # the change found 0.2 s late
    _close(der(ref, late), confusion=0.2, total=10.0)
    # ±0.25 s around 0, 5, 5, 10 is not scored: 10 - 0.25 - 0.5 - 0.25 = 9 s remain, and no error is left in them.
    _close(der(ref, late, collar=0.25), total=9.0)
    # An error longer than the collar keeps what lies outside it: change found 0.5 s late, 0.25 s of it scored.
    _close(der(ref, [(0.0, 5.5, "x"), (5.5, 10.0, "y")], collar=0.25), confusion=0.25, total=9.0)


def test_overlapping_reference_speech_counts_per_speaker() -> None:
    ref = [(0.0, 6.0, "A"), (4.0, 10.0, "B")]  # 12 s of speaker time, 2 s of it in overlap
    _close(der(ref, [(0.0, 6.0, "x"), (6.0, 10.0, "y")]), miss=2.0, total=12.0)  # overlap not found: B's 2 s missed
    assert der(ref, [(0.0, 6.0, "x"), (4.0, 10.0, "y")]).rate == 0.0
    # Two hypothesis speakers where one spoke: one of them is false alarm.
    _close(der([(0.0, 4.0, "A")], [(0.0, 4.0, "x"), (1.0, 2.0, "y")]), fa=1.0, total=4.0)


def test_scorer_takes_turn_objects_and_frames_are_centred() -> None:
    # Times off the 10 ms grid: a frame belongs to a turn when its centre does, so 0.004–1.006 covers frames 0..100.
    result = der([Turn("A", 0.004, 1.006)], [Turn("x", 0.0, 1.0)])
    assert result.total == pytest.approx(1.01)
    _close(result, miss=0.01, total=1.01)


def test_empty_hypothesis_and_empty_reference() -> None:
    assert der(REF, []).rate == 1.0
    assert der([], []).rate == 0.0
    assert der([], [(0.0, 1.0, "x")]).rate == float("inf")


def test_overlap_precision_and_recall() -> None:
    assert overlap_precision_recall([(1.0, 3.0)], [(2.0, 4.0)]) == pytest.approx((0.5, 0.5))
    assert overlap_precision_recall([(1.0, 3.0), (5.0, 6.0)], [(1.0, 3.0)]) == pytest.approx((1.0, 2 / 3))
    assert overlap_precision_recall([], []) == (1.0, 1.0)  # a clean file with no claimed overlap
    assert overlap_precision_recall([], [(0.0, 1.0)]) == (0.0, 1.0)
    assert overlap_precision_recall([(0.0, 1.0)], []) == (1.0, 0.0)


# --- the dialogs ---------------------------------------------------------------------------------------------


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def _pitch(x: np.ndarray) -> float:
    """Median F0 (Hz) of the loud 40 ms frames, by autocorrelation: enough to tell the voices apart."""
    frame, lo, hi, found = int(0.04 * SR), SR // 400, SR // 60, []
    for i in range(0, len(x) - frame, frame // 2):
        w = x[i:i + frame] - x[i:i + frame].mean()
        if _rms(w) < 0.05:
            continue
        ac = np.correlate(w, w, "full")[frame - 1:]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.5 * ac[0]:
            found.append(SR / lag)
    return float(np.median(found))


@pytest.mark.parametrize(("speakers", "seed"), [(2, 8), (3, 0), (3, 6)])
def test_dialog_file_and_turns_match(tmp_path: Path, speakers: int, seed: int) -> None:
    d = build_dialog(tmp_path / "d.wav", speakers=speakers, seconds=20.0, seed=seed)
    audio = load_audio(str(d.path))  # the app's own decoder reads it
    assert len(audio) / SAMPLE_RATE == pytest.approx(d.duration, abs=1e-3)
    assert abs(d.duration - 20.0) <= TURN_MAX
    assert d.speakers == [chr(ord("A") + i) for i in range(speakers)]
    assert not d.overlaps
    raw = d.samples()
    assert np.abs(raw).max() <= PEAK + 1e-4
    for turn in d.turns:
        assert 0.0 < turn.start < turn.end < d.duration
        assert TURN_MIN <= turn.end - turn.start <= TURN_MAX
        assert turn.text
        # Exact references: sound right at both ends of the turn, silence just outside it.
        first, last = round(turn.start * SR), round(turn.end * SR)
        assert np.abs(raw[first:first + 160]).max() > 0.005 and np.abs(raw[last - 160:last]).max() > 0.005
        assert np.abs(raw[first - 160:first]).max() < 0.01 and np.abs(raw[last:last + 160]).max() < 0.01
    for before, after in pairwise(d.turns):
        gap = after.start - before.end
        low, high = SAME_SPEAKER_PAUSE if after.speaker == before.speaker else CHANGE_GAP
        assert low - 0.01 <= gap <= high + 0.01
        assert _rms(raw[round(before.end * SR) + 80:round(after.start * SR) - 80]) < 1e-3


def test_a_speaker_sometimes_keeps_the_floor_after_a_pause(tmp_path: Path) -> None:
    d = build_dialog(tmp_path / "d.wav", speakers=2, seconds=20.0, seed=8)
    assert [t.speaker for t in d.turns] == ["A", "A", "B"]
    assert SAME_SPEAKER_PAUSE[0] <= d.turns[1].start - d.turns[0].end <= SAME_SPEAKER_PAUSE[1]


def test_dialogs_are_deterministic_per_seed(tmp_path: Path) -> None:
    one = build_dialog(tmp_path / "1.wav", speakers=3, seconds=15.0, seed=3)
    two = build_dialog(tmp_path / "2.wav", speakers=3, seconds=15.0, seed=3)
    other = build_dialog(tmp_path / "3.wav", speakers=3, seconds=15.0, seed=4)
    assert one.turns == two.turns
    assert Path(one.path).read_bytes() == Path(two.path).read_bytes()
    assert other.turns != one.turns


def test_voices_differ() -> None:
    text = "the new library opened last summer with a large reading room and a small cafe"
    pitches = sorted(_pitch(speak(text, voice)) for voice in VOICES)
    assert all(high / low > 1.15 for low, high in pairwise(pitches)), pitches


def test_overlap_dialog_mixes_turns_and_lists_the_regions(tmp_path: Path) -> None:
    d = build_dialog(tmp_path / "d.wav", speakers=3, seconds=20.0, seed=0, overlap=True)
    assert d.overlaps
    audio = d.samples()
    assert np.abs(audio).max() <= PEAK + 1e-4  # scaled, not clipped
    for start, end in d.overlaps:
        both = [t for t in d.turns if t.start <= start and end <= t.end]
        assert len(both) == 2 and both[0].speaker != both[1].speaker
        assert OVERLAP[0] - 0.01 <= end - start <= OVERLAP[1] + 0.01
        assert _rms(audio[round(start * SR):round(end * SR)]) > 0.02
    # The listed regions are exactly where two turns intersect.
    pairs = [(max(a.start, b.start), min(a.end, b.end)) for i, a in enumerate(d.turns) for b in d.turns[i + 1:]]
    assert overlap_precision_recall(d.overlaps, [(s, e) for s, e in pairs if s < e], step=0.001) == (1.0, 1.0)


def test_overlap_regions() -> None:
    turns = [Turn("A", 0.0, 5.0), Turn("B", 4.0, 8.0), Turn("C", 7.5, 9.0), Turn("A", 10.0, 11.0)]
    assert overlap_regions(turns) == [(4.0, 5.0), (7.5, 8.0)]
    assert overlap_regions([Turn("A", 0.0, 1.0), Turn("B", 1.0, 2.0)]) == []  # touching is not overlapping
