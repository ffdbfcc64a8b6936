"""Benchmarks for the public API (issue: public API).

1. Throughput: 4 concurrent clients (threads calling the pipeline in-process) each send a 30 s clip with a fixed
   100 new tokens (min_new_tokens = max_new_tokens = 100), against the same 4 requests served one by one, on
   real-size random 0.6B weights, float32 on CPU. The scheduler decodes the concurrent ones as one batch; the
   figure is the ratio of the two throughputs (goal ≥ 2.0).
2. Joining: a short request (5 s clip, 20 new tokens) that arrives while a long one (the 30 s clip, 100 tokens)
   decodes, against each alone: per-step batching lets it join the running batch and return before the long one
   ends, where per-call batching made it wait for the long one's whole `generate`.
3. Round trip: `gradio_client` calling `/transcribe` on a `python app.py` server with the tiny scripted checkpoints,
   minus the same pipeline (`transcribe` on the same file) in-process: the API's own cost per call (goal ≤ 150 ms).
   A call is five HTTP requests (upload, join the queue, the event stream, two subtitle files), and `Client(url)`
   opens each on a new `httpx.Client`, which loads the CA bundle into a new SSL context even for http:// URLs. So the
   call is timed with `Client(url)`, with one SSL context shared by all requests (as the README shows), and as the
   same five requests over one keep-alive connection (the server's share); also a call with no model work (`/info`)
   and the cost of one `httpx.Client()`.

    python tests/checkpoints.py bench/.cache/Qwen3-ASR-0.6B-hf --real-size 0.6b   # once, ~2.4 GB of RAM
    python bench/bench_batching.py throughput [--repeats 1] [--clients 4]
    python bench/bench_batching.py joining [--repeats 2]
    python bench/bench_batching.py roundtrip [--repeats 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from qasr_space.models import ModelManager  # noqa: E402
from qasr_space.settings import Settings  # noqa: E402
from qasr_space.transcribe import iter_transcribe, transcribe  # noqa: E402
from tests.checkpoints import build_model_dir  # noqa: E402
from tests.media import tone, write_media  # noqa: E402

CLIENTS = 4
CLIP_SECONDS = 30.0
NEW_TOKENS = 100


def throughput(repeats: int, clients: int) -> None:
    model_dir = str(ROOT / "bench" / ".cache")
    if not (Path(model_dir) / "Qwen3-ASR-0.6B-hf" / "model.safetensors").exists():
        sys.exit("build the real-size checkpoint first (see the docstring)")
    manager = ModelManager(Settings(model_dir=model_dir, batch_size=clients))
    clips = [tone(CLIP_SECONDS, freq=160.0 + 30 * i) for i in range(clients)]

    def request(audio: np.ndarray) -> None:
        # Drained without `collect`: random weights pick ids past the small test tokenizer, which decode to "".
        list(iter_transcribe(audio, manager=manager, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS))

    def one_by_one() -> None:
        for audio in clips:
            request(audio)

    def concurrent() -> None:
        barrier = threading.Barrier(clients)

        def client(audio: np.ndarray) -> None:
            barrier.wait()
            request(audio)

        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(client, clips))

    request(clips[0])  # load and warm up
    times: dict[str, list[float]] = {"one by one": [], "concurrent": []}
    calls: dict[str, list[int]] = {"one by one": [], "concurrent": []}
    for _ in range(repeats):
        for name, fn in (("concurrent", concurrent), ("one by one", one_by_one)):
            before = manager.batch_stats()["asr"]["model_calls"]
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
            calls[name].append(manager.batch_stats()["asr"]["model_calls"] - before)
            print(f"  {name}: {times[name][-1]:.1f} s", flush=True)
    device = torch.cuda.get_device_name() if manager.device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {device}, {manager.dtype}; {clients} requests of a "
          f"{CLIP_SECONDS:.0f} s clip, {NEW_TOKENS} new tokens each; "
          f"batch window {manager.settings.batch_wait_ms:g} ms")
    for name in times:
        best = min(times[name])
        print(f"{name}: best {best:.1f} s ({clients / best * 60:.1f} requests/min), runs "
              f"{['%.1f' % t for t in times[name]]}, model calls per run {calls[name]}")
    print(f"throughput ratio concurrent / one by one: {min(times['one by one']) / min(times['concurrent']):.2f}")


def joining(repeats: int) -> None:
    """A short request (5 s clip, 20 new tokens) that arrives while a long one (30 s, 100 tokens) decodes: how long
    it waits for its result, against the same request alone; and what its company costs the long one."""
    from qasr_space.progress import TranscriptionWatch

    model_dir = str(ROOT / "bench" / ".cache")
    if not (Path(model_dir) / "Qwen3-ASR-0.6B-hf" / "model.safetensors").exists():
        sys.exit("build the real-size checkpoint first (see the docstring)")
    manager = ModelManager(Settings(model_dir=model_dir))
    long_clip, short_clip = tone(CLIP_SECONDS, freq=160.0), tone(5.0, freq=250.0)

    def request(clip: np.ndarray, tokens: int, watch: TranscriptionWatch | None = None) -> float:
        started = time.perf_counter()
        manager.engine.transcribe("0.6B", [clip], [None], [None], tokens, watch=watch, min_new_tokens=tokens)
        return time.perf_counter() - started

    request(short_clip, 2)  # load and warm up
    figures: dict[str, list[float]] = {"short alone": [], "long alone": [], "short joining": [], "long joined": []}
    for _ in range(repeats):
        figures["short alone"].append(request(short_clip, 20))
        figures["long alone"].append(request(long_clip, NEW_TOKENS))
        watch = TranscriptionWatch()
        with ThreadPoolExecutor(1) as pool:
            long_run = pool.submit(request, long_clip, NEW_TOKENS, watch)
            while watch.snapshot().tokens < 10:  # the long one is decoding
                time.sleep(0.01)
            figures["short joining"].append(request(short_clip, 20))
            figures["long joined"].append(long_run.result())
        print("  " + ", ".join(f"{name} {values[-1]:.1f} s" for name, values in figures.items()), flush=True)
    print(f"torch {torch.__version__}, CPU, {torch.get_num_threads()} threads, {manager.dtype}; a {CLIP_SECONDS:.0f} s "
          f"clip with {NEW_TOKENS} new tokens, joined after its 10th token by a 5 s clip with 20")
    best = {name: min(values) for name, values in figures.items()}
    print(", ".join(f"{name}: best {value:.1f} s" for name, value in best.items()))
    print(f"the short request waits {best['short joining'] / best['short alone']:.2f}x its time alone; the long one "
          f"takes {best['long joined'] / best['long alone']:.2f}x")


def roundtrip(repeats: int) -> None:
    import ssl

    import certifi
    import httpx
    from gradio_client import Client, handle_file

    from tests.browser import app_server

    with tempfile.TemporaryDirectory() as root:
        model_dir = build_model_dir(os.path.join(root, "models"))
        clip = str(write_media(os.path.join(root, "clip.wav"), tone(3.0), 16000, "wav"))
        manager = ModelManager(Settings(model_dir=model_dir))
        with app_server(model_dir) as url:
            default = Client(url, verbose=False)
            shared_ssl = Client(url, verbose=False, ssl_verify=ssl.create_default_context(cafile=certifi.where()))
            raw = _RawProtocol(httpx.Client(), url, default)
            runs = {
                "in-process transcribe": lambda: transcribe(clip, manager=manager),
                "gradio_client /transcribe, Client(url)": lambda: default.predict(
                    audio=handle_file(clip), api_name="/transcribe"),
                "gradio_client /transcribe, one shared SSL context": lambda: shared_ssl.predict(
                    audio=handle_file(clip), api_name="/transcribe"),
                "raw HTTP on one keep-alive connection, same 5 requests": lambda: raw.transcribe(clip),
                "gradio_client /info (no model work), Client(url)": lambda: default.predict(api_name="/info"),
                "gradio_client /info, one shared SSL context": lambda: shared_ssl.predict(api_name="/info"),
                "httpx.Client() with certificate verification (per request)": lambda: httpx.Client().close(),
            }
            for fn in runs.values():  # load and warm up on both sides
                fn()
            times: dict[str, list[float]] = {name: [] for name in runs}
            for _ in range(repeats):
                for name, fn in runs.items():
                    started = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, t in times.items():
        print(f"{name}: median {medians[name] * 1000:.0f} ms, min {min(t) * 1000:.0f} ms over {repeats}")
    pipeline = medians["in-process transcribe"]
    print("round-trip overhead (median call - median in-process):")
    for name in list(runs)[1:4]:
        print(f"  {name}: {(medians[name] - pipeline) * 1000:.0f} ms")


class _RawProtocol:
    """What `gradio_client` sends for one `/transcribe` call (upload, join the queue, read the event stream, fetch
    the two subtitle files), over one keep-alive connection: the server's own share of the round trip."""

    def __init__(self, http, url: str, client) -> None:
        self.http, self.url, self.calls = http, url, 0
        self.fn_index = next(d["id"] for d in client.config["dependencies"] if d.get("api_name") == "transcribe")

    def transcribe(self, path: str) -> dict:
        import json

        with open(path, "rb") as f:
            uploaded = self.http.post(f"{self.url}gradio_api/upload", files={"files": (os.path.basename(path), f)})
        file_data = {"path": uploaded.json()[0], "meta": {"_type": "gradio.FileData"}}
        self.calls += 1
        session = f"bench-raw-{self.calls}"
        self.http.post(f"{self.url}gradio_api/queue/join", json={
            "data": [file_data, "0.6B", "auto", "", False], "fn_index": self.fn_index, "session_hash": session,
            "event_data": None, "trigger_id": None}).raise_for_status()
        output = None
        with self.http.stream("GET", f"{self.url}gradio_api/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                message = json.loads(line[5:]) if line.startswith("data:") else {}
                if message.get("msg") == "process_completed":
                    output = message["output"]
                    break
        if output is None or not output.get("data"):
            raise RuntimeError(f"no result from the server: {output}")
        for file in output["data"][1:]:
            self.http.get(file["url"]).raise_for_status()
        return output["data"][0]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["throughput", "joining", "roundtrip"])
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--clients", type=int, default=CLIENTS, help="throughput: concurrent clients (default 4)")
    args = parser.parse_args()
    if args.what == "throughput":
        throughput(args.repeats or 1, args.clients)
    elif args.what == "joining":
        joining(args.repeats or 2)
    else:
        roundtrip(args.repeats or 20)
