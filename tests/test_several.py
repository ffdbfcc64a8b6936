"""Several files at once (`qasr_space.several`): real uploads and real zips, hostile ones included, transcribed
together through the tone model, and bundled into one zip that the tests open."""

from __future__ import annotations

import logging
import os
import stat
import struct
import threading
import time
import zipfile
import zlib
from itertools import groupby
from pathlib import Path

import pytest

from qasr_space.audio import load_audio
from qasr_space.errors import (ArchiveError, AudioError, QasrError, TooManyFilesError, UploadRefusedError,
                               UploadTooLargeError)
from qasr_space.models import ModelManager
from qasr_space.results import Segment, Transcript, Word
from qasr_space.settings import Settings
from qasr_space.several import (DONE, FAILED, MAX_NOTES, UNEXPECTED_FAILURE, WAITING, WORKING, FileProgress,
                                SourceFile, bundle, expand_uploads, transcribe_several)
from qasr_space.transcribe import transcribe
from qasr_space.writers import FORMATS, write_all
from tests.checkpoints import tone_clip, tone_word
from tests.media import tone, write_media
from tests.engines import VLLM, suite_settings

MIB = 1 << 20
SETTINGS = Settings()


@pytest.fixture
def uploads(tmp_path) -> Path:
    """Where the server keeps uploads: the only place `expand_uploads` reads from."""
    root = tmp_path / "uploads"
    root.mkdir()
    return root


@pytest.fixture
def folder(tmp_path) -> Path:
    """The request's own folder under the served root, where zip members are unpacked."""
    served = tmp_path / "served" / "request"
    served.mkdir(parents=True)
    return served


def wav_bytes(tmp_path: Path, seconds: float = 0.5, freq: float = 220.0) -> bytes:
    """A real WAV's bytes, made in `tmp_path/made`."""
    (tmp_path / "made").mkdir(exist_ok=True)
    return write_media(tmp_path / "made" / f"{freq:g}.wav", tone(seconds, freq=freq), 16000, "wav").read_bytes()


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def expand(paths: list, folder: Path, uploads: Path, settings: Settings = SETTINGS):
    return expand_uploads([str(p) for p in paths], str(folder), settings, upload_root=str(uploads))


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def mark_encrypted(path: Path, name: str) -> None:
    """Set the "encrypted" flag of member `name` in both its headers, as an encrypting archiver does; Python's
    zipfile cannot encrypt, and whether the bytes really are encrypted does not matter here."""
    data = bytearray(path.read_bytes())
    for signature, name_at, length_at, flags_at in ((b"PK\x03\x04", 30, 26, 6), (b"PK\x01\x02", 46, 28, 8)):
        at = data.find(signature)
        while at >= 0:
            length = struct.unpack_from("<H", data, at + length_at)[0]
            if data[at + name_at:at + name_at + length] == name.encode():
                data[at + flags_at] |= 0x1
            at = data.find(signature, at + 1)
    path.write_bytes(bytes(data))


def zeros_deflated(mebibytes: int) -> bytes:
    """A raw deflate stream of `mebibytes` MiB of zeros, built in milliseconds: one compressed MiB repeated (after a
    full flush each block starts afresh, so every MiB compresses to the same bytes), then an empty final block."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    one = compressor.compress(bytes(MIB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return one * mebibytes + b"\x03\x00"


def zip_of_deflated(path: Path, name: str, deflated: bytes, declared_size: int) -> Path:
    """A one-member zip, written byte by byte, whose member holds `deflated` and claims to unpack to `declared_size`
    bytes. Its checksum is left 0: a reader that gets that far has already unpacked what it should not have."""
    encoded = name.encode()
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, zipfile.ZIP_DEFLATED, 0, 0x21, 0, len(deflated),
                        declared_size, len(encoded), 0)
    central = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, zipfile.ZIP_DEFLATED, 0, 0x21, 0, len(deflated),
                          declared_size, len(encoded), 0, 0, 0, 0, 0, 0)
    directory_at = len(local) + len(encoded) + len(deflated)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central) + len(encoded), directory_at, 0)
    path.write_bytes(local + encoded + deflated + central + encoded + end)
    return path


# --- expand_uploads -------------------------------------------------------------------------------------------------

def test_uploads_and_zip_members_come_out_in_order_with_notes_on_what_was_skipped(tmp_path, uploads, folder):
    direct = write_media(uploads / "first.mp3", tone(0.5), 16000, "mp3")
    intro, outro = wav_bytes(tmp_path, freq=200.0), wav_bytes(tmp_path, freq=300.0)
    talks = make_zip(uploads / "talks.zip", {
        "day 1/": b"", "day 1/intro.wav": intro, "day 1/notes.pdf": b"%PDF-1.4", "__MACOSX/day 1/._intro.wav": b"x",
        ".DS_Store": b"x", "day 1/.hidden.wav": intro, "old.zip": b"PK", "day 2/Outro.FLAC": outro})
    (uploads / "readme.txt").write_text("hello")

    files, notes = expand([direct, talks, uploads / "readme.txt"], folder, uploads)

    assert [f.name for f in files] == ["first.mp3", "talks.zip/day 1/intro.wav", "talks.zip/day 2/Outro.FLAC"]
    assert notes == ["day 1/notes.pdf in talks.zip is not audio or video; skipped.",
                     "old.zip in talks.zip is a zip inside the zip; skipped: unpack it and send its files.",
                     "readme.txt is not audio or video; skipped."]
    assert files[0].path == str(direct.resolve())  # an upload is read where it is, not copied
    unpacked = [Path(f.path) for f in files[1:]]
    assert [p.read_bytes() for p in unpacked] == [intro, outro]
    assert all(p.parent.parent == folder and " " not in p.name for p in unpacked)
    assert [p.suffix for p in unpacked] == [".wav", ".flac"]
    assert load_audio(files[1].path).size == 8000  # real audio, as the decoder will read it


def test_zip_slip_names_are_shown_cleaned_and_never_used_as_paths(tmp_path, uploads, folder):
    clip = wav_bytes(tmp_path)
    names = ["../../escaped.wav", "/etc/cron.d/abs.wav", "C:\\Windows\\drive.wav", "a/../../b/dots.wav",
             "\u202ekcatta.wav", "clip.wavQ../../../tail", "run.shQ.wav"]
    evil = make_zip(uploads / "evil.zip", dict.fromkeys(names, clip))
    # zipfile will not write a NUL in a name; patch them in, in both headers, as an attacker's tool would.
    evil.write_bytes(evil.read_bytes().replace(b"wavQ", b"wav\x00").replace(b"shQ", b"sh\x00"))

    files, notes = expand([evil], folder, uploads)

    assert [f.name for f in files] == ["evil.zip/escaped.wav", "evil.zip/etc/cron.d/abs.wav",
                                       "evil.zip/Windows/drive.wav", "evil.zip/a/b/dots.wav", "evil.zip/kcatta.wav",
                                       "evil.zip/clip.wav"]
    assert notes == ["run.sh in evil.zip is not audio or video; skipped."]  # its name ends at the NUL
    written = set(files_under(tmp_path)) - set(files_under(uploads)) - set(files_under(tmp_path / "made"))
    assert written == {Path(f.path) for f in files}
    assert all(Path(f.path).parent.parent == folder for f in files)
    assert not (tmp_path / "escaped.wav").exists() and not (folder.parent / "b").exists()


def test_links_and_encrypted_members_are_skipped_with_a_note(tmp_path, uploads, folder):
    clip = wav_bytes(tmp_path)
    path = uploads / "odd.zip"
    with zipfile.ZipFile(path, "w") as archive:
        link = zipfile.ZipInfo("passwd.wav")
        link.create_system, link.external_attr = 3, (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
        archive.writestr("locked.wav", clip)
        archive.writestr("fine.wav", clip)
    mark_encrypted(path, "locked.wav")

    files, notes = expand([path], folder, uploads)

    assert [f.name for f in files] == ["odd.zip/fine.wav"]
    assert notes == ["passwd.wav in odd.zip is a link, not a file; skipped.",
                     "locked.wav in odd.zip is encrypted; skipped: zip it again without a password."]


def test_many_skipped_files_are_summed_up(uploads, folder):
    clutter = make_zip(uploads / "clutter.zip", {f"doc{i}.txt": b"x" for i in range(50)} | {"a.mp3": b"ID3"})
    files, notes = expand([clutter], folder, uploads)
    assert [f.name for f in files] == ["clutter.zip/a.mp3"]
    assert len(notes) == MAX_NOTES and notes[-1] == f"…and {50 - MAX_NOTES + 1} more files skipped."


def test_more_files_than_the_limit_are_refused_before_anything_is_unpacked(tmp_path, uploads, folder):
    clip = wav_bytes(tmp_path)
    many = make_zip(uploads / "many.zip", {f"{i}.wav": clip for i in range(3)})
    direct = write_media(uploads / "one.wav", tone(0.5), 16000, "wav")
    with pytest.raises(TooManyFilesError, match="^4 files were sent \\(zips unpacked\\), over the limit of 3") as error:
        expand([direct, many], folder, uploads, Settings(max_files=3))
    assert error.value.status_code == 413 and files_under(folder) == []
    assert len(expand([many], folder, uploads, Settings(max_files=3))[0]) == 3
    with pytest.raises(TooManyFilesError, match="^100000 files were sent"):  # refused before any path is looked at
        expand_uploads(["/etc/passwd"] * 100_000, str(folder), Settings(max_files=3), upload_root=str(uploads))


def test_a_zip_bomb_is_refused_at_once_without_unpacking(uploads, folder):
    bomb = zip_of_deflated(uploads / "bomb.zip", "big.wav", zeros_deflated(1024), declared_size=1024 * MIB)
    assert bomb.stat().st_size < 1.1 * MIB
    started = time.monotonic()
    with pytest.raises(UploadTooLargeError, match="big.wav in bomb.zip unpacks to over 200 times its packed size"):
        expand([bomb], folder, uploads)
    assert time.monotonic() - started < 1.0 and files_under(folder) == []


def test_a_member_that_understates_its_size_cannot_unpack_more(uploads, folder):
    """The same gigabyte of zeros, claiming 1000 bytes: zipfile stops at the claim and the checksum fails."""
    liar = zip_of_deflated(uploads / "liar.zip", "small.wav", zeros_deflated(1024), declared_size=1000)
    started = time.monotonic()
    with pytest.raises(ArchiveError, match="liar.zip could not be read as a zip archive"):
        expand([liar], folder, uploads)
    assert time.monotonic() - started < 1.0 and files_under(folder) == []


def test_unpacked_bytes_are_counted_as_they_are_written_and_stop_at_the_limit(uploads, folder):
    noise = {f"{i}.wav": os.urandom(400_000) for i in range(3)}  # 1.2 MB that does not compress
    big = make_zip(uploads / "big.zip", noise)
    with pytest.raises(UploadTooLargeError, match="more than 1 MB \\(zips unpacked\\)"):
        expand([big], folder, uploads, Settings(max_upload_mb=1))
    assert files_under(folder) == []  # what was unpacked before the limit is gone again
    assert len(expand([big], folder, uploads, Settings(max_upload_mb=2))[0]) == 3

    uploaded = [uploads / "a.wav", uploads / "b.wav"]
    for path in uploaded:
        path.write_bytes(os.urandom(600_000))
    with pytest.raises(UploadTooLargeError):
        expand(uploaded, folder, uploads, Settings(max_upload_mb=1))


def test_a_table_of_contents_too_big_to_read_is_refused(uploads, folder):
    crowded = make_zip(uploads / "crowded.zip", {f"{'n' * 200}{i}.txt": b"" for i in range(5000)})
    with pytest.raises(ArchiveError, match="crowded.zip lists too many entries"):
        expand([crowded], folder, uploads)


def test_a_corrupt_zip_is_an_error_naming_it(tmp_path, uploads, folder):
    (uploads / "garbage.zip").write_bytes(b"not a zip at all" * 100)
    good = make_zip(uploads / "good.zip", {"a.wav": os.urandom(50_000)}).read_bytes()
    (uploads / "cut.zip").write_bytes(good[: len(good) // 2])
    flipped = bytearray(good)
    flipped[100] ^= 0xFF  # inside the member's data: the archive opens, the member does not unpack
    (uploads / "flipped.zip").write_bytes(bytes(flipped))
    for name in ("garbage.zip", "cut.zip", "flipped.zip"):
        with pytest.raises(ArchiveError, match=f"^{name} could not be read as a zip archive .*send them one by one"):
            expand([uploads / name], folder, uploads)
    assert files_under(folder) == []


def test_no_media_at_all_is_an_error(uploads, folder):
    (uploads / "notes.txt").write_text("hello")
    only_docs = make_zip(uploads / "docs.zip", {"a.pdf": b"%PDF", "inner.zip": b"PK"})
    with pytest.raises(AudioError, match="None of the files sent is audio or video"):
        expand([uploads / "notes.txt", only_docs], folder, uploads)
    with pytest.raises(AudioError, match="No files were sent"):
        expand([], folder, uploads)


def test_only_uploaded_files_are_read(tmp_path, uploads, folder):
    outside = write_media(tmp_path / "outside.wav", tone(0.5), 16000, "wav")
    for path in [outside, uploads / ".." / "outside.wav", "/etc/passwd", uploads, "no\x00where", 42]:
        with pytest.raises(UploadRefusedError):
            expand_uploads([path], str(folder), SETTINGS, upload_root=str(uploads))


# --- transcribe_several ---------------------------------------------------------------------------------------------

def statuses(snapshot) -> list[str]:
    return [row.status for row in snapshot]


def sources(count: int) -> list[SourceFile]:
    return [SourceFile(f"/nowhere/{i}.wav", f"{i}.wav") for i in range(count)]


def fake_transcript(file: SourceFile) -> Transcript:
    return Transcript(language="English", text=f"words of {file.name}", duration=1.0)


def test_files_from_a_zip_and_an_upload_are_transcribed_together_each_with_its_own_words(
        tmp_path, uploads, folder, tone_model_dir):
    """Four files of four tone bands share one model call (they meet in the batcher) and each gets its own band's
    word; a file that does not decode fails alone."""
    manager = ModelManager(suite_settings(tone_model_dir, batch_size=4, batch_wait_ms=5000))
    bands = {"a.wav": 0, "b.flac": 2, "c.ogg": 4}
    for name, band in bands.items():
        write_media(tmp_path / name, tone_clip(band, 1.5), 16000, name.split(".")[1])
    make_zip(uploads / "set.zip", {name: (tmp_path / name).read_bytes() for name in bands})
    direct = write_media(uploads / "d.mp3", tone_clip(6, 1.5), 16000, "mp3")
    (uploads / "broken.mp3").write_bytes(os.urandom(5000))
    files, _ = expand([uploads / "set.zip", direct, uploads / "broken.mp3"], folder, uploads)
    manager.asr("0.6B")  # loaded first, so the files meet in the batcher rather than in the load
    before = manager.batch_stats()["asr"]["model_calls"]

    snapshots = list(transcribe_several(files, lambda f: transcribe(f.path, manager=manager), workers=5))

    assert len(snapshots) == 1 + 2 * 5  # all waiting, then one update per start and per end
    for index in range(5):
        assert [status for status, _ in groupby(s[index].status for s in snapshots)][:2] == [WAITING, WORKING]
    final = snapshots[-1]
    assert [row.file.name for row in final] == ["set.zip/a.wav", "set.zip/b.flac", "set.zip/c.ogg", "d.mp3",
                                                "broken.mp3"]
    assert statuses(final) == [DONE] * 4 + [FAILED]
    assert [row.transcript.text for row in final[:4]] == [tone_word(b) for b in (0, 2, 4, 6)]
    assert "could not be decoded as audio" in final[4].error
    assert manager.batch_stats()["asr"]["model_calls"] - before == (4 if VLLM else 1)  # vLLM: a request a file


def test_files_run_concurrently():
    """Each fake call waits for the other two: they only get past the barrier if three run at once."""
    barrier = threading.Barrier(3, timeout=10)

    def fake_transcribe_together(file: SourceFile) -> Transcript:
        barrier.wait()
        return fake_transcript(file)

    final = list(transcribe_several(sources(3), fake_transcribe_together, workers=3))[-1]
    assert statuses(final) == [DONE] * 3 and final[2].transcript.text == "words of 2.wav"


def test_each_start_and_end_is_one_update_in_order():
    snapshots = list(transcribe_several(sources(2), fake_transcript, workers=1))
    assert [statuses(s) for s in snapshots] == [[WAITING, WAITING], [WORKING, WAITING], [DONE, WAITING],
                                                [DONE, WORKING], [DONE, DONE]]


def test_a_failing_file_does_not_stop_the_others_and_shows_no_traceback(caplog):
    def fake_transcribe_with_failures(file: SourceFile) -> Transcript:
        if file.name == "1.wav":
            raise QasrError("The audio is too short; record at least a second.")
        if file.name == "2.wav":
            raise RuntimeError("internal detail: tensor shape mismatch at layer 3")
        return fake_transcript(file)

    with caplog.at_level(logging.ERROR, logger="qasr_space.several"):
        final = list(transcribe_several(sources(4), fake_transcribe_with_failures, workers=2))[-1]
    assert statuses(final) == [DONE, FAILED, FAILED, DONE]
    assert final[1].error == "The audio is too short; record at least a second."
    assert final[2].error == UNEXPECTED_FAILURE and final[2].transcript is None
    assert "tensor shape mismatch" in caplog.text and "2.wav" in caplog.text


def test_closing_the_generator_cancels_the_files_not_started():
    release, started, finished = threading.Event(), [], []

    def fake_transcribe_until_released(file: SourceFile) -> Transcript:
        started.append(file.name)
        release.wait(10)
        finished.append(file.name)
        return fake_transcript(file)

    progress = transcribe_several(sources(6), fake_transcribe_until_released, workers=2)
    for snapshot in progress:
        if statuses(snapshot).count(WORKING) == 2:
            break
    progress.close()
    release.set()
    deadline = time.monotonic() + 10
    while any(t.name.startswith("qasr-several") for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(started) == sorted(finished) == ["0.wav", "1.wav"]


# --- bundle and write_all -------------------------------------------------------------------------------------------

def timed_transcript(text: str) -> Transcript:
    words = [Word(" " + w if i else w, 0.5 * i, 0.5 * i + 0.4) for i, w in enumerate(text.split())]
    return Transcript(language="English", text=text, duration=3.0, words=words,
                      segments=[Segment(text, 0.0, words[-1].end, words)])


def row(name: str, status: str, **fields) -> FileProgress:
    return FileProgress(SourceFile(f"/x/{name}", name), status, **fields)


def test_bundle_holds_every_format_of_every_done_file_and_the_failures(tmp_path, folder):
    first, second, third = timed_transcript("Hello there."), timed_transcript("Second one."), timed_transcript("Ok.")
    results = [
        row("talks.zip/day 1/intro.wav", DONE, transcript=first),
        row("talks.zip/day 1/notes.mp3", FAILED, error="The audio is silent; check the recording."),
        row("Talks.zip/Day 1/Intro.wav", DONE, transcript=second),
        row("../../x.mp3", DONE, transcript=third),
    ]

    path = bundle(results, str(folder))

    assert path == str(folder / "transcripts.zip")
    stems = ["talks.zip_day_1_intro", "Talks.zip_Day_1_Intro-2", "x"]
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == sorted(
            [f"{stem}/{stem}{suffix}" for stem in stems for _, suffix, _ in FORMATS.values()] + ["failed.txt"])
        assert archive.read("failed.txt").decode() == ("talks.zip/day 1/notes.mp3: The audio is silent; check the "
                                                       "recording.\n")
        for stem, transcript in zip(stems, (first, second, third)):
            written = write_all(transcript, str(tmp_path), stem)
            assert [Path(p).name for p in written] == [stem + suffix for _, suffix, _ in FORMATS.values()]
            for file in written:
                assert archive.read(f"{stem}/{Path(file).name}") == Path(file).read_bytes()


def test_bundle_without_failures_has_no_failed_list(folder):
    path = bundle([row("a.wav", DONE, transcript=timed_transcript("Fine."))], str(folder), name="my set")
    with zipfile.ZipFile(path) as archive:
        assert Path(path).name == "my_set.zip" and "failed.txt" not in archive.namelist()
