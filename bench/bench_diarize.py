"""Benchmark for speaker diarization (issue 13): DER, speaker count, speed and memory on espeak-ng dialogs.

    python bench/bench_diarize.py run [--variants senko pipeline] [--dialogs 2x1 3x1 2x5 3x5 overlap] [--seed 0]
                                      [--threads N] [--repeats 3]
    python bench/bench_diarize.py overhead [--tokens 200] [--repeats 2]

Dialogs come from `tests/dialogs.py` (exact reference turns): 2 and 3 voices, 1 and 5 minutes, and a 3-voice 2-minute
dialog where about every third turn starts 1–2 s before the previous one ends. Variants:

- `senko`: senko alone, its `merged_segments`, called as in ../shared/reference/diarization-notes.md;
- `pipeline`: `qasr_space.diarize.diarize(audio)`, automatic speaker count; and from the same run
  `pipeline words`: the reference's words (each turn's text spread over its span by length) given speakers by
  `assign_speakers`, scored as one-word turns, so the figure is what word assignment keeps of the turns' DER.

Each (dialog, variant) runs in a fresh process (`measure`), so peak RSS is that of one diarizer and one dialog: the
model loaded, a warm-up call on the dialog's first 30 s, then `--repeats` timed calls on the whole dialog (best and
median reported; the turns scored are the last call's). DER is frame-based (bench/der.py, 10 ms frames, optimal
mapping) with no collar and with a 0.25 s collar. Goals: with the collar DER ≤ 1 % and the right count on every 2- and
3-voice dialog; with no collar DER ≤ 3 %; ≤ 3 s per minute of audio.

`--threads` sets torch's thread count (default: one per CPU). On a shared 2-core machine two threads are fragile: when
another process holds one core, every parallel op waits for the descheduled thread, and the same CAM++ call on a
64-clip batch took 2 s or 15 s; with one thread it took 3.1 s every time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.der import der, overlap_precision_recall  # noqa: E402
from tests.dialogs import SR, Turn, build_dialog, read_wav  # noqa: E402

#: name -> (speakers, seconds, overlap)
DIALOGS: dict[str, tuple[int, float, bool]] = {
    "2x1": (2, 60.0, False),
    "3x1": (3, 60.0, False),
    "2x5": (2, 300.0, False),
    "3x5": (3, 300.0, False),
    "overlap": (3, 120.0, True),
}
VARIANTS = ("senko", "pipeline")
WARMUP_SECONDS = 30.0
COLLAR = 0.25


def _senko(threads: int) -> Callable[[np.ndarray], dict[str, Any]]:
    import senko

    diarizer = senko.Diarizer(device="cpu", warmup=False, quiet=True)
    diarizer.logical_cores = threads  # senko sets torch's thread count to this on every call

    def run(audio: np.ndarray) -> dict[str, Any]:
        result = diarizer.diarize_samples(audio, sample_rate=SR)
        segments = result["merged_segments"] if result else []
        return {"turns": [(s["start"], s["end"], s["speaker"]) for s in segments]}

    return run


def _pipeline(reference: list[Turn]) -> Callable[[np.ndarray], dict[str, Any]]:
    from qasr_space import diarize

    def run(audio: np.ndarray) -> dict[str, Any]:
        result = diarize.diarize(audio)
        transcript = diarize.assign_speakers(_reference_transcript(reference, len(audio) / SR), result)
        return {"turns": [(t.start, t.end, t.speaker) for t in result.turns],
                "overlaps": [(o.start, o.end) for o in result.overlaps],
                "words": [(w.start, w.end, w.speaker) for w in transcript.words]}

    return run


def _reference_transcript(reference: list[Turn], duration: float) -> Any:
    """A transcript whose words tile the reference turns (each word's share of its turn in proportion to its length),
    as if an aligner had timed them perfectly: what the words' speakers then lose is the assignment's doing."""
    from qasr_space.results import Transcript, Word

    words = []
    for turn in reference:
        texts = turn.text.split()
        edges = np.cumsum([0] + [len(t) + 1 for t in texts]) / (sum(len(t) + 1 for t in texts))
        bounds = turn.start + edges * (turn.end - turn.start)
        words += [Word(f" {text}", float(a), float(b)) for text, a, b in zip(texts, bounds, bounds[1:])]
    words.sort(key=lambda w: w.start)
    return Transcript(language="English", text="".join(w.text for w in words).strip(), duration=duration, words=words)


def _cpu_seconds() -> float:
    """This process's CPU time, all threads: with one thread, what the call costs on a quiet core, however busy the
    machine (wall time then also counts waiting for a core)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(variant: str, dialog_json: str, out_json: str, threads: int, repeats: int) -> None:
    """One variant on one dialog, in this (fresh) process; writes the figures to `out_json`."""
    import torch

    torch.set_num_threads(threads)
    spec = json.loads(Path(dialog_json).read_text())
    reference = [Turn(**t) for t in spec["turns"]]
    audio = read_wav(spec["path"])
    started = time.perf_counter()
    run = _senko(threads) if variant == "senko" else _pipeline(reference)
    run(audio[:round(WARMUP_SECONDS * SR)])
    cold = time.perf_counter() - started
    times, cpu_times = [], []
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), _cpu_seconds()
        result = run(audio)
        times.append(time.perf_counter() - started)
        cpu_times.append(_cpu_seconds() - cpu_started)
    result.update(cold_s=cold, times=times, cpu_times=cpu_times,
                  peak_rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    Path(out_json).write_text(json.dumps(result))


def _row(dialog: str, variant: str, true_count: int, turns: list, spec: dict, measured: dict, timed: bool = True) -> str:
    plain, collared = der(spec["turns_tuples"], turns), der(spec["turns_tuples"], turns, collar=COLLAR)
    found = len({s for _, _, s in turns})
    claimed = measured.get("overlaps")
    if not timed or claimed is None:
        overlap = ""  # the same run's, or a variant that finds none
    elif spec["overlaps"]:
        overlap = "{:.2f} / {:.2f}".format(*overlap_precision_recall(spec["overlaps"], claimed))
    else:
        overlap = f"{sum(e - s for s, e in claimed):.2f} s claimed, none true"
    minutes = spec["duration"] / 60
    wall, cpu = measured["times"], measured["cpu_times"]
    cost = (f"{min(wall) / minutes:.2f} / {statistics.median(wall) / minutes:.2f} / {min(cpu) / minutes:.2f} s | "
            f"{measured['cold_s']:.1f} s | {measured['peak_rss'] / 2**30:.2f} GB" if timed else "(same run) | | ")
    return (f"| {dialog} | {variant} | {found} of {true_count} | {100 * plain.rate:.2f} % "
            f"({100 * plain.miss / plain.total:.2f} / {100 * plain.false_alarm / plain.total:.2f} / "
            f"{100 * plain.confusion / plain.total:.2f}) | {100 * collared.rate:.2f} % | {cost} | {overlap} |")


def run(variants: list[str], dialogs: list[str], seed: int, threads: int, repeats: int) -> None:
    print(f"seed {seed}; {os.cpu_count()} CPUs; {threads} torch threads; {repeats} timed calls; "
          f"load {os.getloadavg()[0]:.1f}")
    print("| dialog | variant | speakers | DER, no collar (miss / FA / confusion) | DER, 0.25 s collar | "
          "s per min of audio: best / median wall, best CPU | cold start + 30 s warm-up | peak RSS | "
          "overlap P / R |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in dialogs:
            speakers, seconds, overlap = DIALOGS[name]
            d = build_dialog(Path(tmp) / f"{name}.wav", speakers=speakers, seconds=seconds, seed=seed, overlap=overlap)
            spec = {"path": d.path, "turns": [asdict(t) for t in d.turns]}
            dialog_json = Path(tmp) / f"{name}.json"
            dialog_json.write_text(json.dumps(spec))
            spec.update(duration=d.duration, overlaps=d.overlaps, turns_tuples=[(t.start, t.end, t.speaker)
                                                                                for t in d.turns])
            label = f"{speakers} voices, {d.duration / 60:.1f} min" + (f", {len(d.overlaps)} overlaps" if overlap else "")
            for variant in variants:
                out_json = Path(tmp) / f"{name}-{variant}.out.json"
                subprocess.run([sys.executable, __file__, "measure", variant, str(dialog_json), str(out_json),
                                "--threads", str(threads), "--repeats", str(repeats)], check=True,
                               env=dict(os.environ, OMP_NUM_THREADS=str(threads)))  # for every thread, not just main
                measured = json.loads(out_json.read_text())
                print(_row(label, variant, speakers, measured["turns"], spec, measured), flush=True)
                if "words" in measured:
                    print(_row(label, f"{variant} words", speakers, measured["words"], spec, measured,
                                     timed=False), flush=True)
    print(f"load {os.getloadavg()[0]:.1f}")


def overhead(tokens: int, repeats: int) -> None:
    """What speakers add to a transcription on this CPU, in one process: the 2-voice 1-minute dialog through the
    real-size 0.6B (random weights, float32, exactly `tokens` new tokens, about a minute of speech), then the speakers
    of the same audio, as the page runs them (`with_speakers` after the chunks); best of `repeats` for each."""
    from qasr_space.diarize import SpeakerCount
    from qasr_space.models import ModelManager
    from qasr_space.settings import Settings
    from qasr_space.transcribe import collect, iter_transcribe, with_speakers
    from tests.checkpoints import build_random

    with tempfile.TemporaryDirectory() as folder:
        build_random(os.path.join(folder, "Qwen3-ASR-0.6B-hf"), "asr", "0.6b")
        dialog = build_dialog(os.path.join(folder, "dialog.wav"), speakers=2, seconds=60.0, seed=0)
        manager = ModelManager(Settings(model_dir=folder))
        audio = dialog.samples()

        def transcript(clip: np.ndarray) -> Any:
            chunks = iter_transcribe(clip, manager=manager, model="0.6B", language="English",
                                     max_new_tokens=tokens, min_new_tokens=tokens)
            return collect(chunks, duration=len(clip) / SR, model_name="0.6B", forced="English")

        with_speakers(transcript(audio[:SR * 5]), audio[:SR * 5], SpeakerCount())  # load both, warm up
        asr, speakers = [], []
        for _ in range(repeats):
            started = time.perf_counter()
            result = transcript(audio)
            asr.append(time.perf_counter() - started)
            started = time.perf_counter()
            found = with_speakers(result, audio, SpeakerCount())
            speakers.append(time.perf_counter() - started)
    print(f"{dialog.duration:.1f} s dialog, {tokens} tokens: transcription {min(asr):.2f} s, speakers {min(speakers):.2f} s "
          f"({len(found.speakers)} found), best of {repeats} (all: {asr}, {speakers}); speakers add "
          f"{min(speakers) / min(asr):.1%}")
    print(f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="score every variant on every dialog")
    run_parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    run_parser.add_argument("--dialogs", nargs="+", choices=list(DIALOGS), default=list(DIALOGS))
    run_parser.add_argument("--seed", type=int, default=0)
    measure_parser = commands.add_parser("measure", help="one variant on one dialog, in a fresh process (internal)")
    measure_parser.add_argument("variant", choices=VARIANTS)
    measure_parser.add_argument("dialog_json")
    measure_parser.add_argument("out_json")
    for sub in (run_parser, measure_parser):
        sub.add_argument("--threads", type=int, default=os.cpu_count())
        sub.add_argument("--repeats", type=int, default=3)
    overhead_parser = commands.add_parser("overhead", help="what speakers add to a real-size 0.6B transcription")
    overhead_parser.add_argument("--tokens", type=int, default=200)
    overhead_parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.command == "overhead":
        overhead(args.tokens, args.repeats)
    elif args.command == "run":
        run(args.variants, args.dialogs, args.seed, args.threads, args.repeats)
    else:
        measure(args.variant, args.dialog_json, args.out_json, args.threads, args.repeats)
