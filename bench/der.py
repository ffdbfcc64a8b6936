"""Frame-based diarization error rate (NIST style), with the optimal one-to-one speaker mapping.

No scorer ships with the project's dependencies (pyannote.metrics would pull pyannote.core and more), and a frame
scorer is short enough to check by hand: see tests/test_dialogs.py.

Turns are (start, end, speaker) tuples or objects with .start, .end and .speaker. Frames are `step` seconds; a frame
belongs to a turn when its centre lies in [start, end). Per scored frame, with n_ref reference and n_hyp hypothesis
speakers active: missed speech is max(0, n_ref - n_hyp), false alarm max(0, n_hyp - n_ref), confusion
min(n_ref, n_hyp) - n_correct, where n_correct counts reference speakers whose mapped hypothesis speaker is active.
The mapping maximises the total matched time (`scipy.optimize.linear_sum_assignment`). A collar removes
±collar seconds around every reference turn's start and end from scoring.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment


@dataclass(frozen=True)
class DerResult:
    """Seconds of each error kind over `total` seconds of scored reference speech (overlap counted per speaker).

    `mapping` maps hypothesis speakers to the reference speakers they were matched with; unmatched ones are absent.
    """

    miss: float
    false_alarm: float
    confusion: float
    total: float
    mapping: dict[str, str] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """(miss + false alarm + confusion) / total; 0 when both are empty, inf for speech found where none is."""
        errors = self.miss + self.false_alarm + self.confusion
        if self.total == 0:
            return 0.0 if errors == 0 else float("inf")
        return errors / self.total


def _turns(turns: Iterable[Any]) -> list[tuple[float, float, str]]:
    out = []
    for t in turns:
        start, end, speaker = (t.start, t.end, t.speaker) if hasattr(t, "start") else t
        out.append((float(start), float(end), str(speaker)))
    return out


def _frame(t: float, step: float) -> int:
    """The first frame whose centre is at or after `t` (frame i's centre is (i + 0.5) * step)."""
    return max(0, int(np.ceil(t / step - 0.5 - 1e-9)))


def _activity(turns: list[tuple[float, float, str]], n_frames: int, step: float) -> tuple[list[str], np.ndarray]:
    """Speakers (sorted) and a frames × speakers boolean matrix of who is active."""
    speakers = sorted({s for _, _, s in turns})
    active = np.zeros((n_frames, len(speakers)), dtype=bool)
    for start, end, speaker in turns:
        active[_frame(start, step):_frame(end, step), speakers.index(speaker)] = True
    return speakers, active


def _regions_mask(regions: Iterable[tuple[float, float]], n_frames: int, step: float) -> np.ndarray:
    mask = np.zeros(n_frames, dtype=bool)
    for start, end in regions:
        mask[_frame(start, step):_frame(end, step)] = True
    return mask


def der(reference: Iterable[Any], hypothesis: Iterable[Any], *, collar: float = 0.0, step: float = 0.01) -> DerResult:
    """Score `hypothesis` against `reference` (see the module's docstring for the definitions)."""
    ref, hyp = _turns(reference), _turns(hypothesis)
    n_frames = _frame(max([e for _, e, _ in ref + hyp], default=0.0), step) + 1
    ref_speakers, r = _activity(ref, n_frames, step)
    hyp_speakers, h = _activity(hyp, n_frames, step)
    scored = ~_regions_mask([(b - collar, b + collar) for s, e, _ in ref for b in (s, e)], n_frames, step) \
        if collar > 0 else np.ones(n_frames, dtype=bool)
    r, h = r[scored], h[scored]
    n_ref, n_hyp = r.sum(axis=1), h.sum(axis=1)
    matched = r.T.astype(np.int64) @ h.astype(np.int64)  # frames where reference i and hypothesis j both speak
    rows, cols = linear_sum_assignment(matched, maximize=True) if matched.size else ([], [])
    correct = int(sum(matched[i, j] for i, j in zip(rows, cols)))
    mapping = {hyp_speakers[j]: ref_speakers[i] for i, j in zip(rows, cols) if matched[i, j] > 0}
    return DerResult(
        miss=float(np.maximum(n_ref - n_hyp, 0).sum()) * step,
        false_alarm=float(np.maximum(n_hyp - n_ref, 0).sum()) * step,
        confusion=float(np.minimum(n_ref, n_hyp).sum() - correct) * step,
        total=float(n_ref.sum()) * step,
        mapping=mapping,
    )


def overlap_precision_recall(reference_regions: Sequence[tuple[float, float]],
                             hypothesis_regions: Sequence[tuple[float, float]],
                             step: float = 0.01) -> tuple[float, float]:
    """Frame precision and recall of overlap regions (lists of (start, end)).

    Precision is 1.0 when nothing is claimed (no false overlap) and recall 1.0 when there is nothing to find, so a
    clean file with no claimed overlap scores (1.0, 1.0)."""
    end = max([e for _, e in list(reference_regions) + list(hypothesis_regions)], default=0.0)
    n_frames = _frame(end, step) + 1
    ref = _regions_mask(reference_regions, n_frames, step)
    hyp = _regions_mask(hypothesis_regions, n_frames, step)
    hits = int((ref & hyp).sum())
    precision = hits / int(hyp.sum()) if hyp.any() else 1.0
    recall = hits / int(ref.sum()) if ref.any() else 1.0
    return precision, recall
