"""Several files at once: uploads and zips of them turned into media files, transcribed together, bundled as one zip.

Pure functions, no UI; the page builds its multi-file tab on them:

- `expand_uploads(paths, folder, settings, upload_root=...)` checks that every path is an upload, replaces each
  `.zip` by the audio and video files inside it (unpacked into `folder`), and returns the `SourceFile`s to
  transcribe, in order, with notes (plain sentences) about what was skipped. It refuses, before any model work and
  with a `QasrError` naming the problem and the fix: more than `Settings.max_files` files (zip members counted),
  more than `Settings.max_upload_mb` together (uploads and unpacked members), a member that unpacks to over
  `MAX_RATIO` times its packed size (a zip bomb), a zip that cannot be read, and a request with no media at all.
- `transcribe_several(files, transcribe_one, workers=...)` runs `transcribe_one` on a few threads, so the files
  meet in the scheduler and share its calls, and yields the state of every file (`FileProgress`, in
  the order of `files`) each time one starts, finishes or fails. One failing does not stop the others; closing the
  generator cancels the files not yet started.
- `bundle(results, folder)` writes one zip with every finished transcript in every format of `writers.FORMATS`,
  a folder per file, and `failed.txt` listing the failures.

A zip comes from anyone, so nothing in it is trusted: member names are never paths (each member is written under a
generated name; its name is only shown, cleaned of path tricks and control characters), links and encrypted
members are skipped, zips inside the zip are not opened, and every unpacked byte is counted as it is written, so
the request stops at the size limit whatever the zip's headers claim. Its declared sizes only ever refuse early.
Which files count as media is decided by suffix (`MEDIA_SUFFIXES`); the decoder has the last word, per file.
"""

from __future__ import annotations

import logging
import lzma
import os
import queue
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass

from .access import uploaded_file
from .errors import ArchiveError, AudioError, QasrError, TooManyFilesError, UploadTooLargeError
from .results import Transcript
from .settings import Settings
from .writers import FORMATS, file_stem, render_transcript

log = logging.getLogger(__name__)

#: File suffixes taken for audio or video: the formats the page's file picker offers, and the other common ones.
MEDIA_SUFFIXES = frozenset({
    ".aac", ".aif", ".aifc", ".aiff", ".amr", ".au", ".flac", ".m4a", ".mka", ".mp2", ".mp3", ".oga", ".ogg",
    ".opus", ".wav", ".weba", ".wma", ".3gp", ".avi", ".flv", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg",
    ".webm", ".wmv",
})
ZIP_SUFFIX = ".zip"
#: A member that unpacks to more than this many times its packed size is a zip bomb (media hardly compresses)...
MAX_RATIO = 200
#: ...once it unpacks to more than this; a small file of silence may compress that well.
RATIO_MIN_BYTES = 4 << 20
#: A zip's table of contents is read whole when it is opened, so a bigger one (some 10,000 entries) is refused first.
MAX_DIRECTORY_BYTES = 1 << 20
#: Members are unpacked this much at a time.
CHUNK_BYTES = 1 << 20
#: Notes beyond this many are summed up in one line.
MAX_NOTES = 20
#: Folders and files that archivers and file managers add beside the real files.
JUNK_NAMES = frozenset({"__macosx", "thumbs.db", "desktop.ini"})
#: The longest name shown for a file; longer ones keep their start and end.
MAX_NAME_CHARS = 120

WAITING, WORKING, DONE, FAILED = "waiting", "working", "done", "failed"
#: What a failed file shows when the error was not the user's (the exception itself goes to the log).
UNEXPECTED_FAILURE = "This file could not be transcribed because of an error on the server; try it again on its own."

#: Reading a member fails with these when the archive is damaged (bz2 reports bad data as an OSError).
_UNREADABLE = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, NotImplementedError, OSError)


@dataclass(frozen=True)
class SourceFile:
    """One file to transcribe: where it is on disk, and the name shown for it (`talks.zip/day 1/intro.mp3` for a
    zip member, whose file on disk has a generated name)."""

    path: str
    name: str


@dataclass(frozen=True)
class FileProgress:
    """One file's row: its status (`WAITING`, `WORKING`, `DONE` or `FAILED`), the message of a failure, and the
    transcript once done."""

    file: SourceFile
    status: str = WAITING
    error: str | None = None
    transcript: Transcript | None = None


@dataclass(frozen=True)
class _Member:
    """A media file inside a zip, found but not unpacked yet."""

    archive: zipfile.ZipFile
    archive_name: str
    info: zipfile.ZipInfo
    name: str
    suffix: str


@dataclass
class _Budget:
    """The bytes one request has brought so far, uploads and unpacked members together, against its limit."""

    limit_mb: float
    taken: int = 0

    def take(self, size: int) -> None:
        self.taken += size
        if self.taken > self.limit_mb * 1024 * 1024:
            raise UploadTooLargeError(f"The files come to more than {self.limit_mb:g} MB (zips unpacked), over the "
                                      "limit for one request; send them in smaller groups.")


def expand_uploads(paths: Sequence[object], folder: str, settings: Settings, *,
                   upload_root: str) -> tuple[list[SourceFile], list[str]]:
    """The media files among `paths` (uploads under `upload_root`), each zip replaced by the media files inside it,
    unpacked into `folder`; and notes on what was skipped. Raises a `QasrError` for the limits the module docstring
    lists, leaving nothing unpacked behind."""
    if not paths:
        raise AudioError("No files were sent; choose one or more audio or video files, or a zip of them.")
    _check_count(len(paths), settings)  # before any path is looked at: a request may name a million
    with ExitStack() as archives:
        found: list[SourceFile | _Member] = []
        notes: list[str] = []
        for raw in paths:
            path = uploaded_file(raw, upload_root)
            name = _shown(os.path.basename(path))
            if _suffix(name) == ZIP_SUFFIX:
                archive = archives.enter_context(_open_zip(path, name))
                found += _media_members(archive, name, notes)
            elif _suffix(name) in MEDIA_SUFFIXES:
                found.append(SourceFile(path, name))
            else:
                notes.append(f"{name} is not audio or video; skipped.")
        _check_count(len(found), settings)
        if not found:
            raise AudioError("None of the files sent is audio or video (zips inside a zip are not opened); upload "
                             "wav, mp3, flac, ogg, opus, m4a, webm or videos with sound, or a zip of them.")
        budget = _Budget(settings.max_upload_mb)
        for item in found:
            if isinstance(item, SourceFile):
                budget.take(os.path.getsize(item.path))
        return _unpack(found, folder, budget), _summed_up(notes)


def _check_count(count: int, settings: Settings) -> None:
    if count > settings.max_files:
        raise TooManyFilesError(f"{count} files were sent (zips unpacked), over the limit of {settings.max_files} "
                                "at once; send them in smaller groups.")


def _open_zip(path: str, name: str) -> zipfile.ZipFile:
    """The archive at `path`, once its table of contents is known to be small enough to read."""
    try:
        with open(path, "rb") as file:
            # The end record says how long the table of contents is; zipfile reads all of it on opening.
            end = zipfile._EndRecData(file)  # type: ignore[attr-defined]
        if end is not None and end[zipfile._ECD_SIZE] > MAX_DIRECTORY_BYTES:  # type: ignore[attr-defined]
            raise ArchiveError(f"{name} lists too many entries for a zip of recordings; zip only the audio and "
                               "video files.")
        return zipfile.ZipFile(path)
    except _UNREADABLE as exc:
        raise _corrupt(name) from exc


def _media_members(archive: zipfile.ZipFile, archive_name: str, notes: list[str]) -> list[_Member]:
    """The archive's media members, in its order; a note in `notes` for each other file but junk and folders."""
    members = []
    for info in archive.infolist():
        inner = _member_name(info.filename)
        if info.is_dir() or not inner or _is_junk(inner):
            continue
        suffix = _suffix(inner)
        where = f"{_shown(inner)} in {archive_name}"
        if stat.S_ISLNK(info.external_attr >> 16):
            notes.append(f"{where} is a link, not a file; skipped.")
        elif suffix == ZIP_SUFFIX:
            notes.append(f"{where} is a zip inside the zip; skipped: unpack it and send its files.")
        elif suffix not in MEDIA_SUFFIXES:
            notes.append(f"{where} is not audio or video; skipped.")
        elif info.flag_bits & 0x1:
            notes.append(f"{where} is encrypted; skipped: zip it again without a password.")
        else:
            _check_ratio(info, where)
            members.append(_Member(archive, archive_name, info, _shown(f"{archive_name}/{inner}"), suffix))
    return members


def _unpack(found: list[SourceFile | _Member], folder: str, budget: _Budget) -> list[SourceFile]:
    """`found` as files on disk: zip members unpacked into a fresh folder inside `folder` (removed again if any
    fails), each under a generated name with its suffix."""
    if all(isinstance(item, SourceFile) for item in found):
        return list(found)  # type: ignore[arg-type]
    unpacked = tempfile.mkdtemp(prefix="unpacked-", dir=folder)
    files = []
    try:
        for index, item in enumerate(found):
            if isinstance(item, _Member):
                item = SourceFile(_write_member(item, os.path.join(unpacked, f"{index:03d}{item.suffix}"), budget),
                                  item.name)
            files.append(item)
        return files
    except BaseException:
        shutil.rmtree(unpacked, ignore_errors=True)
        raise


def _write_member(member: _Member, path: str, budget: _Budget) -> str:
    """Unpack `member` to `path`, counting every byte against `budget` before it is written."""
    with open(path, "xb") as out:
        for chunk in _member_chunks(member):
            budget.take(len(chunk))
            out.write(chunk)
    return path


def _member_chunks(member: _Member) -> Iterator[bytes]:
    """The member's bytes as they unpack; failing to read them means the archive is damaged."""
    try:
        with member.archive.open(member.info) as stream:
            while chunk := stream.read(CHUNK_BYTES):
                yield chunk
    except _UNREADABLE as exc:
        raise _corrupt(member.archive_name) from exc


def _check_ratio(info: zipfile.ZipInfo, where: str) -> None:
    """Refuse a member that says it unpacks to far more than its packed size allows. zipfile never unpacks more than
    a member says, so what this lets through cannot unpack to more; the size budget counts what it really does."""
    if info.file_size > RATIO_MIN_BYTES and info.file_size > MAX_RATIO * info.compress_size:
        raise UploadTooLargeError(f"{where} unpacks to over {MAX_RATIO} times its packed size, as a zip bomb does, "
                                  "so the zip is refused; send that file itself rather than a zip of it.")


def _corrupt(archive_name: str) -> ArchiveError:
    return ArchiveError(f"{archive_name} could not be read as a zip archive (corrupt or cut off); zip the files "
                        "again, or send them one by one.")


def _member_name(raw: str) -> str:
    """A member's name as a relative path to show: separators unified, empty, `.` and `..` parts and a drive letter
    dropped, control and formatting characters removed. Never used as a path on disk."""
    parts = [part for part in map(_printable, re.split(r"[\\/]+", raw)) if part not in ("", ".", "..")]
    if parts and re.fullmatch(r"[A-Za-z]:", parts[0]):
        parts = parts[1:]
    return "/".join(parts)


def _is_junk(inner: str) -> bool:
    """Hidden files and folders (`.DS_Store`, macOS's `._name` twins) and what archivers add (`__MACOSX/`)."""
    return any(part.startswith(".") or part.lower() in JUNK_NAMES for part in inner.split("/"))


def _printable(text: str) -> str:
    """`text` without control characters (NUL included), bidirectional overrides and other invisible formatting."""
    return "".join(char for char in text if char.isprintable()).strip()


def _shown(name: str) -> str:
    """A name as the page shows it: printable, and at most `MAX_NAME_CHARS` long, keeping its start and its end."""
    name = _printable(name) or "file"
    if len(name) <= MAX_NAME_CHARS:
        return name
    half = MAX_NAME_CHARS // 2
    return name[:half] + "…" + name[-(MAX_NAME_CHARS - half - 1):]


def _suffix(name: str) -> str:
    return os.path.splitext(name)[1].lower()


def _summed_up(notes: list[str]) -> list[str]:
    if len(notes) <= MAX_NOTES:
        return notes
    return notes[:MAX_NOTES - 1] + [f"…and {len(notes) - MAX_NOTES + 1} more files skipped."]


def transcribe_several(files: Sequence[SourceFile], transcribe_one: Callable[[SourceFile], Transcript], *,
                       workers: int) -> Iterator[tuple[FileProgress, ...]]:
    """Run `transcribe_one` on every file, `workers` at a time, and yield every file's `FileProgress` (in the order
    of `files`): first all waiting, then again each time one starts, finishes or fails, the last time with none left
    waiting or working. A `QasrError` fails its file with its message; any other exception is logged and the file
    shows `UNEXPECTED_FAILURE`. Closing the generator cancels the files not started; those running finish unseen."""
    rows = [FileProgress(file) for file in files]
    events: queue.SimpleQueue[tuple[int, Future | None]] = queue.SimpleQueue()

    def start(index: int, file: SourceFile) -> Transcript:
        events.put((index, None))
        return transcribe_one(file)

    pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(files))), thread_name_prefix="qasr-several")
    try:
        for index, file in enumerate(files):
            pool.submit(start, index, file).add_done_callback(lambda future, index=index: events.put((index, future)))
        yield tuple(rows)
        left = len(files)
        while left:
            index, future = events.get()
            rows[index] = _progress(rows[index].file, future)
            left -= future is not None
            yield tuple(rows)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _progress(file: SourceFile, future: Future | None) -> FileProgress:
    """The file's row once it started (no future yet) or ended (its future)."""
    if future is None:
        return FileProgress(file, WORKING)
    try:
        return FileProgress(file, DONE, transcript=future.result())
    except QasrError as exc:
        return FileProgress(file, FAILED, error=str(exc))
    except Exception:
        log.exception("transcribing %s failed", file.name)
        return FileProgress(file, FAILED, error=UNEXPECTED_FAILURE)


def bundle(results: Sequence[FileProgress], folder: str, name: str = "transcripts") -> str:
    """One zip in `folder` with every done file's transcript in every format, each file in a folder of its own named
    after it (`-2`, `-3` added where names repeat), and `failed.txt` naming each failed file and why; returns its
    path. The files hold the same bytes as `writers.write_all` writes."""
    path = os.path.join(folder, file_stem(name) + ".zip")
    taken: set[str] = set()
    failures = [f"{row.file.name}: {row.error}" for row in results if row.status == FAILED]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for row in results:
            if row.transcript is None:  # not done
                continue
            stem = _unique(file_stem(os.path.splitext(row.file.name)[0]), taken)
            for fmt, (_, suffix, _) in FORMATS.items():
                archive.writestr(f"{stem}/{stem}{suffix}", render_transcript(row.transcript, fmt))
        if failures:
            archive.writestr("failed.txt", "\n".join(failures) + "\n")
    return path


def _unique(stem: str, taken: set[str]) -> str:
    """`stem`, or `stem-2`, `stem-3`... whichever is not in `taken` (ignoring case, as Windows and macOS do); it is
    added to `taken`."""
    candidate, number = stem, 1
    while candidate.lower() in taken:
        number += 1
        candidate = f"{stem}-{number}"
    taken.add(candidate.lower())
    return candidate
