"""The karaoke transcript: every word a time-stamped span beside its own audio player.

Pure strings, no Gradio, so the markup can be tested without a server. `render_karaoke` builds the HTML; every piece
of text in it is escaped, because all of it is user-controlled (model output, pasted text, a web page's title).
`KARAOKE_JS` and `KARAOKE_CSS` are what `gr.HTML(js_on_load=..., css_template=...)` runs: during playback the word
being spoken is highlighted and kept in view, and clicking a word seeks there and plays. The script listens on the
component's root in the capture phase, so it keeps working when Gradio re-renders the markup for a new value.

Markup: `.qk-root` holds `.qk-head` (title, length), `audio.qk-audio`, `.qk-text` with one `span.qk-word` per word
(`data-start`/`data-end` in seconds) and `.qk-notes`; the word being spoken gets `.qk-active`. With speakers, the
words sit in one `div.qk-turn` per turn, led by `span.qk-speaker`, and words said over someone else get `.qk-overlap`.
"""

from __future__ import annotations

from html import escape
from itertools import groupby
from operator import itemgetter

from .results import Transcript


def clock(seconds: float) -> str:
    """A length as '1:02:03' or '2:03'."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _span(text: str, start: float, end: float, overlapped: bool = False) -> str:
    """One timed span; whitespace before the word stays outside it, so only the word itself lights up. A word said
    while someone else talks too is marked, and says so on hover."""
    word = text.lstrip()
    gap = text[: len(text) - len(word)]
    marks = ' class="qk-word qk-overlap" title="Two people talk at once here"' if overlapped else ' class="qk-word"'
    return (f'{escape(gap)}<span{marks} data-start="{start:.3f}" data-end="{max(end, start):.3f}">'
            f"{escape(word)}</span>")


#: Speaker colours, cycled: distinct hues that read on light and dark backgrounds.
SPEAKER_COLOURS = ("#2563eb", "#db2777", "#059669", "#d97706", "#7c3aed", "#0891b2", "#dc2626", "#65a30d")


def _timed_text(transcript: Transcript) -> str:
    """Words when there are word timestamps; otherwise one span per segment (a chunk), so seeking still works. With
    speakers, each turn is a block of its own, led by the speaker's name in the speaker's colour."""
    if transcript.words:
        pieces = [(w.speaker, w.text, w.start, w.end) for w in transcript.words]
    else:
        pieces = [(s.speaker, " " + s.text.strip(), s.start, s.end) for s in transcript.segments if s.text.strip()]
    if not transcript.speakers:
        return "".join(_span(text, start, end) for _, text, start, end in pieces).lstrip()
    colours = {speaker: i % len(SPEAKER_COLOURS) for i, speaker in enumerate(transcript.speakers)}

    def overlapped(start: float, end: float) -> bool:
        middle = (start + end) / 2
        return any(o.start <= middle <= o.end for o in transcript.overlaps)

    blocks = []
    for speaker, run in groupby(pieces, itemgetter(0)):
        spans = "".join(_span(text.lstrip() if i == 0 else text, start, end, overlapped(start, end))
                        for i, (_, text, start, end) in enumerate(run))
        blocks.append(f'<div class="qk-turn" style="--qk-speaker: {SPEAKER_COLOURS[colours.get(speaker, 0)]}">'
                      f'<span class="qk-speaker">{escape(speaker or "Unknown speaker")}</span>{spans}</div>')
    return "".join(blocks)


def render_karaoke(transcript: Transcript, audio_url: str, *, title: str | None = None,
                   status: str | None = None) -> str:
    """The karaoke block: an optional title line, the player for `audio_url`, the timed text, then any notes.

    `transcript` may be partial (chunks still running) or empty (nothing yet); `status` is a line such as
    "Transcribing…" shown under the text while work goes on.
    """
    head = []
    if title:
        head.append(f'<span class="qk-title">{escape(title)}</span>')
    if transcript.duration:
        head.append(f'<span class="qk-meta">{escape(clock(transcript.duration))}</span>')
    if transcript.words or transcript.segments:
        head.append('<span class="qk-hint">Click a word to play from there.</span>')
    parts = ['<div class="qk-root">']
    if head:
        parts.append(f'<div class="qk-head">{" ".join(head)}</div>')
    parts.append(f'<audio class="qk-audio" controls preload="metadata" src="{escape(audio_url, quote=True)}"></audio>')
    parts.append(f'<div class="qk-text">{_timed_text(transcript)}</div>')
    notes = ([status] if status else []) + transcript.warnings
    if notes:
        parts.append('<ul class="qk-notes">' + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>")
    parts.append("</div>")
    return "".join(parts)


# Runs once when the component mounts. `element` is the component's root, `watch` re-runs a callback after Gradio
# re-renders a new value (see gr.HTML's js_on_load). Word positions are read from the DOM once per value and found by
# binary search; while playing, a requestAnimationFrame loop moves the highlight, and media events cover seeks and
# pauses. Media events do not bubble, hence the capture-phase listeners on the root.
KARAOKE_JS = """
const HOLD = 1.0;  // keep a word lit this long past its end, so short gaps between words do not flicker
let words = null, starts = [], ends = [], active = null, frame = 0;

function index() {
  if (words === null) {
    words = Array.from(element.querySelectorAll('.qk-word'));
    starts = words.map(w => parseFloat(w.dataset.start));
    ends = words.map(w => parseFloat(w.dataset.end));
  }
}

function wordAt(t) {
  let lo = 0, hi = starts.length - 1, found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (starts[mid] <= t) { found = mid; lo = mid + 1; } else { hi = mid - 1; }
  }
  return found >= 0 && t <= ends[found] + HOLD ? words[found] : null;
}

function keepInView(word) {
  const box = word.closest('.qk-text');
  if (!box || box.scrollHeight <= box.clientHeight) return;
  const top = word.offsetTop, bottom = top + word.offsetHeight;
  if (top < box.scrollTop || bottom > box.scrollTop + box.clientHeight) {
    box.scrollTo({ top: Math.max(0, top - box.clientHeight / 3), behavior: 'smooth' });
  }
}

function show(t) {
  index();
  const word = wordAt(t);
  if (word === active) return;
  if (active) active.classList.remove('qk-active');
  active = word;
  if (word) { word.classList.add('qk-active'); keepInView(word); }
}

function player() { return element.querySelector('audio.qk-audio'); }

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
element.addEventListener('click', (event) => {
  const word = event.target.closest ? event.target.closest('.qk-word') : null;
  const audio = player();
  if (!word || !audio) return;
  audio.currentTime = parseFloat(word.dataset.start);
  show(audio.currentTime);
  audio.play().catch(() => {});
});
watch('value', () => { words = null; active = null; });
"""

# Scoped to the component by Gradio (nested under its root id). Colours come from the theme's variables, so light
# and dark mode both read well.
KARAOKE_CSS = """
.qk-root { display: flex; flex-direction: column; gap: 10px; }
.qk-head { display: flex; gap: 12px; align-items: baseline; flex-wrap: wrap; }
.qk-title { font-weight: 600; }
.qk-meta { color: var(--body-text-color-subdued); font-variant-numeric: tabular-nums; }
.qk-hint { color: var(--body-text-color-subdued); font-size: 0.85rem; margin-left: auto; }
.qk-audio { width: 100%; }
.qk-text {
  position: relative; max-height: 320px; overflow-y: auto; white-space: pre-wrap;
  font-size: 1.15rem; line-height: 1.9; padding: 10px 14px;
  border: 1px solid var(--border-color-primary); border-radius: var(--block-radius);
  background: var(--block-background-fill);
}
.qk-text:empty { display: none; }
.qk-word { cursor: pointer; border-radius: 4px; padding: 1px 2px; transition: background-color 0.12s; }
.qk-word:hover { background: var(--background-fill-secondary); }
.qk-word.qk-active { background: var(--color-accent); color: white; }
.qk-turn { border-left: 4px solid var(--qk-speaker); padding-left: 10px; margin: 0 0 8px; }
.qk-speaker {
  display: block; color: var(--qk-speaker); font-weight: 600; font-size: 0.85rem; line-height: 1.4;
  text-transform: none; user-select: none;
}
.qk-word.qk-overlap { text-decoration: underline dotted var(--body-text-color-subdued); text-underline-offset: 4px; }
.qk-notes { margin: 0; padding-left: 1.2em; color: var(--body-text-color-subdued); font-size: 0.9rem; }
"""
