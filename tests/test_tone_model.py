"""The tone checkpoint (`build_tone_asr`): its word names the tone band that fills most of the clip.

The scripted checkpoint says one sentence whatever it hears, so it cannot show that a result belongs to the audio
it was asked about. These tests first check that the tone model's word really follows the audio, through the real
processor, `generate` and the app's pipeline (files, resampling, padding, batching, context, forced language), then
use it to show that concurrent users sharing one model, merged into shared `generate` calls, each get their own word.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from qasr_space import inference
from qasr_space.audio import SAMPLE_RATE, load_audio
from qasr_space.inference import asr_inputs, run_asr
from qasr_space.transcribe import transcribe
from tests.checkpoints import TONE_FREQS, tone_clip, tone_word
from tests.engines import VLLM
from tests.media import write_media

BANDS = range(len(TONE_FREQS))


def silence(seconds: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    return np.zeros(int(round(seconds * sr)), np.float32)


def padded(band: int, seconds: float, sr: int = SAMPLE_RATE, lead: float = 0.3, trail: float = 0.5) -> np.ndarray:
    """One band's tone with silence before and after, as a recording has."""
    return np.concatenate([silence(lead, sr), tone_clip(band, seconds, sr), silence(trail, sr)])


def length(band: int) -> float:
    """Clip lengths from 1 s to 15 s, a different one per band."""
    return 1.0 + 2.0 * band


@pytest.mark.parametrize("fmt, sr", [("wav", 48000), ("mp3", 16000), ("wav", 16000), ("mp3", 48000)])
def test_a_file_of_each_band_gives_its_word(tone_manager, tmp_path, fmt, sr):
    for band in BANDS:
        path = write_media(tmp_path / f"band{band}.{fmt}", padded(band, length(band), sr), sr, fmt)
        result = transcribe(str(path), manager=tone_manager)
        assert (result.text, result.language) == (tone_word(band), "English"), (fmt, sr, band)
        assert result.duration == pytest.approx(length(band) + 0.8, abs=0.1)


@pytest.mark.parametrize("language, context", [
    ("en", None),
    ("French", None),
    (None, "Glossary: alpha, bravo, hotel. Speakers: Ann and Bob."),
    ("de", "A long context. " * 20),
])
def test_context_and_forced_language_leave_the_word_to_the_audio(tone_manager, language, context):
    for band in BANDS:
        result = transcribe(padded(band, length(band)), manager=tone_manager, language=language, context=context)
        assert result.text == tone_word(band), (language, context, band)
        assert result.language == {"en": "English", "de": "German"}.get(language, language or "English")


def test_the_word_follows_the_band_that_fills_most_of_the_clip(tone_manager):
    """Position in the clip does not matter, only how much of it each band (or silence) fills."""
    loaded = tone_manager.asr()
    clips = [
        np.concatenate([tone_clip(1, 6.0), tone_clip(6, 3.0)]),
        np.concatenate([tone_clip(1, 3.0), tone_clip(6, 6.0)]),
        np.concatenate([silence(1.0), tone_clip(4, 3.0), silence(1.0), tone_clip(0, 1.0)]),
        np.concatenate([silence(2.5), tone_clip(2, 1.5)]),
        silence(3.0),
    ]
    texts = [out.text for out in run_asr(loaded, clips, [None] * len(clips), [None] * len(clips))]
    assert texts == [tone_word(1), tone_word(6), tone_word(4), "", ""]


def test_a_batch_of_all_bands_gives_each_clip_what_it_gives_alone(tone_manager):
    """Rows of one `generate` of different lengths, languages and contexts: padding never leaks between them."""
    loaded = tone_manager.asr()
    order = [5, 0, 7, 2, 6, 1, 4, 3]
    clips = [padded(band, [14.5, 1.0, 6.3, 2.2, 9.9, 3.7, 1.4, 12.0][i], lead=0.1 * i) for i, band in enumerate(order)]
    clips.insert(3, silence(4.0))  # a silent row says nothing, and changes nothing for the others
    languages = [None, "en", None, "fr", None, None, "ja", None, "en"]
    contexts = [None, None, "Names: Ann, Bob.", None, "alpha " * 30, None, None, "hotel", None]
    expected = [tone_word(band) for band in order]
    expected.insert(3, "")

    batched = run_asr(loaded, clips, languages, contexts)
    alone = [run_asr(loaded, [clip], [lang], [ctx])[0] for clip, lang, ctx in zip(clips, languages, contexts)]
    assert [out.text for out in batched] == expected
    assert batched == alone
    assert [out.language for out in batched] == [None if lang else "English" for lang in languages]


def decisive_margin(loaded, clip: np.ndarray, language: str, context: str | None) -> tuple[str, float]:
    """The token greedy decoding takes right after `<asr_text>` (a forced language ends the prompt there) and its
    lead over the runner-up, in logits."""
    inputs = inference._to_model(asr_inputs(loaded.processor, [clip], [language], [context]), loaded)
    with torch.inference_mode():
        logits = loaded.model(**inputs).logits[0, -1].float()
    top = torch.topk(logits, 2)
    return loaded.processor.tokenizer.convert_ids_to_tokens(int(top.indices[0])), float(top.values[0] - top.values[1])


def test_each_word_wins_by_a_comfortable_logit_margin(tone_manager):
    """The decision is no coin toss: across lengths, silences, input rates and contexts the right word leads the
    runner-up (another word, or <|im_end|> for silence) by more than a logit, far beyond float noise.

    Silence competes as a class, so the narrowest case is 1 s of tone in 0.8 s of silence (barely more tone than
    silence) behind a long context, which dilutes the audio's share of the prompt.
    """
    loaded = tone_manager.asr()
    cases = [(band, seconds, sr, context) for band in BANDS for seconds in (1.0, 15.0) for sr in (16000, 48000)
             for context in (None, "Speakers: Ann and Bob. " * 8)]
    margins = []
    for band, seconds, sr, context in cases:
        clip = load_audio((sr, padded(band, seconds, sr)))  # resampled as the app does
        token, margin = decisive_margin(loaded, clip, "English", context)
        assert token == tone_word(band), (band, seconds, sr, context)
        margins.append(margin)
    token, silent_margin = decisive_margin(loaded, silence(2.0), "English", None)
    assert token == "<|im_end|>"
    print(f"smallest word margin {min(margins):.2f} logits, silence margin {silent_margin:.2f}")
    assert min(margins) > 1.0 and silent_margin > 1.0


def test_concurrent_users_each_get_their_own_word(tone_manager):
    """16 users at once on one manager: the batcher merges them into shared `generate` calls (fewer calls than
    requests; on the vLLM engine one request each, batched by the server), and each still gets the word of their own
    audio, never a neighbour's."""
    users = [(i % len(TONE_FREQS), 1.0 + (i * 5) % 14, i % 3 == 0) for i in range(16)]
    results: list[str | BaseException | None] = [None] * len(users)
    start = threading.Barrier(len(users))
    before = tone_manager.batch_stats()["asr"]

    def user(i: int) -> None:
        band, seconds, from_mic = users[i]
        try:
            if from_mic:  # what the microphone gives: 48 kHz int16
                audio = (48000, np.round(padded(band, seconds, 48000) * 32767).astype(np.int16))
            else:
                audio = padded(band, seconds)
            start.wait()
            results[i] = transcribe(audio, manager=tone_manager, language="en" if i % 4 == 1 else None).text
        except BaseException as exc:  # noqa: BLE001 - reported below, in the test's thread
            results[i] = exc

    threads = [threading.Thread(target=user, args=(i,)) for i in range(len(users))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert results == [tone_word(band) for band, _, _ in users]
    after = tone_manager.batch_stats()["asr"]
    requests, calls = after["requests"] - before["requests"], after["model_calls"] - before["model_calls"]
    assert requests == len(users) and (calls == requests if VLLM else calls < requests)
