"""Turn whatever a user hands us into 16 kHz mono float32, and cut long audio at quiet points.

Pure functions, no UI: the CLI, the Gradio app and the REST API all call these. Decoding uses PyAV's
bundled FFmpeg (no system ffmpeg needed) and soxr for resampling. Every failure a user can cause is an
`AudioError` whose message says what is wrong and what to do, never a decoder traceback.
"""

from __future__ import annotations

import io
import os
from typing import BinaryIO, Iterator, Tuple, Union

import av
import numpy as np
import soxr

from qasr_space.errors import AudioError, AudioTooLongError, shown

SAMPLE_RATE = 16000

#: A file path, the raw bytes of a file, an open binary file, or Gradio's `(sample_rate, samples)` tuple.
AudioSource = Union[str, os.PathLike, bytes, BinaryIO, Tuple[int, np.ndarray]]

_FORMATS_HINT = "upload wav, mp3, flac, ogg, opus, m4a, webm or a video with sound"
#: Containers a video comes in; elsewhere a "video" stream is a still image or FFmpeg reading a text file as ANSI art.
_VIDEO_CONTAINERS = frozenset({"mov", "mp4", "matroska", "webm", "avi", "flv", "mpegts", "mpeg", "asf", "ogg"})
#: Container durations include codec padding and bitrate estimates, so the pre-check allows this much slack;
#: the exact limit is enforced on the decoded samples.
_METADATA_SLACK_SECONDS = 1.0
#: Decoded audio is resampled in blocks of about this many seconds, to keep per-call overhead low.
_BLOCK_SECONDS = 2.0
#: The most output buffer allocated up front from a file's declared duration, when no limit is given.
_MAX_PREALLOCATED_SECONDS = 4 * 3600.0
_NO_SAMPLES = np.zeros(0, dtype=np.float32)
#: `is_silent` thresholds: below -60 dBFS RMS and a peak under 1% of full scale is no speech.
_SILENT_RMS = 1e-3
_SILENT_PEAK = 1e-2


def load_audio(
    source: AudioSource,
    *,
    max_seconds: float | None = None,
    min_seconds: float | None = None,
) -> np.ndarray:
    """Decode `source` to 16 kHz mono float32 in [-1, 1].

    Raises `AudioTooLongError` if longer than `max_seconds` (checked from metadata before decoding, so
    a 3-hour upload is refused at once) and `AudioError` for anything unreadable or shorter than `min_seconds`.
    """
    if isinstance(source, tuple):
        audio, complete = _from_array(source, max_seconds), True
    else:
        audio, complete = _decode(source, max_seconds)
    seconds = len(audio) / SAMPLE_RATE
    if not complete and (len(audio) == 0 or (min_seconds is not None and seconds < min_seconds)):
        raise AudioError(
            f"{_describe(source)} is corrupt or cut short: only {seconds:.2f} s of it could be decoded; upload an "
            "intact copy of the file."
        )
    if len(audio) == 0:
        raise AudioError("The audio decoded to zero samples; upload a recording that actually contains sound.")
    if max_seconds is not None and seconds > max_seconds:
        raise _too_long(seconds, max_seconds)
    if min_seconds is not None and seconds < min_seconds:
        raise AudioError(
            f"The audio is too short: {seconds:.2f} s, and at least {min_seconds:g} s is needed; "
            "record or upload a longer clip."
        )
    check_finite(audio)
    return normalize_peak(audio)


def check_finite(audio: np.ndarray) -> None:
    """Refuse samples that are NaN or infinite (a broken float file or array): the model would turn them into a
    confident wrong transcript. One float64 sum, with no copy of the audio: any such sample makes it non-finite."""
    if not np.isfinite(np.sum(audio, dtype=np.float64)):
        raise AudioError(
            "The audio contains invalid samples (NaN or infinity), so it is corrupt; export it again, e.g. as "
            "16-bit WAV or mp3."
        )


def is_silent(audio: np.ndarray) -> bool:
    """True when `audio` holds nothing at speech level, so "no speech found" needs no model run."""
    if audio.size == 0:
        return True
    if _peak(audio) >= _SILENT_PEAK:
        return False
    step = int(_BLOCK_SECONDS * SAMPLE_RATE)  # float64 a block at a time: a copy of 2 h as float64 is 0.9 GB
    energy = sum(float(np.dot(block, block)) for block in
                 (audio[i:i + step].astype(np.float64) for i in range(0, audio.size, step)))
    return np.sqrt(energy / audio.size) < _SILENT_RMS


def split_at_quiet_points(
    audio: np.ndarray,
    max_seconds: float,
    search_seconds: float = 5.0,
    window_seconds: float = 0.1,
) -> list[tuple[int, int]]:
    """Cut `audio` into contiguous `(start, end)` sample ranges of at most `max_seconds` each.

    Like the Qwen3-ASR reference, each cut goes at the quietest sample of the quietest `window_seconds`
    window (sum of |x|) near the limit, so words are rarely split. The reference searches `search_seconds`
    either side of the limit; since no piece may exceed the limit, this searches the `2 * search_seconds`
    before it, but never the first half of the piece: otherwise, with a limit under twice the search span,
    quiet audio would pull every cut back to the piece's start and make pieces one sample long.
    The ranges cover the whole audio with no gap or overlap.
    """
    max_len = int(max_seconds * SAMPLE_RATE)
    if max_len < 1:
        raise ValueError(f"max_seconds must be at least one sample long, got {max_seconds}")
    total = len(audio)
    search = int(2 * search_seconds * SAMPLE_RATE)
    win = max(4, int(window_seconds * SAMPLE_RATE))

    pieces: list[tuple[int, int]] = []
    start = 0
    while total - start > max_len:
        cut = start + max_len
        left = max(start + max_len // 2, cut - search)
        if cut - left <= win:
            boundary = cut
        else:
            magnitude = np.abs(audio[left:cut], dtype=np.float64)
            sums = np.concatenate(([0.0], np.cumsum(magnitude)))
            window_start = int(np.argmin(sums[win:] - sums[:-win]))
            boundary = left + window_start + int(np.argmin(magnitude[window_start : window_start + win]))
        boundary = max(boundary, start + 1)
        pieces.append((start, boundary))
        start = boundary
    pieces.append((start, total))
    return pieces


def _decode(source: str | os.PathLike[str] | bytes | BinaryIO, max_seconds: float | None) -> tuple[np.ndarray, bool]:
    """Decode the best audio stream of a file, bytes or a binary file object, frame by frame, straight to 16 kHz
    mono. Also says whether the stream looked complete: no damaged packets, and not far short of its declared length."""
    name = _describe(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise AudioError("The uploaded audio is empty (0 bytes); upload the file again or pick another one.")
        opened: str | BinaryIO = io.BytesIO(source)
    elif hasattr(source, "read"):
        if source.seek(0, io.SEEK_END) == 0:
            raise AudioError("The uploaded audio is empty (0 bytes); upload the file again or pick another one.")
        source.seek(0)
        opened = source
    else:
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise AudioError(f"Audio file {name} was not found; check the path or upload the file again.")
        if os.path.getsize(path) == 0:
            raise AudioError(f"Audio file {name} is empty (0 bytes); upload the file again or pick another one.")
        opened = path

    try:
        container = av.open(opened, mode="r", metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise _not_audio(name) from exc
    with container:
        if not container.streams.audio:
            if set(container.format.name.split(",")) & _VIDEO_CONTAINERS:
                raise AudioError(
                    f"{name} has video but no audio track, so there is nothing to transcribe; "
                    "upload a video with sound or an audio file."
                )
            raise _not_audio(name)
        stream = container.streams.audio[0]
        if stream.codec_context is None:  # a codec FFmpeg has no decoder for; PyAV 17 crashes if asked to decode it
            raise AudioError(f"{name} uses an audio codec this server cannot decode; {_FORMATS_HINT}.")
        declared = _declared_seconds(container, stream)
        if max_seconds is not None and declared is not None and declared > max_seconds + _METADATA_SLACK_SECONDS:
            raise _too_long(declared, max_seconds)
        damage = _Damage()
        try:
            audio = _decode_stream(container, stream, declared, max_seconds, damage)
        except av.FFmpegError as exc:
            raise _not_audio(name) from exc
    short = declared is not None and len(audio) / SAMPLE_RATE < declared - _METADATA_SLACK_SECONDS
    return audio, not (damage.packets or short)


class _Damage:
    """Counts the packets `_frames` had to skip."""

    packets = 0


def _decode_stream(
    container: av.container.InputContainer,
    stream: av.AudioStream,
    declared_seconds: float | None,
    max_seconds: float | None,
    damage: _Damage,
) -> np.ndarray:
    """Resample decoded blocks into one output buffer, sized from the declared duration when there is one.

    Stops as soon as the output passes `max_seconds`, so a file without duration metadata is refused early too.
    """
    limit = None if max_seconds is None else int(max_seconds * SAMPLE_RATE) + 1
    expected = min(declared_seconds or 60.0, max_seconds or _MAX_PREALLOCATED_SECONDS)  # a header may lie
    out = SampleBuffer(int(expected * SAMPLE_RATE) + SAMPLE_RATE)
    resampler: soxr.ResampleStream | None = None
    stream_rate = 0
    for block, rate in _native_blocks(_frames(container, stream, damage)):
        if rate != stream_rate:  # the first block, or the rate changed mid-stream
            if resampler is not None:
                out.append(resampler.resample_chunk(_NO_SAMPLES, last=True))
            resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
            stream_rate = rate
        out.append(resampler.resample_chunk(block))
        if limit is not None and len(out) > limit:
            raise _too_long(None, max_seconds)
    if resampler is not None:
        out.append(resampler.resample_chunk(_NO_SAMPLES, last=True))
    return out.result()


def _frames(container: av.container.InputContainer, stream: av.AudioStream, damage: _Damage) -> Iterator[av.AudioFrame]:
    """Decode packet by packet, skipping damaged packets as the ffmpeg tool does (counted in `damage`), so a few bad
    bytes do not lose a whole recording. Fails only if no packet decoded at all."""
    error: av.FFmpegError | None = None
    decoded_any = False
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.InvalidDataError as exc:
            error = exc
            damage.packets += 1
            continue
        decoded_any = decoded_any or bool(frames)
        yield from frames
    if error is not None and not decoded_any:
        raise error


def _native_blocks(frames: Iterator[av.AudioFrame]) -> Iterator[tuple[np.ndarray, int]]:
    """Yield `(mono float32 block, sample rate)` of about `_BLOCK_SECONDS` each, at the stream's own rate.

    Frames are gathered in an FFmpeg FIFO, which costs far less per frame than converting each one to numpy.
    A FIFO holds one format, layout and rate, so when those change mid-stream (rare, e.g. concatenated MP3s)
    the pending block is yielded and a new FIFO started.
    """
    fifo = av.AudioFifo()
    shape: tuple[str, str, int] | None = None
    for frame in frames:
        frame_shape = (frame.format.name, frame.layout.name, frame.sample_rate)
        if frame_shape != shape:
            if fifo.samples:
                yield _frame_to_mono(fifo.read()), fifo.sample_rate
            fifo, shape = av.AudioFifo(), frame_shape
        frame.pts = None  # the FIFO insists on gapless timestamps; decoders may start at an offset
        fifo.write(frame)
        if fifo.samples >= _BLOCK_SECONDS * frame.sample_rate:
            yield _frame_to_mono(fifo.read()), frame.sample_rate
    if fifo.samples:
        yield _frame_to_mono(fifo.read()), fifo.sample_rate


def _frame_to_mono(frame: av.AudioFrame) -> np.ndarray:
    samples = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if not frame.format.is_planar:
        samples = samples.reshape(-1, channels).T  # packed (1, n * ch) -> (ch, n)
    return _to_float_mono(samples, channel_axis=0)


def _from_array(source: tuple, max_seconds: float | None) -> np.ndarray:
    """Gradio's `(sample_rate, samples)` with samples shaped (n,) or (n, channels)."""
    if len(source) != 2:
        raise AudioError("Audio arrays must come as (sample_rate, samples); pass the tuple Gradio produces.")
    rate, samples = source
    samples = np.asarray(samples)
    if not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise AudioError(f"The audio's sample rate {shown(rate)} is not a positive whole number; pass (sample_rate, samples).")
    if samples.ndim not in (1, 2) or samples.size == 0:
        raise AudioError("The audio array is empty or not shaped (samples,) or (samples, channels); record again.")
    if max_seconds is not None and len(samples) / rate > max_seconds:
        raise _too_long(len(samples) / rate, max_seconds)
    mono = _to_float_mono(samples, channel_axis=1) if samples.ndim == 2 else _to_float_mono(samples)
    if rate == SAMPLE_RATE:
        return mono.copy() if np.shares_memory(mono, samples) else mono  # the caller's array stays untouched
    return soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ").astype(np.float32, copy=False)


def _to_float_mono(samples: np.ndarray, channel_axis: int | None = None) -> np.ndarray:
    """Scale integer PCM to [-1, 1) (int16 / 32768, uint8 centred at 128, ...) and average the channels."""
    kind = samples.dtype.kind
    if kind == "f":
        scaled = samples.astype(np.float32, copy=False)
    elif kind in "iu":
        bits = samples.dtype.itemsize * 8
        offset = 2.0 ** (bits - 1) if kind == "u" else 0.0
        scaled = (samples.astype(np.float64 if bits > 16 else np.float32) - offset) / 2.0 ** (bits - 1)
    else:
        raise AudioError(f"Audio samples of type {samples.dtype} are not supported; pass integer or float PCM.")
    if channel_axis is not None:
        scaled = scaled.mean(axis=channel_axis) if scaled.shape[channel_axis] > 1 else scaled.take(0, axis=channel_axis)
    return np.ascontiguousarray(scaled, dtype=np.float32)


def normalize_peak(audio: np.ndarray) -> np.ndarray:
    """As the reference pipeline does: divide by the peak if it exceeds 1.0, so every sample is within [-1, 1] (its
    clip to [-1, 1] then changes nothing). A new array when it scales, else `audio` itself, which is never modified."""
    peak = _peak(audio)
    return audio / np.float32(peak) if peak > 1.0 else audio


def _peak(audio: np.ndarray) -> float:
    """max |x| without allocating |audio|, which for an hour is another 230 MB."""
    return max(float(audio.max()), -float(audio.min()))


class SampleBuffer:
    """An append-only float32 array that doubles when full, so a long decode or a live recording costs amortised
    O(1) per sample instead of piles of small arrays or a copy of everything per append."""

    def __init__(self, capacity: int) -> None:
        self._data = np.empty(max(capacity, 1), dtype=np.float32)
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def append(self, samples: np.ndarray) -> None:
        end = self._len + len(samples)
        if end > len(self._data):
            grown = np.empty(max(end, 2 * len(self._data)), dtype=np.float32)
            grown[: self._len] = self._data[: self._len]
            self._data = grown
        self._data[self._len : end] = samples
        self._len = end

    def view(self, start: int = 0, end: int | None = None) -> np.ndarray:
        """Samples `start:end` as a read-only view; later appends never change what it shows."""
        view = self._data[start:self._len if end is None else min(end, self._len)]
        view.flags.writeable = False
        return view

    def result(self) -> np.ndarray:
        """The samples, with the unused capacity given back (an in-place shrink, not a copy)."""
        data, self._data = self._data, np.empty(0, dtype=np.float32)
        data.resize(self._len, refcheck=False)  # nothing else references this private buffer
        return data


def _declared_seconds(container: av.container.InputContainer, stream: av.AudioStream) -> float | None:
    """The duration the file claims, from the audio stream or else the container; None if it does not say."""
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    return None


def _describe(source: AudioSource) -> str:
    if isinstance(source, (bytes, bytearray, memoryview, tuple)) or hasattr(source, "read"):
        return "The uploaded audio"
    return f"'{os.path.basename(os.fspath(source))}'"


def _not_audio(name: str) -> AudioError:
    return AudioError(f"{name} could not be decoded as audio (corrupt, or not an audio file); {_FORMATS_HINT}.")


def _too_long(seconds: float | None, max_seconds: float | None) -> AudioTooLongError:
    length = "longer than" if seconds is None else f"{format_duration(seconds)} long, over"
    return AudioTooLongError(
        f"The audio is {length} the {format_duration(max_seconds or 0.0)} limit; trim it or split it into shorter files."
    )


def format_duration(seconds: float) -> str:
    """Format a duration for people: '2:05:07', '3:20' or '12.5 s'."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
