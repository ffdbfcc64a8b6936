"""Tests for qasr_space.audio on real media files made with PyAV (see tests/media.py); no mocks."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile

from qasr_space.audio import SAMPLE_RATE, check_finite, is_silent, load_audio, split_at_quiet_points
from qasr_space.errors import AudioError, AudioTooLongError
from tests.media import FORMATS, suffix, tone, write_media, write_sparse_wav, write_video_only

SECONDS = 1.5


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


# --- decoding every format -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "rate", "channels", "with_video"),
    [(fmt, 44100, 1, False) for fmt in FORMATS]
    + [(fmt, 48000, 2, False) for fmt in FORMATS]
    + [("mp4", 44100, 2, True), ("mkv", 48000, 1, True), ("webm", 48000, 2, True)],
)
def test_every_format_decodes_to_16k_mono_float32(
    tmp_path: Path, fmt: str, rate: int, channels: int, with_video: bool
) -> None:
    mono = tone(SECONDS, rate)
    signal = mono if channels == 1 else np.stack([mono, mono], axis=1)
    path = write_media(tmp_path / f"clip{suffix(fmt)}", signal, rate, fmt, with_video=with_video)

    audio = load_audio(path)

    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) / SAMPLE_RATE - SECONDS) < 0.06  # codecs may add a few ms of padding
    assert _rms(audio) == pytest.approx(_rms(mono), rel=0.15)
    assert not is_silent(audio)


def test_bytes_decode_like_the_file(tmp_path: Path) -> None:
    path = write_media(tmp_path / "clip.mp3", tone(SECONDS, 44100), 44100, "mp3")
    from_bytes = load_audio(path.read_bytes())
    np.testing.assert_array_equal(from_bytes, load_audio(str(path)))


def test_decoded_stereo_is_the_mean_of_the_channels(tmp_path: Path) -> None:
    left = tone(SECONDS, SAMPLE_RATE)
    path = write_media(tmp_path / "half.wav", np.stack([left, np.zeros_like(left)], axis=1), SAMPLE_RATE, "wav")
    np.testing.assert_allclose(load_audio(path), left / 2, atol=1e-4)  # 16-bit quantisation


# --- Gradio (sample_rate, ndarray) tuples ----------------------------------------------------------------


def test_int16_stereo_48k_tuple_is_scaled_mixed_and_resampled() -> None:
    samples = np.zeros((48000, 2), dtype=np.int16)
    samples[:, 0] = 16384  # 0.5 of full scale on one channel -> 0.25 after the channel mean
    audio = load_audio((48000, samples))
    assert audio.dtype == np.float32 and audio.shape == (SAMPLE_RATE,)
    np.testing.assert_allclose(audio[1000:-1000], 0.25, atol=1e-3)  # away from the resampler's edge ringing


def test_int16_tone_tuple_keeps_its_level() -> None:
    mono = tone(SECONDS, 48000)
    audio = load_audio((48000, (mono * 32767).astype(np.int16)))
    assert len(audio) == int(SECONDS * SAMPLE_RATE)
    assert _rms(audio) == pytest.approx(_rms(mono), rel=0.01)


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        (np.full(800, 2**30, dtype=np.int32), 0.5),
        (np.full(800, 192, dtype=np.uint8), 0.5),
        (np.full(800, 64, dtype=np.uint8), -0.5),
        (np.full(800, -16384, dtype=np.int16), -0.5),
    ],
)
def test_integer_tuples_are_scaled_to_plus_minus_one(samples: np.ndarray, expected: float) -> None:
    np.testing.assert_allclose(load_audio((SAMPLE_RATE, samples)), expected)


def test_float_tuple_over_full_scale_is_divided_by_its_peak() -> None:
    samples = tone(1.0) * 5.0
    original = samples.copy()
    audio = load_audio((SAMPLE_RATE, samples))
    np.testing.assert_allclose(audio, original / np.abs(original).max(), rtol=1e-6)
    assert np.abs(audio).max() == pytest.approx(1.0)
    np.testing.assert_array_equal(samples, original)  # the caller's array is not modified


def test_float_tuple_within_range_is_unchanged() -> None:
    samples = tone(1.0).astype(np.float64)
    np.testing.assert_allclose(load_audio((SAMPLE_RATE, samples)), samples, rtol=1e-6)


# --- errors a user can cause -----------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match=r"'nope\.wav' was not found; check the path"):
        load_audio(tmp_path / "nope.wav")


def test_empty_file_and_empty_bytes(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match=r"'empty\.mp3' is empty \(0 bytes\)"):
        load_audio(empty)
    with pytest.raises(AudioError, match=r"empty \(0 bytes\)"):
        load_audio(b"")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("notes.txt", b"Meeting notes\nnot audio at all\n" * 20),
        ("song.mp3", b"Meeting notes\nnot audio at all\n" * 20),
        ("noise.wav", np.random.default_rng(0).bytes(40_000)),
    ],
)
def test_not_audio_is_refused_with_the_formats_to_use(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    for source in (path, content):
        with pytest.raises(AudioError) as caught:
            load_audio(source)
        message = str(caught.value)
        assert "could not be decoded as audio" in message
        assert "upload wav, mp3, flac, ogg, opus, m4a, webm or a video with sound" in message


def test_a_damaged_mp3_still_decodes_around_the_damage(tmp_path: Path) -> None:
    data = bytearray(write_media(tmp_path / "clip.mp3", tone(10.0, 44100), 44100, "mp3").read_bytes())
    rng = np.random.default_rng(4)
    for i in rng.integers(len(data) // 4, len(data), 100):
        data[i] ^= 0xFF
    audio = load_audio(bytes(data))
    assert len(audio) / SAMPLE_RATE > 8.0 and not is_silent(audio)


def test_a_cut_short_mp3_is_called_corrupt_not_too_short(tmp_path: Path) -> None:
    """Its header promises 3 s; only a sliver decodes. "Too short" would send the user looking for a longer clip."""
    whole = write_media(tmp_path / "whole.mp3", tone(3.0), 16000, "mp3").read_bytes()
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(whole[:600])
    with pytest.raises(AudioError, match=r"'cut.mp3' is corrupt or cut short: only 0\.\d\d s of it could be decoded"):
        load_audio(cut, min_seconds=0.25)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_refused_from_files_and_arrays(tmp_path: Path, bad: float) -> None:
    samples = tone(1.0)
    samples[100:110] = bad
    path = tmp_path / "broken.wav"
    soundfile.write(path, samples, 16000, subtype="FLOAT")
    for source in (path, (16000, samples)):
        with pytest.raises(AudioError, match="invalid samples \\(NaN or infinity\\)"):
            load_audio(source)


def test_an_open_binary_file_decodes_like_its_path(tmp_path: Path) -> None:
    path = write_media(tmp_path / "clip.ogg", tone(1.0), 16000, "ogg")
    with open(path, "rb") as opened:
        assert np.array_equal(load_audio(opened), load_audio(path))
    with open(tmp_path / "empty.wav", "w+b") as empty, pytest.raises(AudioError, match="empty \\(0 bytes\\)"):
        load_audio(empty)


def test_rate_and_channel_changes_mid_stream_are_followed(tmp_path: Path) -> None:
    """Concatenated MP3s switch rate and channel count mid-stream; each part keeps its length and level."""
    parts = [
        write_media(tmp_path / "a.mp3", tone(2.0, 44100), 44100, "mp3"),
        write_media(tmp_path / "b.mp3", tone(3.0, 48000), 48000, "mp3"),
        write_media(tmp_path / "c.mp3", np.stack([tone(1.0, 22050)] * 2, axis=1), 22050, "mp3"),
    ]
    audio = load_audio(b"".join(p.read_bytes() for p in parts))
    assert abs(len(audio) / SAMPLE_RATE - 6.0) < 0.2  # each MP3 adds a little codec padding
    level = _rms(tone(1.0))
    for second in range(6):
        assert _rms(audio[second * SAMPLE_RATE : (second + 1) * SAMPLE_RATE]) == pytest.approx(level, rel=0.1)


def test_a_wav_of_a_codec_without_a_decoder_is_refused(tmp_path: Path) -> None:
    """Format tag 0x1234 names no codec FFmpeg can decode; PyAV 17 (the last for Python 3.10) crashes the process if
    asked to decode it, so it must be refused before."""
    pcm = (tone(0.5) * 32767).astype("<i2").tobytes()
    header = (b"RIFF" + (36 + len(pcm)).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
              + (0x1234).to_bytes(2, "little") + (1).to_bytes(2, "little") + (16000).to_bytes(4, "little")
              + (32000).to_bytes(4, "little") + (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
              + b"data" + len(pcm).to_bytes(4, "little"))
    path = tmp_path / "codec.wav"
    path.write_bytes(header + pcm)
    with pytest.raises(AudioError, match="'codec.wav' uses an audio codec this server cannot decode"):
        load_audio(path)


def test_an_image_is_not_audio(tmp_path: Path) -> None:
    path = tmp_path / "cover.png"
    with av.open(str(path), "w", format="image2") as out:
        stream = out.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "rgb24"
        out.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")))
        out.mux(stream.encode(None))
    with pytest.raises(AudioError, match=r"'cover\.png' could not be decoded as audio"):
        load_audio(path)


def test_video_without_audio(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match=r"'silent\.mp4' has video but no audio track.*upload a video with sound"):
        load_audio(write_video_only(tmp_path / "silent.mp4"))


def test_zero_length_audio(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="zero samples"):
        load_audio(write_sparse_wav(tmp_path / "nothing.wav", 0.0))


def test_too_long_is_refused_from_metadata_before_decoding(tmp_path: Path) -> None:
    three_hours = write_sparse_wav(tmp_path / "long.wav", 3 * 3600.0)  # 345 MB of PCM if it were decoded
    started = time.perf_counter()
    with pytest.raises(AudioTooLongError, match=r"3:00:00 long, over the 2:00:00 limit; trim it"):
        load_audio(three_hours, max_seconds=2 * 3600.0)
    assert time.perf_counter() - started < 0.5


def test_too_long_is_also_checked_on_the_decoded_audio(tmp_path: Path) -> None:
    # 2.5 s declared is within the metadata slack of a 2 s limit, so only the decoded length can refuse it.
    path = write_media(tmp_path / "clip.flac", tone(2.5), SAMPLE_RATE, "flac")
    with pytest.raises(AudioTooLongError, match=r"longer than the 2\.0 s limit"):
        load_audio(path, max_seconds=2.0)
    assert len(load_audio(path, max_seconds=2.5)) == int(2.5 * SAMPLE_RATE)


def test_too_long_tuple() -> None:
    with pytest.raises(AudioTooLongError):
        load_audio((SAMPLE_RATE, np.zeros(3 * SAMPLE_RATE, dtype=np.int16)), max_seconds=2.0)


def test_too_short(tmp_path: Path) -> None:
    path = write_media(tmp_path / "blip.wav", tone(0.1), SAMPLE_RATE, "wav")
    with pytest.raises(AudioError, match=r"too short: 0\.10 s, and at least 0\.25 s is needed"):
        load_audio(path, min_seconds=0.25)


# --- is_silent -------------------------------------------------------------------------------------------


def test_is_silent(tmp_path: Path) -> None:
    assert is_silent(np.zeros(SAMPLE_RATE, dtype=np.float32))
    assert is_silent(np.zeros(0, dtype=np.float32))
    assert is_silent(np.random.default_rng(0).normal(0, 1e-4, SAMPLE_RATE).astype(np.float32))
    assert not is_silent(tone(1.0))
    assert not is_silent(tone(1.0) * 0.02)  # quiet speech is still speech
    silent_mp3 = write_media(tmp_path / "silence.mp3", np.zeros(SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE, "mp3")
    assert is_silent(load_audio(silent_mp3))


# --- split_at_quiet_points -------------------------------------------------------------------------------


def _assert_tiles(pieces: list[tuple[int, int]], total: int, max_len: int) -> None:
    assert pieces[0][0] == 0 and pieces[-1][1] == total
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))
    assert all(0 < end - start <= max_len for start, end in pieces)


def _reference_cut(audio: np.ndarray, left: int, right: int, win: int) -> int:
    """The Qwen3-ASR reference's boundary search (np.convolve), over [left, right)."""
    seg = np.abs(audio[left:right])
    sums = np.convolve(seg, np.ones(win, dtype=np.float64), mode="valid")
    pos = int(np.argmin(sums))
    return left + pos + int(np.argmin(seg[pos : pos + win]))


def test_silence_and_sample_checks_copy_no_recording() -> None:
    """Ten minutes of quiet audio (38 MB as float32): the checks work in blocks, never on a float64 copy (77 MB)."""
    quiet = np.full(10 * 60 * SAMPLE_RATE, 1e-4, np.float32)
    tracemalloc.start()
    try:
        assert is_silent(quiet)
        check_finite(quiet)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024 * 1024


def test_pieces_are_contiguous_and_within_the_limit() -> None:
    audio = np.random.default_rng(1).normal(0, 0.1, 100 * SAMPLE_RATE).astype(np.float32)
    pieces = split_at_quiet_points(audio, max_seconds=30.0)
    _assert_tiles(pieces, len(audio), 30 * SAMPLE_RATE)
    assert len(pieces) == 4


def test_short_audio_is_one_piece() -> None:
    assert split_at_quiet_points(np.zeros(1000, dtype=np.float32), max_seconds=30.0) == [(0, 1000)]


def test_cuts_land_in_the_quiet_gap() -> None:
    audio = tone(70.0)
    gap = slice(int(24.0 * SAMPLE_RATE), int(24.4 * SAMPLE_RATE))
    audio[gap] *= 1e-3
    far_gap = slice(int(10.0 * SAMPLE_RATE), int(11.0 * SAMPLE_RATE))  # quieter, but outside the search window
    audio[far_gap] = 0.0
    pieces = split_at_quiet_points(audio, max_seconds=30.0)
    _assert_tiles(pieces, len(audio), 30 * SAMPLE_RATE)
    assert gap.start <= pieces[0][1] < gap.stop


def test_a_short_limit_still_makes_pieces_of_at_least_half_the_limit() -> None:
    """Quiet audio must not drag each cut back to the start of its piece (pieces of one sample)."""
    audio = np.concatenate([np.zeros(3 * SAMPLE_RATE, np.float32), tone(9.0), np.zeros(SAMPLE_RATE, np.float32)])
    pieces = split_at_quiet_points(audio, max_seconds=5.0)
    _assert_tiles(pieces, len(audio), 5 * SAMPLE_RATE)
    assert all(end - start >= 2.5 * SAMPLE_RATE for start, end in pieces[:-1])


def test_cut_matches_the_reference_search_left_of_the_limit() -> None:
    rng = np.random.default_rng(2)
    audio = (rng.normal(0, 0.2, 50 * SAMPLE_RATE) * np.abs(np.sin(np.arange(50 * SAMPLE_RATE) / 9000))).astype(
        np.float32
    )
    pieces = split_at_quiet_points(audio, max_seconds=20.0, search_seconds=3.0)
    start = 0
    for _, end in pieces[:-1]:
        cut = start + 20 * SAMPLE_RATE
        assert end == _reference_cut(audio, max(start, cut - 6 * SAMPLE_RATE), cut, SAMPLE_RATE // 10)
        start = end


def test_an_hour_splits_fast() -> None:
    audio = np.tile(np.random.default_rng(3).normal(0, 0.1, 10 * SAMPLE_RATE).astype(np.float32), 360)
    started = time.perf_counter()
    pieces = split_at_quiet_points(audio, max_seconds=180.0)
    assert time.perf_counter() - started < 2.0
    _assert_tiles(pieces, len(audio), 180 * SAMPLE_RATE)


def test_rejects_a_limit_shorter_than_one_sample() -> None:
    with pytest.raises(ValueError):
        split_at_quiet_points(tone(1.0), max_seconds=0.0)
