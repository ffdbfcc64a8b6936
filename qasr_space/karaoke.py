"""The karaoke transcript: every word a time-stamped span beside its own audio player, and a list of segments.

Pure strings, no Gradio, so the markup can be tested without a server. `render_karaoke` builds the HTML; every piece
of text in it is escaped, because all of it is user-controlled (model output, pasted text, a web page's title).
`KARAOKE_JS` and `KARAOKE_CSS` are what `gr.HTML(js_on_load=..., css_template=...)` runs: during playback the word
and the segment being spoken are highlighted and, while "Follow along" is on, kept in view; clicking a word or a
segment seeks there and plays. The script listens on the component's root in the capture phase, so it keeps working
when Gradio re-renders the markup for a new value.

Markup: `.qk-root` holds `.qk-head` (title, `.qk-length`, hint, `.qk-follow` toggle), `audio.qk-audio`, then
`.qk-body`: `.qk-text` with one `span.qk-word` per word (`data-start`/`data-end` in seconds) beside (or, when narrow,
above) `ol.qk-segments` with one `button.qk-segment` per segment; then `.qk-notes`. The word and the segment being
spoken get `.qk-active`. With speakers, the words sit in one `div.qk-turn` per turn, led by `span.qk-speaker`, and
words said over someone else get `.qk-overlap`. Keyboard access (roles, names, a roving tabindex) is added by the
script, which is also what makes the words act as buttons, and keeps every word's markup small.
"""

from __future__ import annotations

from html import escape
from itertools import groupby
from operator import itemgetter

from .results import Transcript


def clock(seconds: float) -> str:
    """A time as '1:02:03' or '2:03', the seconds floored as audio players show them (so 5.9 s reads 0:05 in both)."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _times(start: float, end: float) -> str:
    return f'data-start="{start:.3f}" data-end="{max(end, start):.3f}"'


def _span(text: str, start: float, end: float, overlapped: bool = False) -> str:
    """One timed span; whitespace before the word stays outside it, so only the word itself lights up. A word said
    while someone else talks too is marked, and says so on hover."""
    word = text.lstrip()
    gap = text[: len(text) - len(word)]
    marks = ' class="qk-word qk-overlap" title="Two people talk at once here"' if overlapped else ' class="qk-word"'
    return f"{escape(gap)}<span{marks} {_times(start, end)}>{escape(word)}</span>"


#: Speaker colours, cycled: distinct hues that read on light and dark backgrounds.
SPEAKER_COLOURS = ("#2563eb", "#db2777", "#059669", "#d97706", "#7c3aed", "#0891b2", "#dc2626", "#65a30d")


def _colour(transcript: Transcript, speaker: str | None) -> str:
    """The speaker's colour, by order of first appearance."""
    index = transcript.speakers.index(speaker) if speaker in transcript.speakers else 0
    return SPEAKER_COLOURS[index % len(SPEAKER_COLOURS)]


def _pieces(transcript: Transcript) -> list[tuple[str | None, str, float, float]]:
    """(speaker, text with the whitespace before it, start, end) for each timed piece: the words when there are word
    timestamps, else the segments. Segments are separated as the transcript's text separates them: one space, or
    none between sentences of Chinese or Japanese; one space when a segment is not found in the text."""
    if transcript.words:
        return [(w.speaker, w.text, w.start, w.end) for w in transcript.words]
    pieces, cursor = [], 0
    for segment in transcript.segments:
        text = segment.text.strip()
        if not text:
            continue
        found = transcript.text.find(text, cursor)
        spaced = found < 0 or any(c.isspace() for c in transcript.text[cursor:found])
        cursor = cursor if found < 0 else found + len(text)
        pieces.append((segment.speaker, " " + text if spaced else text, segment.start, segment.end))
    return pieces


def _timed_text(transcript: Transcript) -> str:
    """One span per piece (see `_pieces`), so seeking works with or without word timestamps. With speakers, each turn
    is a block of its own, led by the speaker's name in the speaker's colour."""
    pieces = _pieces(transcript)
    if not transcript.speakers:
        return "".join(_span(text, start, end) for _, text, start, end in pieces).lstrip()

    def overlapped(start: float, end: float) -> bool:
        middle = (start + end) / 2
        return any(o.start <= middle <= o.end for o in transcript.overlaps)

    blocks = []
    for speaker, run in groupby(pieces, itemgetter(0)):
        spans = "".join(_span(text.lstrip() if i == 0 else text, start, end, overlapped(start, end))
                        for i, (_, text, start, end) in enumerate(run))
        blocks.append(f'<div class="qk-turn" style="--qk-speaker: {_colour(transcript, speaker)}">'
                      f'<span class="qk-speaker">{escape(speaker or "Unknown speaker")}</span>{spans}</div>')
    return "".join(blocks)


def _segment_list(transcript: Transcript) -> str:
    """Each segment as a button: its start time and its text; with speakers, edged in the speaker's colour."""
    items = []
    for segment in transcript.segments:
        text = segment.text.strip()
        if not text:
            continue
        colour = f' style="--qk-speaker: {_colour(transcript, segment.speaker)}"' if transcript.speakers else ""
        items.append(f'<li{colour}><button type="button" class="qk-segment" {_times(segment.start, segment.end)}>'
                     f'<span class="qk-time">{clock(segment.start)}</span> {escape(text)}</button></li>')
    return f'<ol class="qk-segments" aria-label="Segments">{"".join(items)}</ol>' if items else ""


def render_karaoke(transcript: Transcript, audio_url: str, *, title: str | None = None,
                   status: str | None = None) -> str:
    """The karaoke block: an optional title line, the player for `audio_url`, the timed text and the segment list,
    then any notes.

    `transcript` may be partial (chunks still running) or empty (nothing yet); `status` is a line such as
    "Transcribing…" shown under the text while work goes on.
    """
    timed_text = _timed_text(transcript)
    head = []
    if title:
        head.append(f'<span class="qk-title">{escape(title)}</span>')
    if transcript.duration:
        head.append(f'<span class="qk-length">{clock(transcript.duration)}</span>')
    if timed_text:
        head.append('<span class="qk-hint">Click a word or a segment to play from there, or Tab to the text: '
                    "arrow keys move, Enter plays.</span>")
        head.append('<label class="qk-follow"><input type="checkbox" checked> Follow along</label>')
        head.append('<button type="button" class="qk-copy">Copy text</button>')
    parts = ['<div class="qk-root" role="region" aria-label="Transcript result">']
    if head:
        parts.append(f'<div class="qk-head">{" ".join(head)}</div>')
    parts.append(f'<audio class="qk-audio" controls preload="metadata" src="{escape(audio_url, quote=True)}"></audio>')
    if timed_text:
        parts.append(f'<div class="qk-body"><div class="qk-text" role="group" aria-label="Transcript">{timed_text}'
                     f"</div>{_segment_list(transcript)}</div>")
    # The status line is a live region, so a screen reader hears the progress, and that the transcript is ready (said
    # only to it), without looking for them.
    if status:
        parts.append(f'<p class="qk-status" role="status">{escape(status)}</p>')
    else:
        parts.append(f'<p class="qk-status qk-sr-only" role="status">{"Transcript ready." if timed_text else ""}</p>')
    if transcript.warnings:
        parts.append('<ul class="qk-notes">' + "".join(f"<li>{escape(n)}</li>" for n in transcript.warnings) + "</ul>")
    parts.append("</div>")
    return "".join(parts)


#: What each download is: (what its link says, what it is for, as the link's tooltip says).
DOWNLOAD_KINDS = {
    ".srt": ("SRT subtitles", "Subtitles for video players and editors"),
    ".vtt": ("VTT subtitles", "Subtitles for web video (HTML5 <track>)"),
    ".json": ("JSON", "Every word and segment with its times, for programs"),
    ".txt": ("Plain text", "The transcript as plain text"),
    ".lrc": ("LRC lyrics", "Enhanced LRC: lyrics with word times, for music players"),
    ".tsv": ("TSV table", "Start, end and text of each segment, for spreadsheets"),
    ".zip": ("All files (zip)", "Every file's downloads in one zip"),
}


def download_links(links: list[tuple[str, str]], *, short: bool = False) -> str:
    """One `a.qk-download` per (url, file name): it says what the file is (or, `short`, just its format), the
    tooltip what it is for, and the browser saves it under its own name."""
    items = []
    for url, name in links:
        suffix = name[name.rfind("."):].lower() if "." in name else ""
        label, purpose = DOWNLOAD_KINDS.get(suffix, (name, name))
        text = suffix[1:].upper() if short and suffix else label
        items.append(f'<a class="qk-download" href="{escape(url, quote=True)}" download="{escape(name, quote=True)}" '
                     f'title="{escape(f"{purpose}: {name}", quote=True)}">{escape(text)}</a>')
    return " ".join(items)


def render_downloads(links: list[tuple[str, str]]) -> str:
    """The result's downloads as one labelled row of links (see `download_links`); nothing at all without files."""
    if not links:
        return ""
    return (f'<div class="qk-downloads" role="group" aria-label="Downloads"><span class="qk-downloads-label">'
            f'Download</span> {download_links(links)}</div>')


def render_notice(message: str, *, error: bool = False) -> str:
    """What the result area shows when there is no transcript: a friendly line before the first run, or an error,
    which stays until the next run (a toast fades)."""
    kind = 'qk-error" role="alert' if error else "qk-placeholder"
    return f'<div class="qk-notice {kind}">{escape(message)}</div>'


# Runs once when the component mounts. `element` is the component's root, `watch` re-runs a callback after Gradio
# re-renders a new value (see gr.HTML's js_on_load). Gradio re-renders by patching the DOM in place, dropping attributes
# the new markup lacks, so `prepare` runs again after each new value: it reads word and segment positions once (found
# by binary search while playing), gives words their role, name and roving tabindex, and restores the Follow along
# choice. While playing, a requestAnimationFrame loop moves the highlights; media events cover seeks and pauses. Media
# events do not bubble, hence the capture-phase listeners on the root.
KARAOKE_JS = """
const HOLD = 1.0;  // keep a word lit this long past its end, so short gaps between words do not flicker
let tracks = null, follow = true, frame = 0;

function clock(seconds) {  // as karaoke.clock: seconds floored, as the player shows them
  const total = Math.floor(seconds), hours = Math.floor(total / 3600), minutes = Math.floor(total / 60) % 60;
  const ss = String(total % 60).padStart(2, '0');
  return hours ? hours + ':' + String(minutes).padStart(2, '0') + ':' + ss : minutes + ':' + ss;
}

function track(selector) {
  const items = Array.from(element.querySelectorAll(selector));
  return { items, active: null, starts: items.map(i => parseFloat(i.dataset.start)),
           ends: items.map(i => parseFloat(i.dataset.end)) };
}

function index() {
  if (tracks === null) tracks = { word: track('.qk-word'), segment: track('.qk-segment') };
}

function trackOf(item) { index(); return item.classList.contains('qk-word') ? tracks.word : tracks.segment; }

function itemAt(track, t) {
  let lo = 0, hi = track.starts.length - 1, found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (track.starts[mid] <= t) { found = mid; lo = mid + 1; } else { hi = mid - 1; }
  }
  return found >= 0 && t <= track.ends[found] + HOLD ? track.items[found] : null;
}

function scroller(item) { return item.closest('.qk-text, .qk-segments'); }

// One Tab stop per list (the transcript, the segments): the item last played, clicked or moved to.
function rove(item) {
  const current = scroller(item).querySelector('[tabindex="0"]');
  if (current && current !== item) current.tabIndex = -1;
  item.tabIndex = 0;
}

function keepInView(item) {
  const box = scroller(item);
  if (box.scrollHeight <= box.clientHeight) return;
  const top = item.offsetTop, bottom = top + item.offsetHeight;
  if (top < box.scrollTop || bottom > box.scrollTop + box.clientHeight) {
    box.scrollTo({ top: Math.max(0, top - box.clientHeight / 3), behavior: 'smooth' });
  }
}

function show(t) {
  index();
  for (const track of [tracks.word, tracks.segment]) {
    const item = itemAt(track, t);
    if (item === track.active) continue;
    if (track.active) track.active.classList.remove('qk-active');
    track.active = item;
    if (!item) continue;
    item.classList.add('qk-active');
    if (follow) keepInView(item);
    if (!scroller(item).contains(document.activeElement)) rove(item);
  }
}

function player() { return element.querySelector('audio.qk-audio'); }

function showLength() {  // the player's own length, so the label and the player always agree
  const audio = player(), label = element.querySelector('.qk-length');
  if (audio && label && Number.isFinite(audio.duration)) label.textContent = clock(audio.duration);
}

function prepare() {
  tracks = null;
  index();
  for (const [i, word] of tracks.word.items.entries()) {
    word.setAttribute('role', 'button');
    word.setAttribute('aria-label', word.textContent + ', ' + clock(tracks.word.starts[i]));
  }
  for (const track of [tracks.word, tracks.segment]) {
    track.items.forEach((item, i) => { item.tabIndex = i === 0 ? 0 : -1; });
  }
  const toggle = element.querySelector('.qk-follow input');
  if (toggle) toggle.checked = follow;
  showLength();
}

function playFrom(item) {
  const audio = player();
  if (!audio) return;
  rove(item);
  audio.currentTime = parseFloat(item.dataset.start);
  show(audio.currentTime);
  audio.play().catch(() => {});
}

function tick() {
  const audio = player();
  frame = 0;
  if (!audio) return;
  show(audio.currentTime);
  if (!audio.paused && !audio.ended) frame = requestAnimationFrame(tick);
}

element.addEventListener('play', () => { if (!frame) frame = requestAnimationFrame(tick); }, true);
for (const name of ['timeupdate', 'seeked', 'pause', 'ended']) {
  element.addEventListener(name, (event) => show(event.target.currentTime), true);
}
element.addEventListener('durationchange', showLength, true);
element.addEventListener('change', (event) => {
  if (!event.target.matches('.qk-follow input')) return;
  follow = event.target.checked;
  if (!follow) return;
  index();  // back on: what is lit now comes into view, not only what lights up next
  for (const track of [tracks.word, tracks.segment]) if (track.active) keepInView(track.active);
}, true);
element.addEventListener('click', (event) => {
  const copy = event.target.closest ? event.target.closest('.qk-copy') : null;
  if (copy) {
    const text = element.querySelector('.qk-text');
    navigator.clipboard.writeText(text ? text.innerText.trim() : '').then(
      () => { copy.textContent = 'Copied'; setTimeout(() => { copy.textContent = 'Copy text'; }, 1500); },
      () => { copy.textContent = 'Select the text to copy'; });
    return;
  }
  const item = event.target.closest ? event.target.closest('.qk-word, .qk-segment') : null;
  if (item) playFrom(item);
});
// Arrow keys, Home and End move within a list; Enter and Space play from a word (a segment is a button, whose
// Enter and Space are clicks already).
const MOVES = { ArrowLeft: -1, ArrowUp: -1, ArrowRight: 1, ArrowDown: 1 };
element.addEventListener('keydown', (event) => {
  const item = event.target.closest ? event.target.closest('.qk-word, .qk-segment') : null;
  if (!item || event.altKey || event.ctrlKey || event.metaKey) return;
  const items = trackOf(item).items, at = items.indexOf(item);
  let next = null;
  if (event.key in MOVES) next = items[Math.min(items.length - 1, Math.max(0, at + MOVES[event.key]))];
  else if (event.key === 'Home') next = items[0];
  else if (event.key === 'End') next = items[items.length - 1];
  else if ((event.key === 'Enter' || event.key === ' ') && item.classList.contains('qk-word')) {
    event.preventDefault();
    playFrom(item);
    return;
  }
  if (!next) return;
  event.preventDefault();
  rove(next);
  next.focus();
}, true);
watch('value', () => setTimeout(prepare));  // after Gradio has patched the DOM
prepare();
"""

# Nested under the component's root id by Gradio (`#id { ... }`), so `&` is that root; Gradio also runs it through a
# JS template literal, so it holds no backquote, backslash or dollar-brace. Colours come from the theme's variables,
# so light and dark mode both read well; under Gradio's `.dark` the browser draws the player, the checkbox and the
# scroll bars dark too.
KARAOKE_CSS = """
.dark & { color-scheme: dark; }
/* Quiet text that still reads: the theme's own subdued grey is under 3:1 on white. */
& { --qk-subdued: var(--neutral-500); }
.dark & { --qk-subdued: var(--neutral-400); }
.qk-root { display: flex; flex-direction: column; gap: 10px; }
.qk-head { display: flex; gap: 4px 12px; align-items: center; flex-wrap: wrap; }
.qk-title { font-weight: 600; }
.qk-length { color: var(--qk-subdued); font-variant-numeric: tabular-nums; }
/* The hint takes a line of its own under the length and the two controls, which sit at the right. */
.qk-hint { color: var(--qk-subdued); font-size: 0.85rem; order: 9; flex-basis: 100%; }
.qk-copy {
  font-size: 0.85rem; padding: 2px 10px; border-radius: var(--button-small-radius);
  border: 1px solid var(--border-color-primary); background: var(--button-secondary-background-fill);
  color: var(--button-secondary-text-color); font-weight: 400; cursor: pointer;
}
.qk-notice { padding: 28px 16px; border-radius: var(--block-radius); text-align: center; }
.qk-placeholder { color: var(--qk-subdued); border: 1px dashed var(--border-color-primary); }
.qk-error {
  color: var(--error-text-color); background: var(--error-background-fill); border: 1px solid var(--error-border-color);
  text-align: left;
}
.qk-follow {
  display: inline-flex; gap: 6px; align-items: center; font-size: 0.85rem; cursor: pointer; margin-left: auto;
}
.qk-audio { width: 100%; }
.qk-body { display: flex; flex-wrap: wrap; gap: 10px; align-items: flex-start; }
.qk-text, .qk-segments {
  position: relative; max-height: 320px; overflow-y: auto; overflow-wrap: anywhere; min-width: 0;
  border: 1px solid var(--border-color-primary); border-radius: var(--block-radius);
  background: var(--block-background-fill);
}
.qk-text { flex: 3 1 320px; white-space: pre-wrap; font-size: 1.15rem; line-height: 1.9; padding: 10px 14px; }
.qk-segments { flex: 1 1 220px; list-style: none; margin: 0; padding: 6px; }
.qk-segments li { margin: 0; padding: 0; }
.qk-segment {
  display: flex; gap: 8px; width: 100%; text-align: left; font: inherit; font-size: 0.9rem; line-height: 1.4;
  color: inherit; background: none; border: 0; border-left: 3px solid var(--qk-speaker, transparent);
  border-radius: 4px; padding: 4px 6px; cursor: pointer;
}
.qk-segment:hover { background: var(--background-fill-secondary); }
.qk-segment.qk-active { background: var(--color-accent-soft); }
.qk-time { flex: none; color: var(--qk-subdued); font-variant-numeric: tabular-nums; }
/* The negative margin takes the padding back: a lit word's background reaches into the spaces around it without
   widening them, which made a span per segment look like a double space. */
.qk-word { cursor: pointer; border-radius: 4px; padding: 1px 2px; margin: 0 -2px; transition: background-color 0.12s; }
.qk-word:hover { background: var(--background-fill-secondary); }
.qk-word.qk-active { background: var(--color-accent); color: white; }
.qk-word:focus-visible, .qk-segment:focus-visible { outline: 2px solid var(--color-accent); outline-offset: 1px; }
.qk-turn { border-left: 4px solid var(--qk-speaker); padding-left: 10px; margin: 0 0 8px; }
.qk-speaker {
  display: block; color: var(--qk-speaker); font-weight: 600; font-size: 0.85rem; line-height: 1.4;
  text-transform: none; user-select: none;
}
.qk-word.qk-overlap { text-decoration: underline dotted var(--qk-subdued); text-underline-offset: 4px; }
.qk-status { margin: 0; color: var(--qk-subdued); font-size: 0.9rem; }
.qk-status:empty { display: none; }
.qk-sr-only {
  position: absolute; width: 1px; height: 1px; margin: -1px; padding: 0; overflow: hidden; clip: rect(0 0 0 0);
  white-space: nowrap; border: 0;
}
.qk-notes { margin: 0; padding-left: 1.2em; color: var(--qk-subdued); font-size: 0.9rem; }
"""

#: The download links' look (`download_links`): small buttons that wrap; used by the result and the several-files table.
DOWNLOADS_CSS = """
.qk-downloads { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; }
.qk-downloads-label { font-weight: 600; margin-right: 4px; }
.qk-download {
  display: inline-block; font-size: 0.85rem; line-height: 1.4; padding: 3px 10px;
  border-radius: var(--button-small-radius);
  border: 1px solid var(--border-color-primary); background: var(--button-secondary-background-fill);
  color: var(--button-secondary-text-color); text-decoration: none; white-space: nowrap;
}
.qk-download:hover { background: var(--button-secondary-background-fill-hover); }
.qk-download:focus-visible { outline: 2px solid var(--color-accent); outline-offset: 1px; }
"""
