"""Make real media files for tests with PyAV, so no system ffmpeg is needed.

Every helper writes a genuine container that the production decoder has to parse, which is the point:
tests exercise the same code paths a user's upload does.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

#: fmt -> (container format, audio codec, file extension)
_FORMATS: dict[str, tuple[str, str, str]] = {
    "wav": ("wav", "pcm_s16le", ".wav"),
    "flac": ("flac", "flac", ".flac"),
    "mp3": ("mp3", "libmp3lame", ".mp3"),
    "ogg": ("ogg", "vorbis", ".ogg"),
    "opus": ("opus", "libopus", ".opus"),
    "m4a": ("ipod", "aac", ".m4a"),
    "webm": ("webm", "libopus", ".webm"),
    "mp4": ("mp4", "aac", ".mp4"),
    "mkv": ("matroska", "aac", ".mkv"),
}
FORMATS = tuple(_FORMATS)

#: Codecs that only accept some sample rates; others are resampled to the first rate listed.
_CODEC_RATES: dict[str, tuple[int, ...]] = {
    "libopus": (48000, 24000, 16000, 12000, 8000),
    "aac": (48000, 44100, 32000, 24000, 22050, 16000, 8000),
    "libmp3lame": (48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000),
}


def tone(seconds: float, sr: int = 16000, freq: float = 220.0) -> np.ndarray:
    """A speech-like test signal: a harmonic tone with a syllable-rate (4 Hz) amplitude envelope.

    Not silence and not a pure sine, so lossy codecs keep it and energy-based code sees real variation.
    """
    t = np.arange(int(round(seconds * sr)), dtype=np.float64) / sr
    voice = sum(np.sin(2 * np.pi * freq * k * t) / k for k in (1, 2, 3))
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t)
    return (0.4 * envelope * voice / 1.84).astype(np.float32)


def write_media(
    path: str | os.PathLike[str],
    audio: np.ndarray,
    sr: int,
    fmt: str,
    *,
    with_video: bool = False,
) -> Path:
    """Encode `audio` (float in [-1, 1], shape (n,) or (n, channels)) as `fmt`; returns the path.

    `with_video=True` adds a tiny video stream (mp4, mkv and webm only) so the file looks like a real video.
    """
    container_format, codec, _ = _FORMATS[fmt]
    path = Path(path)
    samples = np.asarray(audio, dtype=np.float32)
    planar = samples.reshape(len(samples), -1).T  # (channels, n)
    if codec == "vorbis" and planar.shape[0] == 1:
        planar = np.repeat(planar, 2, axis=0)  # FFmpeg's built-in Vorbis encoder only writes stereo
    layout = {1: "mono", 2: "stereo"}[planar.shape[0]]
    rates = _CODEC_RATES.get(codec)
    out_rate = sr if rates is None or sr in rates else rates[0]
    seconds = planar.shape[1] / sr

    with av.open(str(path), "w", format=container_format) as out:
        video = _add_video_stream(out, container_format) if with_video else None
        stream = out.add_stream(codec, rate=out_rate, layout=layout)
        if codec == "vorbis":
            stream.codec_context.options = {"strict": "experimental"}
        if video is not None:
            _write_black_video(out, video, seconds)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planar), format="fltp", layout=layout)
        frame.sample_rate = sr
        frame.pts = 0
        frame.time_base = Fraction(1, sr)
        resampler = av.AudioResampler(
            format=stream.codec_context.codec.audio_formats[0].name,
            layout=layout,
            rate=out_rate,
            frame_size=stream.codec_context.frame_size or 1024,
        )
        for chunk in [*resampler.resample(frame), *resampler.resample(None)]:
            out.mux(stream.encode(chunk))
        out.mux(stream.encode(None))
    return path


def _add_video_stream(out: av.container.OutputContainer, container_format: str) -> av.VideoStream:
    """A 2 fps 32x32 video stream; all streams must exist before the first packet is written."""
    video = out.add_stream({"webm": "libvpx"}.get(container_format, "mpeg4"), rate=2)
    video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
    return video


def _write_black_video(out: av.container.OutputContainer, video: av.VideoStream, seconds: float) -> None:
    black = np.zeros((32, 32, 3), dtype=np.uint8)
    for i in range(max(1, int(seconds * 2))):
        frame = av.VideoFrame.from_ndarray(black, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        out.mux(video.encode(frame))
    out.mux(video.encode(None))


def write_video_only(path: str | os.PathLike[str], seconds: float = 1.0) -> Path:
    """An mp4 with a video stream and no audio stream at all."""
    path = Path(path)
    with av.open(str(path), "w", format="mp4") as out:
        _write_black_video(out, _add_video_stream(out, "mp4"), seconds)
    return path


def write_sparse_wav(path: str | os.PathLike[str], seconds: float, sr: int = 16000) -> Path:
    """A silent 16-bit mono WAV of any length that costs no disk space (a sparse file).

    Its header honestly declares `seconds`, so it tests duration checks on a multi-hour file without
    spending minutes encoding one.
    """
    path = Path(path)
    data_bytes = int(seconds * sr) * 2
    header = b"".join(
        [
            b"RIFF",
            (36 + data_bytes).to_bytes(4, "little"),
            b"WAVEfmt ",
            (16).to_bytes(4, "little"),
            (1).to_bytes(2, "little"),  # PCM
            (1).to_bytes(2, "little"),  # mono
            sr.to_bytes(4, "little"),
            (sr * 2).to_bytes(4, "little"),
            (2).to_bytes(2, "little"),
            (16).to_bytes(2, "little"),
            b"data",
            data_bytes.to_bytes(4, "little"),
        ]
    )
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(len(header) + data_bytes)
    return path


def suffix(fmt: str) -> str:
    """The usual file extension for `fmt`, e.g. '.m4a'."""
    return _FORMATS[fmt][2]
