"""One batched forward of the ASR model or the aligner over clips that already fit them.

These are the only functions that touch the models. They take lists, one item per clip, so the same call serves
the chunks of one long file and the requests of several users (each item keeps its own language and context).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from transformers.utils.import_utils import is_nagisa_available, is_soynlp_available

from .audio import SAMPLE_RATE
from .models import LoadedModel

#: Generous upper bound on tokens per second of speech (fast Chinese or rap runs near 8); sizes max_new_tokens.
TOKENS_PER_SECOND = 12.0
MIN_NEW_TOKENS_BUDGET = 32

_WORD_SPLITTER_AVAILABLE = {"Japanese": is_nagisa_available, "Korean": is_soynlp_available}


@dataclass
class AsrOutput:
    """What the model said for one clip; `language` is the model's own tag (None when forced or silent)."""

    text: str
    language: str | None
    truncated: bool


def new_tokens_for(seconds: float) -> int:
    """A max_new_tokens budget that a real transcript of `seconds` of speech never reaches."""
    return int(math.ceil(seconds * TOKENS_PER_SECOND)) + MIN_NEW_TOKENS_BUDGET


def _to_model(inputs, loaded: LoadedModel):
    """Zero the processor's padding features past each clip's end, so a clip batched with a longer one decodes as it
    would alone, then move to the model's device and dtype (only floating tensors are cast)."""
    mask = inputs["input_features_mask"]
    inputs["input_features"] = inputs["input_features"] * mask[:, None, :].to(inputs["input_features"].dtype)
    return inputs.to(loaded.device, loaded.dtype)


def asr_inputs(processor, clips: list[np.ndarray], languages: list[str | None], contexts: list[str | None]):
    """The processor's own prompt: context in the system turn with chat control tokens kept as plain text, so user
    text cannot close the turn; a forced language prefilled as `language <Name><asr_text>`."""
    return processor.apply_transcription_request(
        audio=list(clips), language=list(languages), prompt=[c or None for c in contexts],
        sanitize_control_tokens=True,
    )


def run_asr(
    loaded: LoadedModel,
    clips: list[np.ndarray],
    languages: list[str | None],
    contexts: list[str | None],
    max_new_tokens: int | None = None,
    **generate_kwargs,
) -> list[AsrOutput]:
    """Transcribe clips (each within the model's limit) in one `generate` call."""
    processor = loaded.processor
    inputs = _to_model(asr_inputs(processor, clips, languages, contexts), loaded)
    budget = max_new_tokens or new_tokens_for(max(len(c) for c in clips) / SAMPLE_RATE)
    with loaded.lock, torch.inference_mode():
        out = loaded.model.generate(**inputs, max_new_tokens=budget, **generate_kwargs)
    generated = out[:, inputs["input_ids"].shape[1]:]
    parsed = processor.decode(generated, return_format="parsed")
    eos = set(loaded.model.generation_config.eos_token_id or [])
    results = []
    for row, item in zip(generated.tolist(), parsed):
        finished = any(token in eos for token in row)
        results.append(AsrOutput(text=item["transcription"], language=item["language"],
                                 truncated=not finished and len(row) >= budget))
    return results


def run_aligner(
    loaded: LoadedModel, clips: list[np.ndarray], texts: list[str], languages: list[str | None]
) -> list[list[dict]]:
    """Word times for each (clip, text) pair, as `decode_forced_alignment` gives them: seconds from clip start.

    Japanese and Korean use nagisa / soynlp to split words when installed; without them the processor's generic
    splitting (CJK per character, else whitespace) is used rather than failing.
    """
    processor = loaded.processor
    split_languages = [
        None if lang in _WORD_SPLITTER_AVAILABLE and not _WORD_SPLITTER_AVAILABLE[lang]() else lang
        for lang in languages
    ]
    inputs, word_lists = processor.prepare_forced_aligner_inputs(
        audio=list(clips), transcript=list(texts), language=split_languages
    )
    inputs = _to_model(inputs, loaded)
    with loaded.lock, torch.inference_mode():
        logits = loaded.model(**inputs).logits
    return processor.decode_forced_alignment(
        logits=logits, input_ids=inputs["input_ids"], word_lists=word_lists,
        timestamp_token_id=loaded.model.config.timestamp_token_id,
    )
