"""The Space's page: a thin Gradio adapter over the core.

`build_demo(manager)` is the whole app as a Blocks; `render_ui(manager)` draws the same UI inside a Blocks (or a
tab) someone else owns. Handlers only translate: widgets → core calls (`prepare_audio`, `iter_transcribe`,
`collect`, `align`, `fetch_audio`, the writers) → widgets, with every `QasrError` shown as a `gr.Error` that carries
its message. The GPU-bound calls go through `gpu.on_gpu`, which is a no-op off ZeroGPU.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import os
import queue
import threading
import shutil
import tempfile
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from html import escape
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

import gradio as gr
import numpy as np
import soundfile as sf
from gradio.utils import get_upload_folder

from .access import uploaded_file
from .audio import SAMPLE_RATE
from .errors import AudioError, QasrError
from .fetch import fetch_audio
from .gpu import ON_ZERO_GPU, on_gpu, user_error
from .karaoke import (DOWNLOADS_CSS, KARAOKE_CSS, KARAOKE_JS, clock, download_links, render_downloads,
                      render_karaoke, render_notice)
from .languages import ALIGNER_LANGUAGES, LANGUAGES, aligner_supports, normalize_language
from .models import ALIGNER_MODEL, ASR_MODELS, DEFAULT_MODEL, ModelManager, ModelStatus, asr_model_name
from .diarize import MAX_SPEAKERS, Diarization, assign_speakers, parse_speakers, rename_speakers
from .progress import ProgressSnapshot, TranscriptionWatch
from .results import AsrOutput, Transcript
from .several import DONE, FAILED, MEDIA_SUFFIXES, WORKING, FileProgress, SourceFile, bundle, expand_uploads, \
    transcribe_several
from .streaming import IDLE_SECONDS, LiveSession, LiveSessions, LiveText, transcribe_clips, update
from .transcribe import (ChunkResult, align, check_align_text, check_context, collect, iter_transcribe, prepare_audio,
                         require_speech, with_speakers)
from .writers import file_stem, to_txt, write_all

log = logging.getLogger(__name__)

AUTO = "Auto"
TRANSCRIBE = "Transcribe"
ALIGN = "Align my own text"
#: Where the audio comes from: one button each, so that on a phone every input is one tap away.
FILE_SOURCE, RECORD_SOURCE, URL_SOURCE, LIVE_SOURCE, SEVERAL_SOURCE = "file", "record", "url", "live", "several"
SOURCE_CHOICES = [("Upload", FILE_SOURCE), ("Record", RECORD_SOURCE), ("URL", URL_SOURCE), ("Live", LIVE_SOURCE),
                  ("Several files", SEVERAL_SOURCE)]
#: Sources with a button of their own (or none): the main Transcribe button hides for them.
OWN_BUTTON_SOURCES = frozenset({LIVE_SOURCE, SEVERAL_SOURCE})
SEVERAL_TYPES = [*sorted(MEDIA_SUFFIXES), ".zip"]
#: A file's status as its row says it.
STATUS_LABELS = {WORKING: "Transcribing…", DONE: "Done", FAILED: "Failed"}
PLACEHOLDER = "Your transcript appears here: follow it word by word with the player, fix it, and download subtitles."
#: On a narrow screen the result sits below the inputs: pressing the button brings it into view.
SHOW_RESULT_JS = ("() => { if (window.innerWidth < 768) document.getElementById('qasr-result')"
                  ".scrollIntoView({behavior: 'smooth', block: 'start'}); }")
#: What the file picker offers: audio and video (the core decodes the sound of a video), plus extensions some
#: systems give no audio/video type.
UPLOAD_TYPES = ["audio", "video", ".opus", ".m4a", ".mkv", ".webm", ".flac", ".aac", ".wma"]

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
#: (file, language, word timestamps, label) for the one-click examples; `assets/make_examples.sh` makes the files.
EXAMPLES = [
    ("english.mp3", AUTO, True, "English, with word timestamps"),
    ("german.ogg", "German", True, "German, with word timestamps"),
    ("chinese.mp3", AUTO, False, "Mandarin Chinese, language detected"),
]
#: File extensions a browser's <audio> plays as they are; anything else is played from a WAV of the decoded audio.
PLAYABLE_SUFFIXES = frozenset({".wav", ".mp3", ".m4a", ".aac", ".mp4", ".ogg", ".oga", ".opus", ".webm", ".weba",
                               ".flac"})
TIMESTAMPS_INFO = f"Word timing from Qwen3-ForcedAligner, for {len(ALIGNER_LANGUAGES)} languages."
AUTO_TIMESTAMPS_INFO = (f"Word timing from Qwen3-ForcedAligner ({', '.join(ALIGNER_LANGUAGES)}); the result says so "
                        "if the detected language is not one of them.")
LANGUAGE_INFO = "Auto detects it."
SPEAKERS_OFF = "Off"
SPEAKER_CHOICES = [SPEAKERS_OFF, AUTO, *(str(n) for n in range(2, 7))]
SPEAKERS_INFO = "Who spoke when: Auto counts the voices, or say how many. Runs offline on the CPU."
ALIGN_LANGUAGE_INFO = "The language of the text, for splitting it into words; Auto splits at spaces."
LIVE_NOTE = ("Press Record and speak: text appears as you talk (grey, slanted words may still change). When you "
             "stop, the whole recording is transcribed once more, with word timestamps when they are on.")
API_NOTE = ('<p><strong>Use it from code.</strong> Every run is also an API: the <a class="qasr-api-link" '
            'href="?view=api">API page</a> lists the named endpoints for <code>gradio_client</code>. This server also '
            "speaks OpenAI's speech-to-text API at <code>/v1/audio/transcriptions</code>: point an OpenAI client's "
            "<code>base_url</code> at this page's address plus <code>/v1</code>; <code>model=\"whisper-1\"</code> "
            "(many clients' default) gets the 0.6B model.</p>")
#: The note's link opens Gradio's API panel, as "Use via API" in the footer does; the footer hides that button on a
#: narrow page, and a page loaded with ?view=api does not open the panel, so the link clicks the button itself.
API_NOTE_JS = """
element.addEventListener('click', (event) => {
  const link = event.target.closest ? event.target.closest('a.qasr-api-link') : null;
  const button = document.querySelector('footer button.show-api');
  if (link && button) { event.preventDefault(); button.click(); }
});
"""
API_NOTE_CSS = "code { font-size: 0.9em; } p { margin: 0; }"
#: Run once by the page (`launch(js=...)`): Gradio draws a radio group as a `fieldset` whose title is a `span`, not a
#: `legend`, so a screen reader announces "group" with no name; each such group is named by its title, also when an
#: accordion draws one later.
PAGE_JS = """
() => {
  const nameGroups = () => document.querySelectorAll('fieldset:not([aria-labelledby])').forEach((group) => {
    const title = group.querySelector(':scope > [data-testid="block-info"]');
    if (!title || !group.id || !group.querySelector('input[type=radio]')) return;
    title.id = `${group.id}-title`;
    group.setAttribute('aria-labelledby', title.id);
  });
  nameGroups();
  new MutationObserver(nameGroups).observe(document.body, {childList: true, subtree: true});
}
"""
#: How often a running transcription reports how far it has got.
PROGRESS_SECONDS = 1.0
#: How often a run waiting on a blocking step yields (`SpaceUI._aside`): a Cancel takes effect at the next yield,
#: and until then Gradio drops the page's next Transcribe.
ASIDE_TICK_SECONDS = 0.25
#: What the result area says while a slow input (a URL's download, a long file's decoding) is read.
READING = "Reading the audio…"
CANCELLED = "Cancelled: nothing more is decoded for this run. Press Transcribe to start again."
SERVER_FAULT = ("Something went wrong on the server, not with your input; it is logged. Press Transcribe to try "
                "again.")
#: How often the browser sends new microphone audio, and the longest live session.
LIVE_STREAM_EVERY_SECONDS = 0.5


SEVERAL_CSS = """
.qs-table { width: 100%; border-collapse: collapse; font-size: 0.9rem; table-layout: fixed; margin: 0; }
.qs-table th, .qs-table td { text-align: left; padding: 6px; border: 0;
  border-bottom: 1px solid var(--border-color-primary);
  overflow-wrap: anywhere; vertical-align: top; }
.qs-table th:nth-child(1) { width: 22%; } .qs-table th:nth-child(2) { width: 14%; }
.qs-table th:nth-child(4) { width: 24%; }
.qs-table .qs-failed td { color: var(--error-text-color); }
.qs-table .qk-download { margin: 0 4px 4px 0; }
.qs-notes { color: var(--body-text-color-subdued); font-size: 0.85rem; }
/* On a phone each file is a card: name and status on one line, its result, then its downloads. */
@media (max-width: 640px) {
  .qs-table thead { display: none; }
  .qs-table tr { display: grid; grid-template-columns: 1fr auto; gap: 4px 8px; padding: 8px 0;
    border-bottom: 1px solid var(--border-color-primary); }
  .qs-table td { display: block; padding: 0; border: 0; }
  .qs-table td:nth-child(1) { font-weight: 600; }
  .qs-table td:nth-child(3), .qs-table td:nth-child(4) { grid-column: 1 / -1; }
}
""" + DOWNLOADS_CSS
LIVE_CSS = """
.qk-live-label { font-size: var(--block-label-text-size); color: var(--block-label-text-color); margin-bottom: 4px; }
.qk-live {
  font-size: 1.1rem; line-height: 1.6; min-height: 2em; padding: 8px 12px; border-radius: var(--block-radius);
  border: 1px solid var(--border-color-primary); background: var(--block-background-fill);
}
.qk-live-empty { color: var(--neutral-500); font-size: 0.95rem; }
.dark & .qk-live-empty { color: var(--neutral-400); }
/* Tentative words are grey and italic: still readable (4.5:1 and more), and not told apart by colour alone. */
.qk-tentative { color: var(--neutral-500); font-style: italic; }
.dark & .qk-tentative { color: var(--neutral-400); }
"""


def file_url(path: str) -> str:
    """The URL of a served file, relative so it also works when the app is mounted under a sub-path. Gradio's file
    route answers Range requests, which the <audio> element needs to seek."""
    return "gradio_api/file=" + quote(os.path.abspath(path))


def shown_downloads(value: list[str] | str | None) -> str:
    """Files as the handlers give them (a list of paths, one path, or None) as the page shows them: one labelled row
    of links that say what each file is (`karaoke.render_downloads`)."""
    paths = [value] if isinstance(value, str) else value or []
    return render_downloads([(file_url(path), Path(path).name) for path in paths])


def downloads_box(elem_id: str) -> gr.HTML:
    """An output that takes files and shows `shown_downloads` of them: no empty box before there are any, no
    "Remove this file" buttons, no link named only by its size. (Its own `postprocess`, not a subclass: Gradio
    writes a .pyi beside the module of every component subclass.)"""
    box = gr.HTML(None, css_template=DOWNLOADS_CSS, js_on_load=None, elem_id=elem_id)
    box.postprocess = shown_downloads
    return box


class ServedFiles:
    """Per-request folders under Gradio's upload folder, which Gradio serves at `/gradio_api/file=`: the audio the
    karaoke player plays for a URL, and the download files. `retention.Janitor` deletes them once their time to
    live is up."""

    def __init__(self, root: str):
        self.root = root

    def new_folder(self) -> str:
        os.makedirs(self.root, exist_ok=True)
        return tempfile.mkdtemp(dir=self.root)


@dataclass
class _Input:
    """Decoded audio plus what the page shows about it."""

    audio: np.ndarray
    media_path: str  # the file the karaoke player plays
    name: str  # base name for the download files
    title: str | None = None  # the fetched page's title
    forced: bool | None = None  # the language was chosen, not detected (None: as the request says)


@dataclass
class _Shown:
    """The result on the page, kept (per browser tab) so that renaming speakers or re-timing an edited text can
    redo the view and downloads: the transcript with the speakers' own labels, and where its audio and files go."""

    transcript: Transcript
    media_path: str
    name: str
    title: str | None
    forced: bool = False
    #: The names given to the speakers' labels by the last rename.
    names: dict[str, str] = field(default_factory=dict)


def _playable(path: str, audio: np.ndarray, folder: str, *, copy: bool) -> str:
    """A file the browser can play: `path` itself (copied into `folder` when it will vanish), or a 16 kHz WAV of the
    decoded samples when browsers cannot play its format (a .mkv, say)."""
    if Path(path).suffix.lower() in PLAYABLE_SUFFIXES:
        return shutil.copy(path, folder) if copy else path
    return _write_wav(audio, folder, "audio.wav")


def _write_wav(audio: np.ndarray, folder: str, name: str) -> str:
    """16 kHz 16-bit WAV of decoded samples, which every browser plays."""
    out = os.path.join(folder, name)
    sf.write(out, audio, SAMPLE_RATE, subtype="PCM_16")
    return out


#: What every update sets: the language line, transcript text, karaoke HTML, download files (None until the end), the
#: speaker names table, the result kept for renaming and re-timing, and whether the result's extras (language,
#: downloads, the editor) show.
Outputs = tuple[str, str, str, "list[str] | None", dict, "_Shown | None", dict]
T = TypeVar("T")


class SpaceUI:
    """The handlers behind the widgets, bound to one model manager."""

    def __init__(self, manager: ModelManager, served: ServedFiles | None = None, upload_root: str | None = None):
        self.manager = manager
        self.settings = manager.settings
        self.served = served or ServedFiles(os.path.join(get_upload_folder(), "qasr-space"))
        #: Files the page's handlers read must lie here: Gradio's upload folder, unless a test names another.
        self.upload_root = upload_root or get_upload_folder()
        self.live_sessions = LiveSessions(self.settings.max_live_sessions, self.settings.max_live_seconds)
        #: Where a run's long blocking steps run (`_aside`): as many at once as the queue runs requests.
        self._steps = ThreadPoolExecutor(max_workers=max(1, self.settings.concurrency_limit),
                                         thread_name_prefix="qasr-step")

        @on_gpu
        def transcribe_chunks(audio: np.ndarray, model: str, language: str | None, context: str | None,
                              timestamps: bool) -> Iterator[ChunkResult]:
            yield from iter_transcribe(audio, manager=manager, model=model, language=language, context=context,
                                       timestamps=timestamps)

        @on_gpu
        def align_text(audio: np.ndarray, text: str, language: str | None) -> Transcript:
            return align(audio, text, manager=manager, language=language)

        @on_gpu
        def transcribe_live_clips(clips: list[np.ndarray], model: str | None, language: str | None,
                                  context: str | None, max_new_tokens: int | None = None) -> list[AsrOutput]:
            return transcribe_clips(manager, clips, model, language, context, max_new_tokens)

        self._transcribe_chunks = transcribe_chunks
        self._align_text = align_text
        self._transcribe_live_clips = transcribe_live_clips

    def live_update(self, chunk: tuple[int, np.ndarray] | None, session: LiveSession | None, model: str,
                    language: str, context: str | None) -> tuple[str, LiveSession]:
        """One streamed microphone chunk: keep it in this person's session and show committed + tentative text."""
        if session is not None and session.finished and not session.released:
            return render_live(session.live_text()), session  # a chunk that arrived after the recording ended
        opened = session is None
        try:
            session = session or self.live_sessions.open()
            session.feed(chunk)
            live = update(session, self.manager, model=model, language=None if language == AUTO else language,
                          context=(context or "").strip() or None, asr=self._transcribe_live_clips)
        except (QasrError, gr.Error) as exc:
            if opened and session is not None:  # the page keeps no state from a failed call: nothing would free it
                self.live_sessions.release(session)
            raise page_error(exc) from None
        return render_live(live), session

    def live_start(self, session: LiveSession | None) -> None:
        """A new recording starts: the next chunk opens a new session. One still recording (its stop never came) is
        freed; a finished one is left to its final pass."""
        if session is not None and not session.finished:
            self.live_sessions.release(session)

    def live_finish(self, session: LiveSession | None, model: str, language: str, context: str | None,
                    timestamps: bool, speakers: str = SPEAKERS_OFF,
                    progress: Callable = gr.Progress()) -> Iterator[tuple]:
        """Recording stopped: the whole recording once through the pipeline, shown like an upload's result (the text
        so far after every chunk). The page lets the session state go afterwards, in an event of its own."""
        session = session or LiveSession()  # nothing streamed yet: an empty recording, which `close` refuses
        live = render_live(session.live_text(), final=True)
        for outputs in self._shown_errors(self._run(functools.partial(_recorded_input, session), TRANSCRIBE, None,
                                                    model, language, context, timestamps, speakers, progress)):
            yield (*outputs, live)

    def run(self, source: str, file_path: str | None, recording_path: str | None, url: str | None, mode: str,
            text: str | None, model: str, language: str, context: str | None, timestamps: bool,
            speakers: str = SPEAKERS_OFF, progress: Callable = gr.Progress()) -> Iterator[Outputs]:
        """Transcribe (or align) the input of the `source` tab, yielding the outputs as chunks finish; an error is
        shown in the result area (`_shown_errors`), where it stays until the next run."""
        yield from self._shown_errors(self._run(
            functools.partial(self._read_input, source, file_path, recording_path, url), mode, text, model, language,
            context, timestamps, speakers, progress))

    def run_several(self, paths: list[str] | None, model: str, language: str, context: str | None, timestamps: bool,
                    speakers: str = SPEAKERS_OFF, progress: Callable = gr.Progress()) -> Iterator[tuple[str, str | None]]:
        """Several files, or zips of them, transcribed together (they meet in the model's batcher): the table of
        files after every start and end, each done file with its downloads, then one zip of everything."""
        try:
            forced = normalize_language(None if language == AUTO else language)
            check_context(context, self.settings)
            count = parse_speakers(speakers)
            folder = self.served.new_folder()
            try:
                files, notes = expand_uploads(paths or [], folder, self.settings, upload_root=self.upload_root)
            except Exception:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            name = asr_model_name(model)
            self._load_models(ASR_MODELS[name], *([ALIGNER_MODEL] if timestamps else []), progress=progress)
        except (QasrError, gr.Error) as exc:
            yield render_notice(exc.message if isinstance(exc, gr.Error) else str(exc), error=True), None
            return

        def transcribe_one(file: SourceFile) -> Transcript:
            audio = prepare_audio(file.path, self.settings)
            chunks = self._transcribe_chunks(audio, name, forced, (context or "").strip() or None, bool(timestamps))
            transcript = require_speech(collect(chunks, duration=len(audio) / SAMPLE_RATE,
                                                model_name=ASR_MODELS[name], forced=forced))
            return with_speakers(transcript, audio, count)

        downloads: dict[int, list[str]] = {}
        workers = self.settings.batch_size if self.settings.batch_requests else 1
        rows: tuple[FileProgress, ...] = ()
        progress(0.0, desc=f"Transcribing {len(files)} files")
        for rows in transcribe_several(files, transcribe_one, workers=workers):
            for index, row in enumerate(rows):
                if row.status == DONE and index not in downloads:
                    own = os.path.join(folder, f"{index + 1:03d}")
                    os.makedirs(own)
                    downloads[index] = write_all(row.transcript, own, file_stem(Path(row.file.name).stem))
            finished = sum(row.status in (DONE, FAILED) for row in rows)
            progress(finished / len(rows), desc=f"{finished} of {len(rows)} files done")
            yield render_several(rows, downloads, notes), None
        yield render_several(rows, downloads, notes), bundle(rows, folder)

    def retime(self, shown: _Shown | None, text: str | None, progress: Callable = gr.Progress()) -> Iterator[Outputs]:
        """The edited transcript aligned to the same audio again: new word times, the same speakers' turns, and the
        karaoke view and every download redone."""
        def read_again(folder: str, cancelled: threading.Event) -> _Input:
            if shown is None:
                raise QasrError("There is no result to re-time yet: transcribe something first, then edit the text.")
            try:
                audio = prepare_audio(shown.media_path, self.settings)
            except AudioError:
                raise AudioError("The audio of this result is no longer on the server (files are kept for "
                                 f"{self.settings.keep_minutes:g} minutes): transcribe it again.") from None
            return _Input(audio, shown.media_path, shown.name, shown.title, shown.forced)

        language = shown.transcript.language if shown is not None else None
        if shown is not None and shown.transcript.speakers:
            text = _without_speaker_names(text or "", [*shown.transcript.speakers, *shown.names.values()])
        for outputs in self._shown_errors(self._run(read_again, ALIGN, text, None, language or AUTO, None, True,
                                                    SPEAKERS_OFF, progress)):
            if shown is not None and shown.transcript.turns and outputs[5] is not None:
                outputs = self._with_turns(outputs, shown)
            yield outputs

    def _with_turns(self, outputs: Outputs, shown: _Shown) -> Outputs:
        """A re-timed result given the speakers of the result it replaces (no diarization again), with the names
        they were given."""
        kept = outputs[5]
        diarization = Diarization(shown.transcript.turns, shown.transcript.overlaps)
        transcript = rename_speakers(assign_speakers(kept.transcript, diarization), shown.names)
        folder = os.path.dirname(outputs[3][0])
        item = _Input(np.zeros(0, np.float32), kept.media_path, kept.name, kept.title, kept.forced)
        return self._outputs(transcript, item, files=write_all(transcript, folder, kept.name))

    def _shown_errors(self, updates: Iterator[Outputs]) -> Iterator[Outputs]:
        """The updates, and a refusal shown in the result area in place of a result: a toast fades, this stays
        until the next run. A fault of the server's is logged and shown the same way, so the run still ends as a
        success: what follows it on the page (hiding Cancel) listens for success, which a Cancel never sends."""
        try:
            yield from updates
        except (QasrError, gr.Error) as exc:
            yield error_outputs(exc)
        except Exception:
            log.exception("a transcription on the page failed")
            yield error_outputs(QasrError(SERVER_FAULT))

    def run_example(self, file_path: str, language: str, timestamps: bool,
                    progress: Callable = gr.Progress()) -> Iterator[Outputs]:
        """An example clip, transcribed with its own language and timestamps, the default model and no context."""
        yield from self.run(FILE_SOURCE, file_path, None, None, TRANSCRIBE, None, DEFAULT_MODEL, language, None,
                            timestamps, SPEAKERS_OFF, progress)

    def rename(self, shown: _Shown | None, names: list[list[str]] | None) -> tuple:
        """The result again with the speakers renamed as the table says: karaoke, text and every download."""
        if shown is None:
            raise user_error("There is no result with speakers to rename yet: transcribe with Speakers on first.")
        try:
            mapping = {str(row[0]): str(row[1] or "") for row in (names or [])[:MAX_SPEAKERS] if len(row) >= 2}
            renamed = rename_speakers(shown.transcript, mapping)
        except QasrError as exc:
            raise page_error(exc) from None
        folder = self.served.new_folder()
        files = write_all(renamed, folder, shown.name)
        return (_shown_text(renamed), self._karaoke(renamed, shown.media_path, shown.title), files,
                replace(shown, names=mapping))

    def _run(self, read_input: Callable[[str, threading.Event], _Input], mode, text, model, language, context,
             timestamps, speakers, progress) -> Iterator[Outputs]:
        """`read_input(folder, cancelled)` gives the audio (files it needs go in the request's folder; a download
        stops once `cancelled` is set); then transcribe or align it, and find the speakers when asked, yielding the
        outputs as chunks finish. The blocking steps run aside (`_aside`), so Cancel stops the run in any of them."""
        forced = normalize_language(None if language == AUTO else language)
        if mode == ALIGN:
            check_align_text(text, self.settings)
        else:
            check_context(context, self.settings)
        count = parse_speakers(speakers)
        progress(0.0, desc="Reading the audio")
        folder = self.served.new_folder()
        try:
            item = yield from self._aside(functools.partial(read_input, folder), notice_outputs(READING))
            if item.forced is None:
                item.forced = forced is not None
            empty = Transcript(language=None, text="", duration=len(item.audio) / SAMPLE_RATE)
            if mode == ALIGN:
                aligning = self._outputs(empty, item, status="Aligning…")
                yield aligning
                progress(0.0, desc="Aligning")
                transcript = yield from self._aside(
                    lambda _: self._align_text(item.audio, text or "", forced), aligning)
            else:
                yield self._outputs(empty, item, status="Transcribing…")
                transcript = yield from self._transcribe(item, model, forced, context, timestamps, progress)
            if count is not None:
                finding = self._outputs(transcript, item, status="Finding speakers…")
                yield finding
                progress(1.0, desc="Finding speakers")
                transcript = yield from self._aside(lambda _: with_speakers(transcript, item.audio, count), finding)
            files = write_all(transcript, folder, item.name)
        except BaseException:  # a failed or cancelled request leaves no folder behind
            shutil.rmtree(folder, ignore_errors=True)
            raise
        yield self._outputs(transcript, item, files=files)

    def _aside(self, step: Callable[[threading.Event], T], waiting: Outputs) -> Generator[Outputs, None, T]:
        """`step(cancelled)` in a worker thread, with `waiting` yielded every `ASIDE_TICK_SECONDS` until it returns.

        Gradio stops a cancelled run that has yielded only at its next yield, and until then drops the page's next
        Transcribe: a long blocking step (a URL's download, the aligner, diarization) would hold the page. Closing
        this generator sets `cancelled` (a download stops at it) and drops the step if it has not started; one that
        has started ends aside. The workers are as many as the requests the queue runs at once, so cancelled steps
        cannot pile up.
        """
        cancelled = threading.Event()
        future = self._steps.submit(contextvars.copy_context().run, step, cancelled)
        try:
            while not wait([future], timeout=ASIDE_TICK_SECONDS).done:
                yield waiting
            return future.result()
        finally:
            cancelled.set()
            future.cancel()

    def _transcribe(self, item: _Input, model: str, forced: str | None, context: str | None, timestamps: bool,
                    progress: Callable) -> Iterator[Outputs]:
        """Yield the partial result after every chunk (the core's `collect` over the chunks so far); return the
        final transcript."""
        name = asr_model_name(model)
        duration = len(item.audio) / SAMPLE_RATE
        self._load_models(ASR_MODELS[name], *([ALIGNER_MODEL] if timestamps else []), progress=progress)
        progress(0.0, desc=f"Transcribing {clock(duration)} of audio")
        done: list[ChunkResult] = []
        transcript = Transcript(language=None, text="", duration=duration)
        shown_status = "Transcribing…"
        for event in self._watched_chunks(item.audio, name, forced, (context or "").strip() or None,
                                          bool(timestamps)):
            if isinstance(event, ProgressSnapshot):
                shown_status = progress_status(event)
                progress(event.fraction, desc=progress_status(event, share=False))
                # The result area says it too, at every tick, changed or not: Gradio stops a cancelled run only when
                # it yields, and until then ignores the page's next Transcribe.
                yield self._outputs(transcript, item, status=shown_status)
                continue
            done.append(event)
            transcript = collect(iter(done), duration=duration, model_name=ASR_MODELS[name], forced=forced)
            progress(min(1.0, event.chunk.end / duration),
                     desc=f"Transcribed {clock(event.chunk.end)} of {clock(duration)}")
            yield self._outputs(transcript, item, status=shown_status)
        return require_speech(transcript if done else None)

    def _watched_chunks(self, audio: np.ndarray, model: str, forced: str | None, context: str | None,
                        timestamps: bool) -> Iterator[ChunkResult | ProgressSnapshot]:
        """The chunks as they finish, and between them, every `PROGRESS_SECONDS`, how far the decoding has got:
        the chunks decode in a worker thread, watched, so a batch of several chunks shows progress while it runs.
        Closing this generator (Cancel, or the tab gone) cancels the decoding at its next step. On ZeroGPU, whose
        GPU calls run in another process that cannot share the watch, the chunks come as they finish; elsewhere
        `on_gpu` does nothing, so the core is called directly."""
        if ON_ZERO_GPU:
            yield from self._transcribe_chunks(audio, model, forced, context, timestamps)
            return
        watch = TranscriptionWatch()
        found: queue.Queue = queue.Queue()

        def decode() -> None:
            try:
                for result in iter_transcribe(audio, manager=self.manager, model=model, language=forced,
                                              context=context, timestamps=timestamps, watch=watch):
                    found.put(result)
                found.put(None)
            except BaseException as exc:  # handed to the request's thread, which raises it
                found.put(exc)

        threading.Thread(target=decode, name="qasr-decode", daemon=True).start()
        try:
            while True:
                try:
                    result = found.get(timeout=PROGRESS_SECONDS)
                except queue.Empty:
                    yield watch.snapshot()
                    continue
                if result is None:
                    return
                if isinstance(result, BaseException):
                    raise result
                yield result
        finally:
            watch.cancel()

    def _load_models(self, *hub_ids: str, progress: Callable) -> None:
        """Load what is not loaded yet, with a "Loading" stage on the progress bar: a first load takes a while."""
        for hub_id in hub_ids:
            if hub_id == ALIGNER_MODEL:
                if not self.manager.is_loaded(hub_id):
                    progress(0.0, desc=f"Loading {hub_id.split('/')[-1]} (first use)")
                    self.manager.aligner()
            elif not self.manager.engine.is_ready(hub_id):
                progress(0.0, desc=f"Loading {hub_id.split('/')[-1]} (first use)")
                self.manager.engine.check(hub_id)

    def _read_input(self, source: str, file_path: str | None, recording_path: str | None, url: str | None,
                    folder: str, cancelled: threading.Event) -> _Input:
        if source == URL_SOURCE:
            url = (url or "").strip()
            if not url:
                raise AudioError("The URL field is empty: paste a link to a video page (YouTube and the other sites "
                                 "yt-dlp supports) or to a media file.")
            with fetch_audio(url, self.settings, cancelled=cancelled) as fetched:
                audio = prepare_audio(fetched.audio, self.settings)
                media = _playable(fetched.path, fetched.audio, folder, copy=True)
            title = f"{fetched.title} ({clock(fetched.duration)})"
            return _Input(audio, media, file_stem(fetched.title), title)
        if source == LIVE_SOURCE:
            raise AudioError("Live transcription runs while you record: press the microphone button in the Live "
                             "microphone tab, and the result appears when you stop.")
        audio_path = recording_path if source == RECORD_SOURCE else file_path
        if not audio_path:
            raise AudioError("No recording yet: press the microphone button, speak, and stop; then press Transcribe."
                             if source == RECORD_SOURCE else
                             "No audio: upload an audio or video file first, then press the button again.")
        audio_path = uploaded_file(audio_path, self.upload_root)
        audio = prepare_audio(audio_path, self.settings)
        return _Input(audio, _playable(audio_path, audio, folder, copy=False), file_stem(Path(audio_path).stem))

    def _outputs(self, transcript: Transcript, item: _Input, *, status: str | None = None,
                 files: list[str] | None = None) -> Outputs:
        """Every output for `transcript`; once it is final (`files`), the speaker table, the kept result and the
        result's extras too."""
        karaoke = self._karaoke(transcript, item.media_path, item.title, status)
        final = files is not None
        names = gr.update(value=[[s, s] for s in transcript.speakers] or None,
                          visible=final and bool(transcript.speakers))
        shown = _Shown(transcript, item.media_path, item.name, item.title, bool(item.forced)) if final else None
        return (language_line(transcript.language, bool(item.forced)), _shown_text(transcript), karaoke, files, names,
                shown, gr.update(visible=final))

    @staticmethod
    def _karaoke(transcript: Transcript, media_path: str, title: str | None, status: str | None = None) -> str:
        return render_karaoke(transcript, file_url(media_path), title=title, status=status)


def render_several(rows: tuple[FileProgress, ...], downloads: dict[int, list[str]], notes: list[str]) -> str:
    """The table of several files: each one's name, status, language and the start of its text (or why it failed),
    and its downloads; then what was skipped. All of it is escaped: names come from uploads and zips."""
    lines = []
    for index, row in enumerate(rows):
        transcript = row.transcript
        if transcript is not None:
            result = f"{language_line(transcript.language, False)} · {clock(transcript.duration)} · {transcript.text}"
        else:
            result = row.error or ""
        links = download_links([(file_url(path), Path(path).name) for path in downloads.get(index, [])], short=True)
        lines.append(f'<tr class="qs-{row.status}"><td>{escape(row.file.name)}</td>'
                     f"<td>{escape(STATUS_LABELS.get(row.status, 'Waiting'))}</td>"
                     f'<td class="qs-result">{escape(result[:300])}</td><td>{links}</td></tr>')
    skipped = "".join(f"<li>{escape(note)}</li>" for note in notes)
    return ('<table class="qs-table"><thead><tr><th>File</th><th>Status</th><th>Result</th><th>Downloads</th></tr>'
            f'</thead><tbody>{"".join(lines)}</tbody></table>' + (f'<ul class="qs-notes">{skipped}</ul>' if skipped else ""))


def progress_status(snapshot: ProgressSnapshot, *, share: bool = True) -> str:
    """How far a transcription has got, as the result area says it; the progress bar shows the share itself, so its
    label goes without (`share=False`)."""
    if snapshot.seconds_left is None:
        return "Transcribing…"
    left = f"about {clock(snapshot.seconds_left)} left"
    return f"Transcribing… {snapshot.fraction:.0%}, {left}" if share else f"Transcribing… {left}"


def _without_speaker_names(text: str, speakers: list[str]) -> str:
    """The edited text without the "Anna: " that leads each paragraph of a result with speakers (the box shows them,
    the aligner must not time them as words), in one run: the speakers' turns, not the box's paragraphs, lay out
    the result again."""
    leads = tuple(f"{speaker}:" for speaker in sorted(set(speakers), key=len, reverse=True) if speaker)
    paragraphs = []
    for paragraph in text.split("\n\n"):
        stripped = paragraph.strip()
        lead = next((lead for lead in leads if stripped.startswith(lead)), None)
        paragraphs.append(stripped[len(lead):].strip() if lead else stripped)
    return " ".join(p for p in paragraphs if p)


def language_line(language: str | None, forced: bool) -> str:
    """Whose language the result is in: the one the user chose, or the one the model heard."""
    return f"{'Forced' if forced else 'Detected'}: {language}" if language else ""


def notice_outputs(message: str, *, error: bool = False) -> Outputs:
    """The result area showing a line instead of a result (`render_notice`), with the result's extras hidden."""
    return ("", "", render_notice(message, error=error), None, gr.update(value=None, visible=False), None,
            gr.update(visible=False))


def error_outputs(exc: QasrError | gr.Error) -> Outputs:
    """The result area showing a refusal instead of a result; the input stays as the user left it."""
    return notice_outputs(exc.message if isinstance(exc, gr.Error) else str(exc), error=True)


def _shown_text(transcript: Transcript) -> str:
    """The plain transcript box: the text, or with speakers one turn per paragraph, as the TXT download has it."""
    return to_txt(transcript).rstrip("\n") if transcript.speakers else transcript.text


def page_error(exc: QasrError | gr.Error) -> gr.Error:
    """The error as the page's toast shows it: the toast renders HTML, and messages quote user input (a URL, a file
    name), so the text is escaped to show as text."""
    return user_error(escape(exc.message if isinstance(exc, gr.Error) else str(exc), quote=False))


def model_status_line(statuses: list[ModelStatus]) -> str:
    """One Markdown line saying which models can run here (and from where), or why not."""
    names = {hub_id: name for name, hub_id in ASR_MODELS.items()} | {ALIGNER_MODEL: "word timestamps"}
    parts = [f"{names[s.hub_id]} ready ({s.note})" if s.available else f"{names[s.hub_id]} unavailable: {s.note}"
             for s in statuses]
    return "Models: " + " · ".join(escape(part) for part in parts)


def _recorded_input(session: LiveSession, folder: str, cancelled: threading.Event) -> _Input:
    """A finished live recording (`session.close()`, once the browser's last chunk is in), with a WAV of it for the
    player."""
    audio = session.close(settle_seconds=2 * LIVE_STREAM_EVERY_SECONDS)
    return _Input(audio, _write_wav(audio, folder, "recording.wav"), "recording")


#: The live text box before the first words, and its label.
LIVE_PLACEHOLDER = "Press Record: the words appear here as you speak."
LIVE_LABEL = "Live transcript"


def render_live(live: LiveText | None = None, *, final: bool = False) -> str:
    """Live text as HTML under its label: committed text plain, the tentative tail marked as such (once the recording
    has stopped, nothing is tentative any more); all of it escaped. Without text yet, a placeholder. The text is a
    log region, so a screen reader reads out what is added."""
    if live is None or not live.text:
        body = f'<span class="qk-live-empty">{escape(LIVE_PLACEHOLDER)}</span>'
    elif final:
        body = f'<span class="qk-committed">{escape(live.text)}</span>'
    else:
        separator = live.text[len(live.committed):len(live.text) - len(live.tentative)]
        body = (f'<span class="qk-committed">{escape(live.committed)}</span>{separator}'
                f'<span class="qk-tentative">{escape(live.tentative)}</span>')
    return (f'<div class="qk-live-label" id="qk-live-label">{LIVE_LABEL}</div>'
            f'<div class="qk-live" role="log" aria-labelledby="qk-live-label">{body}</div>')


def timestamps_option(language: str, wanted: bool) -> dict:
    """Word timestamps are offered only where the aligner has the language (and with Auto, where it may); where it
    is offered again, the box is as the user last set it (`wanted`)."""
    if language == AUTO:
        return gr.update(value=wanted, interactive=True, info=AUTO_TIMESTAMPS_INFO)
    if aligner_supports(language):
        return gr.update(value=wanted, interactive=True, info=TIMESTAMPS_INFO)
    return gr.update(value=False, interactive=False,
                     info=f"No word timestamps for {language}: the aligner covers {', '.join(ALIGNER_LANGUAGES)}.")


def mode_layout(mode: str, language: str) -> tuple:
    """Align mode needs the text box and the aligner's languages, and has no use for model, context or timestamps
    (Speakers works in both modes)."""
    aligning = mode == ALIGN
    choices = [AUTO, *(ALIGNER_LANGUAGES if aligning else LANGUAGES)]
    return (
        gr.update(visible=aligning),
        gr.update(visible=not aligning),
        gr.update(visible=not aligning),
        gr.update(visible=not aligning),
        gr.update(choices=choices, value=language if language in choices else AUTO,
                  info=ALIGN_LANGUAGE_INFO if aligning else LANGUAGE_INFO),
        gr.update(value="Align" if aligning else "Transcribe"),
    )


def _source_layout(kind: str) -> tuple:
    """Show the chosen input; the live microphone runs by itself, and several files have their own button, so the
    Transcribe button hides for them; their table takes the single result's place (and its placeholder's).

    Inputs not chosen are taken off the page (`visible=False`), not just hidden: that stops a live recording when
    the user picks another source."""
    return (*(gr.update(visible=kind == shown) for _, shown in SOURCE_CHOICES), gr.update(visible=kind == LIVE_SOURCE),
            gr.update(visible=kind not in OWN_BUTTON_SOURCES), gr.update(visible=kind == SEVERAL_SOURCE),
            gr.update(visible=kind != SEVERAL_SOURCE))


def render_ui(manager: ModelManager) -> SpaceUI:
    """Draw the UI into the current Blocks context (a whole app, or a `gr.Tab` of someone else's)."""
    ui = SpaceUI(manager)
    gr.Markdown("## Qwen3-ASR speech to text\nTranscribe speech in 30 languages, follow it word by word, fix it, "
                "and download subtitles. [API and OpenAI-compatible route](#qasr-api-note)", elem_id="qasr-intro")
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            source = gr.Radio(SOURCE_CHOICES, value=FILE_SOURCE, label="Audio from", elem_id="qasr-source")
            with gr.Column(visible=True) as file_box:
                file_in = gr.File(label="Audio or video file", file_types=UPLOAD_TYPES, type="filepath",
                                  elem_id="qasr-file", height=130)
            with gr.Column(visible=False) as record_box:
                recording_in = gr.Audio(sources=["microphone"], type="filepath", label="Recording",
                                        elem_id="qasr-record")
            with gr.Column(visible=False) as url_box:
                url_in = gr.Textbox(label="URL", elem_id="qasr-url", max_lines=1,
                                    placeholder="https://www.youtube.com/watch?v=… or a link to a media file",
                                    info="YouTube and the other sites yt-dlp supports, or a direct link to audio or "
                                         "video. The title and length appear with the result.")
            # Drawn with the page though hidden: Gradio's streaming microphone loads its WAV encoder when drawn, and a
            # Record pressed before that showed Stop but sent nothing.
            live_in = gr.Audio(sources=["microphone"], streaming=True, type="numpy", label="Live microphone",
                               elem_id="qasr-live-mic", visible="hidden")
            with gr.Column(visible=False, elem_id="qasr-live") as live_box:
                live_out = gr.HTML(render_live(), elem_id="qasr-live-text", css_template=LIVE_CSS)
                live_session = gr.State(None, time_to_live=IDLE_SECONDS, delete_callback=ui.live_sessions.release)
                gr.Markdown(LIVE_NOTE)
            with gr.Column(visible=False, elem_id="qasr-several") as several_box:
                several_in = gr.File(label="Audio or video files, or a zip of them", file_count="multiple",
                                     file_types=SEVERAL_TYPES, type="filepath", elem_id="qasr-several-in", height=130)
                several_button = gr.Button("Transcribe all", variant="primary", elem_id="qasr-several-run")
            with gr.Row():
                language = gr.Dropdown([AUTO, *LANGUAGES], value=AUTO, label="Language", elem_id="qasr-language",
                                       info=LANGUAGE_INFO, scale=2)
                model = gr.Radio(list(ASR_MODELS), value=DEFAULT_MODEL, label="Model", elem_id="qasr-model",
                                 info="1.7B is more accurate, 0.6B faster.", scale=2)
            with gr.Row():
                run_button = gr.Button("Transcribe", variant="primary", elem_id="qasr-run", scale=3)
                cancel_button = gr.Button("Cancel", variant="stop", visible=False, elem_id="qasr-cancel", scale=1)
            with gr.Accordion("Options: word timestamps, speakers, context, align my own text", open=False,
                              elem_id="qasr-options"):
                with gr.Row():
                    timestamps = gr.Checkbox(value=True, label="Word timestamps (karaoke)",
                                             info=AUTO_TIMESTAMPS_INFO, elem_id="qasr-timestamps")
                    speakers = gr.Dropdown(SPEAKER_CHOICES, value=SPEAKERS_OFF, label="Speakers", info=SPEAKERS_INFO,
                                           elem_id="qasr-speakers")
                context = gr.Textbox(label="Context or hotwords", lines=2, elem_id="qasr-context",
                                     max_length=manager.settings.max_context_chars,
                                     placeholder="Names, terms or a topic the speech is about (optional)")
                mode = gr.Radio([TRANSCRIBE, ALIGN], value=TRANSCRIBE, label="Mode", elem_id="qasr-mode",
                                info="Align my own text: paste what is said, and get each word's time (no "
                                     "transcription).")
                align_in = gr.Textbox(label="Text to align", lines=4, visible=False, elem_id="qasr-align-text",
                                      max_length=manager.settings.max_align_chars,
                                      placeholder="Paste what is said in the audio; each word gets its start and end.")
            examples_slot = gr.Column()
        with gr.Column(scale=3, min_width=320, elem_id="qasr-result"):
            with gr.Column(visible=False) as several_results:
                several_out = gr.HTML("", elem_id="qasr-several-table", css_template=SEVERAL_CSS)
                several_zip = downloads_box("qasr-several-zip")
            with gr.Column() as single_results:
                karaoke = gr.HTML(render_notice(PLACEHOLDER), html_template="${value}", css_template=KARAOKE_CSS,
                                  js_on_load=KARAOKE_JS, elem_id="qasr-karaoke", label="Transcript")
                with gr.Column(visible=False) as extras:
                    language_out = gr.Markdown("", elem_id="qasr-language-out")
                    speaker_names = gr.Dataframe(headers=["Speaker", "Name"], column_count=(2, "fixed"), type="array",
                                                 interactive=True, static_columns=[0], visible=False,
                                                 label="Speaker names: type a name, then Rename speakers",
                                                 elem_id="qasr-speaker-names")
                    rename_button = gr.Button("Rename speakers", size="sm", visible=False, elem_id="qasr-rename")
                    files_out = downloads_box("qasr-files")
                    with gr.Accordion("Fix the transcript, then re-time it", open=False, elem_id="qasr-edit"):
                        text_out = gr.Textbox(label="Transcript (editable)", lines=6, max_lines=20, interactive=True,
                                              buttons=["copy"], elem_id="qasr-text")
                        retime_button = gr.Button("Re-time", elem_id="qasr-retime")
                        gr.Markdown("Change any words, then Re-time: the aligner times the new text to the same audio, "
                                    "and the view and every download follow.")
    gr.HTML(API_NOTE, elem_id="qasr-api-note", js_on_load=API_NOTE_JS, css_template=API_NOTE_CSS)
    gr.Markdown(model_status_line(manager.statuses()), elem_id="qasr-models")
    shown = gr.State(None)
    wanted_timestamps = gr.State(True)
    outputs = [language_out, text_out, karaoke, files_out, speaker_names, shown, extras]

    source.change(_source_layout, source,
                  [file_box, record_box, url_box, live_box, several_box, live_in, run_button, several_results,
                   single_results],
                  queue=False, api_visibility="private")
    several_button.click(ui.run_several, [several_in, model, language, context, timestamps, speakers],
                         [several_out, several_zip], concurrency_id="several", concurrency_limit=1,
                         api_visibility="private")
    timestamps.input(lambda value: value, timestamps, wanted_timestamps, queue=False, api_visibility="private")
    language.change(timestamps_option, [language, wanted_timestamps], timestamps, queue=False,
                    api_visibility="private")
    mode.change(mode_layout, [mode, language], [align_in, model, context, timestamps, language, run_button],
                queue=False, api_visibility="private")
    for button in (run_button, several_button):
        button.click(None, js=SHOW_RESULT_JS, queue=False, api_visibility="private")
    running = run_button.click(lambda: gr.update(visible=True), None, cancel_button, queue=False,
                               api_visibility="private")
    transcribing = running.then(ui.run, [source, file_in, recording_in, url_in, mode, align_in, model, language,
                                         context, timestamps, speakers],
                                outputs, show_progress_on=[karaoke], api_visibility="private")
    # Not `.then`: Gradio's Cancel runs the cancelled event's `.then` listeners once the server has stopped it, which
    # can be after the next Transcribe showed Cancel again, and hid it during that run.
    transcribing.success(lambda: gr.update(visible=False), None, cancel_button, queue=False, api_visibility="private")
    # Gradio stops the run and frees its queue slot; closing the handler's generator stops the decoding itself.
    cancel_button.click(lambda: (render_notice(CANCELLED), gr.update(visible=False)), None, [karaoke, cancel_button],
                        cancels=[transcribing], queue=False, api_visibility="private")
    retime_button.click(ui.retime, [shown, text_out], outputs, show_progress_on=[karaoke], api_visibility="private")
    speaker_names.change(lambda table: gr.update(visible=bool(table)), speaker_names, rename_button, queue=False,
                         api_visibility="private")
    rename_button.click(ui.rename, [shown, speaker_names], [text_out, karaoke, files_out, shown],
                        api_visibility="private")
    # Each streamed update is short: a progress timer on the text would only flicker "0.0s" twice a second.
    live_in.stream(ui.live_update, [live_in, live_session, model, language, context], [live_out, live_session],
                   stream_every=LIVE_STREAM_EVERY_SECONDS, concurrency_limit=None, show_progress="hidden",
                   api_visibility="private")
    live_in.start_recording(ui.live_start, live_session, live_session, queue=False, api_visibility="private")
    # The session is let go after the final pass, not by a last yield of it: an update to the result's extras
    # right after the yield that shows them can leave them hidden (a race in Gradio's lazy mounting of a column).
    live_in.stop_recording(ui.live_finish, [live_session, model, language, context, timestamps, speakers],
                           [*outputs, live_out], api_visibility="private").then(
        lambda: None, None, live_session, queue=False, api_visibility="private")
    # A recording reaches the server only after "stop"; until it has, Transcribe would find no recording.
    recording_in.start_recording(lambda: gr.update(interactive=False), None, run_button, queue=False,
                                 api_visibility="private")
    recording_in.stop_recording(lambda: gr.update(interactive=True), None, run_button, queue=False,
                                api_visibility="private")
    with examples_slot:
        # The examples' own language and timestamps go through hidden fields, so a click never changes the
        # options the user set for their own files.
        example_language = gr.Textbox(visible=False)
        example_timestamps = gr.Checkbox(visible=False)
        gr.Examples(
            examples=[[str(ASSETS_DIR / name), lang, stamps] for name, lang, stamps, _ in EXAMPLES],
            example_labels=[label for *_, label in EXAMPLES],
            inputs=[file_in, example_language, example_timestamps], outputs=outputs, fn=ui.run_example,
            run_on_click=True, cache_examples=False, api_visibility="private",
        )
    return ui


def build_demo(manager: ModelManager) -> gr.Blocks:
    """The whole app as a Blocks; `server.main` queues and launches it."""
    with gr.Blocks(title="Qwen3-ASR speech to text") as demo:
        render_ui(manager)
    return demo
