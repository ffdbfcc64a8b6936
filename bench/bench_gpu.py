"""GPU benchmark: the paper's Table 2 for the transformers engine (issue 11, item 6).

The Qwen3-ASR report (arXiv 2601.21337, Table 2; ../shared/reference/figures.md) serves ~2-minute clips with vLLM in
bf16 at rising concurrency. This runs the same load through this project's own path, on real-size random weights
(`tests/checkpoints.py`; random weights do the same work as trained ones when the number of new tokens is fixed), in
bf16 on CUDA:

- ASR (0.6B; 1.7B with `--sizes 0.6b,1.7b`): 120 s clips, exactly `--tokens` new tokens per request (min = max;
  400 by default, what two minutes of speech take at 3-4 tokens a second), at concurrency 1, 8, 32 and 128. Each
  level releases that many client threads at once, each calling `run_asr` (at concurrency 1, three requests one after
  another), so the scheduler batches them; the batch size is raised to the largest level. Each level runs with
  compile off, then on (`QASR_COMPILE`, which `inference._cache_options` reads at each call).
- The aligner at concurrency 1 and 8, on 60 s clips with 150 one-letter words (the test tokenizer is byte-level, so
  one-letter words give about the token count real words give with the real tokenizer). It runs first: it takes
  seconds, so a deadline cuts the ASR's largest levels rather than it.

Per level: time to first token (average and p95), RTF (average request latency over clip length, the paper's
definition), seconds of audio per second (all audio over the wall time), milliseconds per decoding step (the issue's
target: a 0.6B bf16 step at batch 1 in 10 ms or less on the H200), `generate` calls, peak GPU memory. A request's
times come from its `TranscriptionWatch` (`TimedWatch`): the first decoding step is timed after a device sync, so it
is when the first token exists, and it includes the batching window, the queue, the features and the prefill. Before
each timed level a warm-up wave of the same shape stops after `WARMUP_STEPS` steps, so compilation, CUDA-graph
capture and new kernel plans stay out of the figures (their cost is recorded as `warmup_s`); the aligner's warm-up
is a whole wave.

The JSON (`--out`) is rewritten after every level, so a run stopped at its time limit keeps what it measured;
`--deadline` skips the levels that would start later than that many seconds after the process started.

    python bench/bench_gpu.py run --out bench_gpu.json [--sizes 0.6b,1.7b] [--tokens 400] [--deadline 390]
    python bench/bench_gpu.py run --smoke --out /tmp/bench_gpu_smoke.json   # the same code on the CPU, < 1 min
    python bench/bench_gpu.py table bench_gpu.json                          # the table again, from a result file
    bench/gpu_run.sh                                                        # the prepared device run (its header)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

#: `--deadline` counts from here, before the heavy imports, as the device script's time limit does.
PROCESS_STARTED = time.perf_counter()
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from qasr_space.errors import Cancelled  # noqa: E402
from qasr_space.inference import run_aligner, run_asr  # noqa: E402
from qasr_space.models import LoadedModel, ModelManager  # noqa: E402
from qasr_space.progress import TranscriptionWatch  # noqa: E402
from qasr_space.settings import Settings  # noqa: E402
from tests.checkpoints import build_random, tone_clip  # noqa: E402

#: Table 2 of the report (vLLM 0.14, bf16, CUDA graphs): RTF, seconds of audio per second, first token avg / p95 ms.
PAPER = {
    ("0.6B", 1): (0.00923, 108, 92, 105),
    ("0.6B", 8): (0.01600, 500, 228, 417),
    ("0.6B", 128): (0.064, 2000, 3200, 6200),
    ("1.7B", 1): (0.01482, 67, 102, 113),
    ("1.7B", 128): (0.105, 1219, 3400, 6200),
    ("aligner", 1): (0.00889, 112, None, None),
    ("aligner", 8): (0.00832, 962, None, None),
}
#: The issue's goals for the transformers engine on the H200, printed under the table.
GOALS = ("0.6B decode step at batch 1 <= 10 ms; RTF at concurrency 1 <= 0.016 (5x today's); "
         "within 2x of the paper at concurrency 8 and 32")
ASR_NAMES = {"0.6b": "0.6B", "1.7b": "1.7B"}
ALIGNER_DIR = "Qwen3-ForcedAligner-0.6B-hf"
#: Requests per level at least (each client makes several when there are fewer clients), so that concurrency 1 has
#: an average and a p95 over more than one request.
MIN_REQUESTS = 3
#: Decoding steps of a warm-up request: the compiled step's first run, CUDA-graph capture, then a replay.
WARMUP_STEPS = 4
#: Distinct clips, one per tone band of `tone_clip`; requests cycle through them (random weights do not care).
DISTINCT_CLIPS = 8
ALIGNER_WORDS_PER_SECOND = 2.5


@dataclass(frozen=True)
class Shape:
    """What one run measures."""

    sizes: tuple[str, ...]
    clip_seconds: float
    tokens: int
    levels: tuple[int, ...]
    aligner_seconds: float
    aligner_levels: tuple[int, ...]


FULL = Shape(("0.6b",), 120.0, 400, (1, 8, 32, 128), 60.0, (1, 8))
SMOKE = Shape(("0.6b",), 4.0, 8, (1, 2), 3.0, (1, 2))


@dataclass(frozen=True)
class Sample:
    """One request's times, in seconds from the client's call."""

    latency: float
    first_token: float | None = None
    batch_started: float | None = None
    ms_per_step: float | None = None


class TimedWatch(TranscriptionWatch):
    """A request's watch that notes when its `generate` began, its first token (after a device sync, so that the time
    is when the token exists rather than when its kernels were queued), and its decoding steps. `generate` waits for
    every step's tokens before the next, so from step 2 on the steps' spacing is the decoding step's time. With
    `stop_after`, the request cancels itself after that many steps (a warm-up)."""

    def __init__(self, device: torch.device, stop_after: int | None = None):
        super().__init__()
        self.device, self.stop_after = device, stop_after
        self.submitted = time.perf_counter()
        self.batch_started: float | None = None
        self.first_token: float | None = None
        self.second_step: float | None = None
        self.last_step: float | None = None
        self.steps = 0

    def decoding_started(self, clip_seconds: list[float], budget: int) -> None:
        self.batch_started = time.perf_counter()
        super().decoding_started(clip_seconds, budget)

    def decoding_step(self, step: int) -> None:
        if step == 1 and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        if step == 1:
            self.first_token = now
        elif step == 2:
            self.second_step = now
        self.last_step, self.steps = now, step
        if self.stop_after is not None and step >= self.stop_after:
            self.cancel()
        super().decoding_step(step)

    def sample(self) -> Sample:
        """This request's times, once `run_asr` has returned."""
        done = time.perf_counter()
        per_step = None
        if self.second_step is not None and self.steps > 2:
            per_step = (self.last_step - self.second_step) / (self.steps - 2) * 1000
        return Sample(latency=done - self.submitted,
                      first_token=None if self.first_token is None else self.first_token - self.submitted,
                      batch_started=None if self.batch_started is None else self.batch_started - self.submitted,
                      ms_per_step=per_step)


def wave(request: Callable[[int], Sample], concurrency: int, rounds: int) -> tuple[list[Sample], float]:
    """`concurrency` client threads released at once, client i making `rounds` calls of `request(i)` one after
    another; every sample, and the wall time from the release to the last answer."""
    released: list[float] = []
    barrier = threading.Barrier(concurrency, action=lambda: released.append(time.perf_counter()))

    def client(index: int) -> list[Sample]:
        barrier.wait()
        return [request(index) for _ in range(rounds)]

    with ThreadPoolExecutor(concurrency) as pool:
        per_client = list(pool.map(client, range(concurrency)))
    return [sample for samples in per_client for sample in samples], time.perf_counter() - released[0]


def asr_request(loaded: LoadedModel, clip: np.ndarray, tokens: int, stop_after: int | None = None) -> Sample:
    """One `run_asr` call of exactly `tokens` new tokens (or a warm-up that stops after `stop_after` steps)."""
    watch = TimedWatch(loaded.device, stop_after)
    try:
        run_asr(loaded, [clip], [None], [None], max_new_tokens=tokens, min_new_tokens=tokens, watch=watch)
    except Cancelled:
        if stop_after is None:
            raise
    return watch.sample()


def aligner_request(loaded: LoadedModel, clip: np.ndarray, text: str) -> Sample:
    started = time.perf_counter()
    run_aligner(loaded, [clip], [text], ["English"])
    return Sample(latency=time.perf_counter() - started)


def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


def summary(samples: list[Sample], wall: float, clip_seconds: float) -> dict:
    """The level's figures, as the paper reports them (RTF = average latency / clip length)."""
    latency = statistics.fmean(s.latency for s in samples)
    figures = {"requests": len(samples), "wall_s": round(wall, 3), "latency_avg_s": round(latency, 4),
               "latency_p95_s": round(p95([s.latency for s in samples]), 4),
               "rtf": round(latency / clip_seconds, 6),
               "audio_s_per_s": round(len(samples) * clip_seconds / wall, 2)}
    first = [s.first_token for s in samples if s.first_token is not None]
    if first:
        figures.update(ttft_avg_ms=round(statistics.fmean(first) * 1000, 1), ttft_p95_ms=round(p95(first) * 1000, 1),
                       queued_avg_ms=round(statistics.fmean(s.batch_started for s in samples) * 1000, 1))
    steps = [s.ms_per_step for s in samples if s.ms_per_step is not None]
    if steps:
        figures["decode_ms_per_step"] = round(statistics.median(steps), 3)
    return figures


class Bench:
    """One run: the manager, the clock against `--deadline`, and the results written after every level."""

    def __init__(self, shape: Shape, model_dir: Path, out: Path, deadline: float | None, smoke: bool):
        self.shape, self.out, self.deadline, self.smoke = shape, out, deadline, smoke
        batch = max(shape.levels + shape.aligner_levels)
        self.manager = ModelManager(Settings(model_dir=str(model_dir), batch_size=batch))
        self.results: dict = {"meta": self._meta(), "paper": {f"{m} @{c}": v for (m, c), v in PAPER.items()},
                              "asr": [], "aligner": [], "skipped": []}

    def _meta(self) -> dict:
        device = self.manager.device
        return {
            "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"), "argv": sys.argv[1:],
            "smoke": self.smoke, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "dtype": str(self.manager.dtype), "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "batch_size": self.manager.settings.batch_size,
            "batch_wait_ms": self.manager.settings.batch_wait_ms, "clip_seconds": self.shape.clip_seconds,
            "new_tokens": self.shape.tokens, "aligner_clip_seconds": self.shape.aligner_seconds,
        }

    def time_left(self, what: str) -> bool:
        """Whether `what` may start; if not, it is listed as skipped."""
        if self.deadline is None or time.perf_counter() - PROCESS_STARTED < self.deadline:
            return True
        self.results["skipped"].append(what)
        print(f"skipped (past the {self.deadline:g} s deadline): {what}", flush=True)
        return False

    def save(self) -> None:
        self.results["meta"]["elapsed_s"] = round(time.perf_counter() - PROCESS_STARTED, 1)
        partial = self.out.with_name(self.out.name + ".partial")
        partial.write_text(json.dumps(self.results, indent=1))
        os.replace(partial, self.out)

    def level(self, kind: str, loaded: LoadedModel, request: Callable[[int, int | None], Sample],
              concurrency: int, clip_seconds: float, extra: dict) -> None:
        """`measure` one level and record it under `kind` with `extra` (model, compile). A level that fails (out of
        memory, a compile error) is recorded with its error, and the next one runs."""
        try:
            row = {**extra, "concurrency": concurrency,
                   **self.measure(kind, loaded, request, concurrency, clip_seconds)}
        except Exception as exc:  # recorded: one level's failure must not cost the device run the others
            row = {**extra, "concurrency": concurrency, "error": f"{type(exc).__name__}: {exc}"[:500]}
            if loaded.device.type == "cuda":
                torch.cuda.empty_cache()
        self.results[kind].append(row)
        self.save()
        print(format_row(kind, row), flush=True)

    def measure(self, kind: str, loaded: LoadedModel, request: Callable[[int, int | None], Sample],
                concurrency: int, clip_seconds: float) -> dict:
        """A warm-up wave, then the timed one; the level's figures."""
        warm = time.perf_counter()
        wave(lambda i: request(i, WARMUP_STEPS), concurrency, 1)
        warmup_s = time.perf_counter() - warm
        counter = self.manager.batch_stats()[kind]["model_calls"]
        if loaded.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(loaded.device)
        samples, wall = wave(lambda i: request(i, None), concurrency, max(1, -(-MIN_REQUESTS // concurrency)))
        figures = {**summary(samples, wall, clip_seconds),
                   "model_calls": self.manager.batch_stats()[kind]["model_calls"] - counter,
                   "warmup_s": round(warmup_s, 2)}
        if loaded.device.type == "cuda":
            figures["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated(loaded.device) / 2**30, 2)
        return figures

    def asr(self, size: str) -> None:
        """Every ASR level of one model size, compile off then on."""
        name = ASR_NAMES[size]
        if not self.time_left(f"ASR {name}"):
            return
        loaded = self.manager.asr(name)
        clips = [tone_clip(band, self.shape.clip_seconds) for band in range(DISTINCT_CLIPS)]
        tokens = self.shape.tokens

        def request(index: int, stop_after: int | None) -> Sample:
            return asr_request(loaded, clips[index % len(clips)], tokens, stop_after)

        for concurrency in self.shape.levels:
            for compiled in (False, True):
                if not self.time_left(f"ASR {name} compile {'on' if compiled else 'off'} @{concurrency}"):
                    continue
                os.environ["QASR_COMPILE"] = "1" if compiled else "0"
                self.level("asr", loaded, request, concurrency, self.shape.clip_seconds,
                           {"model": name, "compile": compiled})
        os.environ.pop("QASR_COMPILE", None)
        self.results.setdefault("compile_counters", {})[name] = compile_counters()
        self.save()

    def aligner(self) -> None:
        """Every aligner level."""
        if not self.time_left("aligner"):
            return
        loaded = self.manager.aligner()
        seconds = self.shape.aligner_seconds
        clips = [tone_clip(band, seconds) for band in range(DISTINCT_CLIPS)]
        words = int(seconds * ALIGNER_WORDS_PER_SECOND)
        text = " ".join(chr(ord("a") + i % 26) for i in range(words))

        def request(index: int, stop_after: int | None) -> Sample:
            return aligner_request(loaded, clips[index % len(clips)], text)

        for concurrency in self.shape.aligner_levels:
            if self.time_left(f"aligner @{concurrency}"):
                self.level("aligner", loaded, request, concurrency, seconds, {"model": "aligner", "words": words})


def compile_counters() -> dict:
    """What dynamo compiled so far in this process: graphs, and graph breaks (expected: none)."""
    from torch._dynamo.utils import counters

    return {"unique_graphs": counters["stats"]["unique_graphs"],
            "graph_breaks": sum(counters["graph_break"].values())}


def build_checkpoints(model_dir: Path, sizes: tuple[str, ...], smoke: bool) -> None:
    """The ASR sizes and the aligner under the names the manager resolves, random, at their real sizes (tiny ones
    for `--smoke`); checkpoints already there are kept."""
    wanted = {f"Qwen3-ASR-{ASR_NAMES[size]}-hf": ("asr", size) for size in sizes}
    wanted[ALIGNER_DIR] = ("aligner", "aligner")
    for name, (kind, size) in wanted.items():
        if not (model_dir / name / "model.safetensors").exists():
            started = time.perf_counter()
            build_random(str(model_dir / name), kind, "tiny" if smoke else size)
            print(f"built {name} ({'tiny' if smoke else size}) in {time.perf_counter() - started:.1f} s", flush=True)


def run(out: Path, model_dir: Path | None, sizes: tuple[str, ...] | None, tokens: int | None,
        deadline: float | None, smoke: bool) -> dict:
    """Build what is missing, measure every level, print the table; returns the results (also in `out`)."""
    shape = SMOKE if smoke else FULL
    shape = replace(shape, sizes=sizes or shape.sizes, tokens=tokens or shape.tokens)
    if smoke:
        torch.set_num_threads(1)  # a check that the code runs, on a shared 2-core box
    elif not torch.cuda.is_available():
        sys.exit("the full run needs CUDA; on the CPU, use --smoke")
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = model_dir or (Path(scratch) if smoke else ROOT / "bench" / ".cache")
        started = time.perf_counter()
        build_checkpoints(model_dir, shape.sizes, smoke)
        bench = Bench(shape, model_dir, out, deadline, smoke)
        bench.results["meta"]["build_s"] = round(time.perf_counter() - started, 1)
        bench.aligner()
        for size in shape.sizes:
            bench.asr(size)
        bench.save()
    print_table(bench.results)
    return bench.results


def format_row(kind: str, row: dict) -> str:
    if "error" in row:
        label = "aligner" if kind == "aligner" else f"{row['model']:<5} {'on' if row['compile'] else 'off':<8}"
        return f"{label:<14} @{row['concurrency']:<4} failed: {row['error']}"
    if kind == "aligner":
        return (f"aligner        @{row['concurrency']:<4} {row['requests']:>4} {row['model_calls']:>5}  "
                f"{'latency ' + format(row['latency_avg_s'] * 1000, '.0f') + ' ms':>19}  {row['rtf']:>8.5f} "
                f"{row['audio_s_per_s']:>9.1f}  {'':>8}  {row.get('peak_gpu_gb', ''):>6}  {row['warmup_s']:>6.1f}")
    ttft = f"{row['ttft_avg_ms']:.0f} / {row['ttft_p95_ms']:.0f}"
    step = row.get("decode_ms_per_step")
    return (f"{row['model']:<5} {'on' if row['compile'] else 'off':<8} @{row['concurrency']:<4} {row['requests']:>4} "
            f"{row['model_calls']:>5}  {ttft:>19}  {row['rtf']:>8.5f} {row['audio_s_per_s']:>9.1f}  "
            f"{'' if step is None else format(step, '.2f'):>8}  {row.get('peak_gpu_gb', ''):>6}  "
            f"{row['warmup_s']:>6.1f}")


def print_table(results: dict) -> None:
    """The measured rows with the paper's beside them; `results` as `run` writes them."""
    meta = results["meta"]
    title = "SMOKE RUN (tiny models: not a result)" if meta["smoke"] else "GPU benchmark"
    if meta["device"] == "cpu":
        title += ", compile applies on CUDA only"
    print(f"\n{title}: {meta['device']}, "
          f"{meta['dtype']}, torch {meta['torch']}, transformers {meta['transformers']}, {meta['date_utc']} UTC; "
          f"ASR {meta['clip_seconds']:g} s clips, {meta['new_tokens']} new tokens each; aligner "
          f"{meta['aligner_clip_seconds']:g} s clips; batch up to {meta['batch_size']}, window "
          f"{meta['batch_wait_ms']:g} ms")
    print(f"{'model':<5} {'compile':<8} {'conc':<5} {'reqs':>4} {'calls':>5}  {'TTFT avg / p95 ms':>19}  "
          f"{'RTF':>8} {'audio s/s':>9}  {'ms/step':>8}  {'GPU GB':>6}  {'warm s':>6}")
    for kind in ("asr", "aligner"):
        for row in results[kind]:
            print(format_row(kind, row))
    print("paper (vLLM, Table 2):")
    for key, (rtf, speed, ttft, ttft95) in PAPER.items():
        first = "" if ttft is None else f"{ttft} / {ttft95}"
        print(f"{key[0]:<14} @{key[1]:<4} {'':>4} {'':>5}  {first:>19}  {rtf:>8.5f} {speed:>9.1f}")
    print(f"goals: {GOALS}")
    for name, counts in results.get("compile_counters", {}).items():
        print(f"compile, {name}: {counts['unique_graphs']} graphs, {counts['graph_breaks']} graph breaks")
    if results["skipped"]:
        print(f"skipped: {', '.join(results['skipped'])}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="measure, print the table, write the JSON")
    run_parser.add_argument("--out", type=Path, required=True, help="the JSON result file")
    run_parser.add_argument("--smoke", action="store_true", help="tiny models on the CPU: checks the code, < 1 min")
    run_parser.add_argument("--model-dir", type=Path, help="where the random checkpoints are built or found "
                                                          "(default bench/.cache; a temporary folder for --smoke)")
    run_parser.add_argument("--sizes", type=lambda text: tuple(text.split(",")), help="ASR sizes, e.g. 0.6b,1.7b")
    run_parser.add_argument("--tokens", type=int, help="new tokens per ASR request (default 400; 8 for --smoke)")
    run_parser.add_argument("--deadline", type=float, help="seconds after the start after which no level starts")
    table_parser = commands.add_parser("table", help="print the table of a result file")
    table_parser.add_argument("results", type=Path)
    args = parser.parse_args()
    if args.command == "table":
        print_table(json.loads(args.results.read_text()))
    else:
        unknown = set(args.sizes or ()) - set(ASR_NAMES)
        if unknown:
            parser.error(f"unknown sizes {sorted(unknown)}; choose from {sorted(ASR_NAMES)}")
        run(args.out, args.model_dir, args.sizes, args.tokens, args.deadline, args.smoke)
