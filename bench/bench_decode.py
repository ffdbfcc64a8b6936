"""Benchmark: how long `load_audio` takes to decode and resample one hour of MP3.

Run from the repository root:  python bench/bench_decode.py [--cache-dir DIR] [--repeats N]

The test file (1 h, 44.1 kHz stereo, 128 kbit/s, like a typical podcast) is generated once with PyAV and
cached, because encoding it takes longer than decoding it. Prints the best of N timings and peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qasr_space.audio import SAMPLE_RATE, load_audio  # noqa: E402

SECONDS = 3600
RATE = 44100
BLOCK_SECONDS = 10


def make_mp3(path: Path) -> None:
    """Encode a speech-like hour block by block, so generating it never holds the hour in memory."""
    tmp = path.with_suffix(".partial.mp3")
    t = np.arange(BLOCK_SECONDS * RATE, dtype=np.float64) / RATE
    with av.open(str(tmp), "w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=RATE, layout="stereo")
        stream.bit_rate = 128_000
        for block in range(SECONDS // BLOCK_SECONDS):
            freq = 120.0 + 15.0 * (block % 11)
            voice = np.sin(2 * np.pi * freq * t) + 0.5 * np.sin(2 * np.pi * 2 * freq * t)
            envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t)
            mono = (0.3 * envelope * voice).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(np.stack([mono, 0.8 * mono]), format="fltp", layout="stereo")
            frame.sample_rate = RATE
            frame.pts = block * len(t)
            frame.time_base = Fraction(1, RATE)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    tmp.rename(path)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "qasr-bench")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    args.cache_dir.mkdir(parents=True, exist_ok=True)
    mp3 = args.cache_dir / "one_hour_44k_stereo_128k.mp3"
    if not mp3.exists():
        print(f"generating {mp3} (once; takes a few minutes) ...", flush=True)
        started = time.perf_counter()
        make_mp3(mp3)
        print(f"  generated in {time.perf_counter() - started:.1f} s", flush=True)

    rss_before = peak_rss_mb()
    timings, cpu = [], []
    for _ in range(args.repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        audio = load_audio(mp3)
        timings.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
        seconds = len(audio) / SAMPLE_RATE
        del audio
    print(f"file: {mp3} ({mp3.stat().st_size / 1e6:.1f} MB, {seconds:.1f} s of audio)")
    print(f"load_audio: best {min(timings):.2f} s of {args.repeats} ({', '.join(f'{t:.2f}' for t in timings)})")
    print(f"CPU time: best {min(cpu):.2f} s (wall above CPU means other processes shared the cores)")
    print(f"speed: {seconds / min(timings):.0f}x real time")
    print(f"peak RSS: {peak_rss_mb():.0f} MB (before decoding: {rss_before:.0f} MB)")


if __name__ == "__main__":
    main()
