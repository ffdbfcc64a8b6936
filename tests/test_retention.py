"""Retention: expired files go, the disk cap holds (oldest first), protected files stay, the janitor keeps at it."""

from __future__ import annotations

import os
import time
from pathlib import Path

from qasr_space.retention import Janitor, sweep


def make(path: Path, size: int, age: float) -> Path:
    """A file of `size` bytes last written `age` seconds ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_expired_files_and_their_emptied_folders_go_and_the_rest_stay(tmp_path):
    old = make(tmp_path / "uploads" / "abc" / "old.wav", 100, age=120)
    fresh = make(tmp_path / "uploads" / "def" / "fresh.wav", 100, age=5)
    fetched = make(tmp_path / "fetch" / "tmp1" / "page.m4a", 100, age=300)
    os.utime(tmp_path / "uploads" / "abc", (time.time() - 120,) * 2)
    result = sweep([str(tmp_path / "uploads"), str(tmp_path / "fetch")], keep_seconds=60, max_bytes=10**9)
    assert (result.removed_files, result.removed_bytes, result.kept_bytes) == (2, 200, 100)
    assert not old.exists() and not fetched.exists() and fresh.exists()
    assert not (tmp_path / "uploads" / "abc").exists()  # its folder was old and is empty now
    assert (tmp_path / "uploads" / "def").is_dir()


def test_over_the_disk_cap_the_oldest_go_first(tmp_path):
    files = [make(tmp_path / f"f{i}.bin", 1000, age=50 - i) for i in range(5)]  # f0 oldest
    result = sweep([str(tmp_path)], keep_seconds=3600, max_bytes=2500)
    assert [f.exists() for f in files] == [False, False, False, True, True]
    assert result.kept_bytes == 2000


def test_protected_files_stay_whatever_their_age_or_the_cap(tmp_path):
    example = make(tmp_path / "cache" / "english.mp3", 1000, age=10_000)
    upload = make(tmp_path / "cache" / "talk.wav", 1000, age=10_000)
    sweep([str(tmp_path)], keep_seconds=60, max_bytes=0, protected={str(example)})
    assert example.exists() and not upload.exists()


def test_a_missing_root_is_nothing_to_sweep(tmp_path):
    assert sweep([str(tmp_path / "never-made")], keep_seconds=1, max_bytes=0).kept_bytes == 0


def test_the_janitor_sweeps_until_stopped(tmp_path):
    janitor = Janitor(lambda: [str(tmp_path)], keep_seconds=0.5, max_bytes=10**9, interval=0.1).start()
    try:
        written = make(tmp_path / "upload.wav", 10, age=0)
        deadline = time.monotonic() + 10
        while written.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not written.exists()
    finally:
        janitor.stop()
    later = make(tmp_path / "later.wav", 10, age=100)
    time.sleep(0.3)
    assert later.exists()  # stopped: nothing sweeps any more
