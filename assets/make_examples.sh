#!/usr/bin/env bash
# Regenerates the example clips shown under the Space's upload box. Speech synthesised with espeak-ng (GPL tool; its
# output is not covered by the tool's licence), then encoded by ffmpeg at 16 kHz mono, so the clips stay small and
# exercise two different decoders (mp3, ogg/opus).
set -euo pipefail
cd "$(dirname "$0")"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

make_clip() {  # voice, speed (words per minute), output file, text
  espeak-ng -v "$1" -s "$2" -w "$tmp/speech.wav" "$4"
  ffmpeg -hide_banner -loglevel error -y -i "$tmp/speech.wav" -ac 1 -ar 16000 -map_metadata -1 \
    -fflags +bitexact "${@:5}" "$3"
}

make_clip en-us 150 english.mp3 "The quick brown fox jumps over the lazy dog, then takes a long nap in the warm afternoon sun." -b:a 48k
make_clip de 140 german.ogg "Guten Morgen! Heute scheint die Sonne, und wir gehen zusammen in den Park." -c:a libopus -b:a 32k
make_clip cmn 150 chinese.mp3 "今天天气很好，我们一起去公园散步吧。" -b:a 48k
