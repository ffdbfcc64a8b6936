"""`python -m qasr_space`: transcribe or align from scripts, with the same core the Space uses.

Every failure the user can fix ends as one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator

from .diarize import parse_speakers
from .errors import QasrError
from .models import ASR_MODELS, ModelManager
from .settings import Settings
from .transcribe import AudioInput, align, transcribe
from .writers import CUE_SECONDS, FORMATS, LINE_CHARS, CueLimits, render_transcript, write_transcript


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m qasr_space", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("audio", help="audio or video file, or an http(s) URL")
        sub.add_argument("--language", default=None, help="language name or code (default: detect)")
        sub.add_argument("--format", choices=sorted(FORMATS), default="json",
                         help="output format (default json; lrc is enhanced LRC with word times, for lyrics players)")
        sub.add_argument("--max-line-chars", type=int, default=LINE_CHARS, metavar="N",
                         help=f"srt and vtt: characters per subtitle line, two lines a cue (default {LINE_CHARS})")
        sub.add_argument("--max-cue-seconds", type=float, default=CUE_SECONDS, metavar="S",
                         help=f"srt and vtt: longest time a cue stays on screen (default {CUE_SECONDS:g})")
        sub.add_argument("--speakers", default=None, metavar="N|MIN-MAX|auto",
                         help="say who spoke when: a number of speakers, a range, or auto (default: off)")
        sub.add_argument("-o", "--output", default=None, help="write here instead of stdout")

    run = commands.add_parser("transcribe", help="speech to text, optionally with word timestamps")
    common(run)
    run.add_argument("--model", default="0.6B", help=f"one of {', '.join(ASR_MODELS)} (default 0.6B)")
    run.add_argument("--context", default=None, help="context or hotwords to bias the transcript")
    run.add_argument("--timestamps", action="store_true", help="word timestamps from the ForcedAligner")

    own = commands.add_parser("align", help="word timestamps for a transcript you already have")
    common(own)
    own.add_argument("--text", required=True, help="the transcript to align")
    return parser


@contextlib.contextmanager
def _audio_source(audio: str, settings: Settings) -> Iterator[AudioInput]:
    """A URL is fetched into a temporary folder for the duration of the command; a path is used as it is."""
    from .fetch import fetch_audio, is_url

    if is_url(audio):
        with fetch_audio(audio, settings) as fetched:
            yield fetched.audio
    else:
        yield audio


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    settings = Settings.from_env()
    manager = ModelManager(settings)
    try:
        speakers = parse_speakers(args.speakers)
        limits = CueLimits(args.max_line_chars, args.max_cue_seconds)
        with _audio_source(args.audio, settings) as source:
            if args.command == "align":
                result = align(source, args.text, manager=manager, language=args.language, speakers=speakers)
            else:
                result = transcribe(source, manager=manager, model=args.model, language=args.language,
                                    context=args.context, timestamps=args.timestamps, speakers=speakers)
        if args.output:
            write_transcript(result, args.format, args.output, limits)
        else:
            sys.stdout.write(render_transcript(result, args.format, limits))
    except QasrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc.strerror or exc}: {exc.filename or args.output}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0
