"""One batched forward of the ASR model or the aligner over clips that already fit them.

These are the only functions that touch the models. They take lists, one item per clip, so the same call serves
the chunks of one long file and the requests of several users (each item keeps its own language and context):
concurrent calls on one model are merged into one forward pass by the process's scheduler. A merged call gives each
clip exactly what it gives alone: features and prompts are made for each clip on its own, then padded together
(`padded_together`), and each call's rows are cut back to its own token budget. A call may carry a
`TranscriptionWatch`: it hears every decoding step, and cancelling it takes the call's rows out of the batch's work.
"""

from __future__ import annotations

import inspect
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import CompileConfig, ProcessorMixin, StoppingCriteria, StoppingCriteriaList
from transformers.utils.import_utils import is_nagisa_available, is_soynlp_available

from . import decoding
from .audio import SAMPLE_RATE
from .models import LoadedModel
from .progress import TranscriptionWatch
from .results import AsrOutput
from .scheduler import SCHEDULER

#: Generous upper bound on tokens per second of speech (fast Chinese or rap runs near 8); sizes max_new_tokens.
TOKENS_PER_SECOND = 12.0
MIN_NEW_TOKENS_BUDGET = 32

_WORD_SPLITTER_AVAILABLE = {"Japanese": is_nagisa_available, "Korean": is_soynlp_available}

#: On the CPU, a `generate` call whose whole KV cache (every row's prompt plus token budget) fits in this many bytes
#: gets a static cache, allocated once: the default cache grows by `torch.cat`, copying every layer's cache at every
#: step, a cost that grows with the batch (BENCHMARKS.md). Larger calls (long chunks, whose budget far exceeds the
#: tokens they use) keep the default, which holds only what is used.
STATIC_CACHE_MAX_BYTES = 1 << 30

#: transformers 5.23+ can keep chat control tokens in user text as plain text; 5.20.2, the last release for Python
#: 3.10, cannot, and there the context loses them instead (`without_control_tokens`).
_PROCESSOR_SANITIZES = "sanitize_control_tokens" in inspect.signature(ProcessorMixin.apply_chat_template).parameters


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
    """The processor's own prompt for each clip: context in the system turn with chat control tokens kept as plain
    text, so user text cannot close the turn; a forced language prefilled as `language <Name><asr_text>`. Made per
    clip, then `padded_together`."""
    return padded_together([_asr_input(processor, clip, language, context)
                            for clip, language, context in zip(clips, languages, contexts)],
                           processor.tokenizer.pad_token_id)


def _asr_input(processor, clip: np.ndarray, language: str | None, context: str | None):
    if _PROCESSOR_SANITIZES:
        return processor.apply_transcription_request(audio=[clip], language=[language], prompt=[context or None],
                                                     sanitize_control_tokens=True)
    cleaned = (without_control_tokens(processor.tokenizer, context) if context else "") or None
    return processor.apply_transcription_request(audio=[clip], language=[language], prompt=[cleaned])


def padded_together(parts: list, pad_token_id: int):
    """One batch of the processor's single-clip inputs, padded as the processor pads (text on the left, features on
    the right) but with each clip's features and audio tokens as they are alone.

    The processor computes a batch's features over the whole padded batch: a clip whose length is not a multiple of
    160 samples then gets one more feature frame (and audio token) than alone, and its last frames see the padding.
    So batched answers would depend on the other clips in the batch."""
    if len(parts) == 1:
        return parts[0]
    batch = parts[0].__class__()
    text_length = max(part["input_ids"].shape[1] for part in parts)
    frames = max(part["input_features"].shape[-1] for part in parts)
    for name, pad, length, left in (("input_ids", pad_token_id, text_length, True),
                                    ("attention_mask", 0, text_length, True),
                                    ("input_features", 0.0, frames, False),
                                    ("input_features_mask", 0, frames, False)):
        rows = []
        for part in parts:
            tensor = part[name]
            missing = length - tensor.shape[-1]
            rows.append(torch.nn.functional.pad(tensor, (missing, 0) if left else (0, missing), value=pad))
        batch[name] = torch.cat(rows)
    return batch


def without_control_tokens(tokenizer, text: str) -> str:
    """`text` with every added token of the tokenizer (`<|im_end|>`, `<|audio_pad|>`, ...) removed, repeatedly, so
    removing one cannot join the pieces of another."""
    pattern = re.compile("|".join(re.escape(token) for token in sorted(tokenizer.get_added_vocab(), key=len,
                                                                         reverse=True)))
    while True:
        cleaned = pattern.sub("", text)
        if cleaned == text:
            return cleaned
        text = cleaned


def run_asr(
    loaded: LoadedModel,
    clips: list[np.ndarray],
    languages: list[str | None],
    contexts: list[str | None],
    max_new_tokens: int | None = None,
    *,
    watch: TranscriptionWatch | None = None,
    **generate_kwargs,
) -> list[AsrOutput]:
    """Transcribe clips (each within the model's limit), decoded together.

    Concurrent calls on the same model with the same generate options share the decoding: per step
    (`decoding.Decoding`, joining a batch in progress at its next step) for greedy decoding, else one `generate`
    call (the scheduler merges the calls queued together). Each still gets exactly what it would get alone, its own
    token budget included. `watch` hears each decoding step; once it is cancelled, the call does not start, or stops
    at the next step, and raises `Cancelled`.
    """
    if watch is not None:
        watch.raise_if_cancelled()
    budget = max_new_tokens or new_tokens_for(max(len(c) for c in clips) / SAMPLE_RATE)
    job = _AsrJob(loaded, list(clips), list(languages), list(contexts), budget, generate_kwargs, watch)
    key = _options_key(generate_kwargs)
    if _decodes_per_step(loaded, generate_kwargs):
        outputs = SCHEDULER.submit_stepwise(decoding.start, job, policy=loaded.policy, key=key, size=len(job.clips))
    else:
        outputs = SCHEDULER.submit(_generate, job, policy=loaded.policy, key=key, size=len(job.clips))
    if watch is not None:
        watch.raise_if_cancelled()
    return outputs


@dataclass
class _AsrJob:
    """One `run_asr` call waiting to be batched."""

    loaded: LoadedModel
    clips: list[np.ndarray]
    languages: list[str | None]
    contexts: list[str | None]
    budget: int
    generate_kwargs: dict[str, Any]
    watch: TranscriptionWatch | None = None

    @property
    def clip_seconds(self) -> list[float]:
        return [len(clip) / SAMPLE_RATE for clip in self.clips]

    def model_inputs(self):
        """The job's prompts and features, padded together, on the model's device."""
        return _to_model(asr_inputs(self.loaded.processor, self.clips, self.languages, self.contexts), self.loaded)

    def outputs(self, rows: torch.Tensor, eos: set[int]) -> list[AsrOutput]:
        """Text and language of each row of generated tokens (cut to the budget; padded after an end-of-text
        token), and whether the budget cut it short."""
        rows = rows[:, :self.budget]
        parsed = self.loaded.processor.decode(rows, return_format="parsed")
        return [AsrOutput(text=item["transcription"], language=item["language"],
                          truncated=not any(token in eos for token in row) and len(row) >= self.budget)
                for row, item in zip(rows.tolist(), parsed)]


def _decodes_per_step(loaded: LoadedModel, options: dict[str, Any]) -> bool:
    """Whether a call decodes per step (`decoding`): greedy options it supports, and not CUDA's compiled static
    cache (`_cache_options`), which only `generate` runs."""
    return not (loaded.device.type == "cuda" and loaded.compile) and decoding.supported(loaded.model, options)


def _options_key(options: dict[str, Any]) -> tuple:
    """Generate options as a hashable key; a value that cannot be hashed counts by identity, so it never merges with
    another call's equal-looking value."""
    items = []
    for name, value in sorted(options.items()):
        try:
            hash(value)
        except TypeError:
            value = ("unhashable", id(value))
        items.append((name, value))
    return tuple(items)


def _generate(jobs: list[_AsrJob]) -> list[list[AsrOutput]]:
    """`_decode` of the jobs not cancelled while they waited in the queue; a cancelled one gets no outputs (and its
    caller `Cancelled`)."""
    cancelled = [job.watch is not None and job.watch.cancelled for job in jobs]
    live = [job for job, gone in zip(jobs, cancelled) if not gone]
    decoded = iter(_decode(live) if live else [])
    return [[] if gone else next(decoded) for gone in cancelled]


def _decode(jobs: list[_AsrJob]) -> list[list[AsrOutput]]:
    """One `generate` over every job's clips (same model and options), run to the largest budget; each job's rows are
    cut back to its own budget, so (decoding being per row) it gets the tokens it would have got alone. With any
    watch among the jobs, `_WatchedRows` reports each step and stops the rows of cancelled jobs."""
    loaded = jobs[0].loaded
    processor = loaded.processor
    watched = [job for job in jobs if job.watch is not None]
    for job in watched:
        job.watch.decoding_started(job.clip_seconds, job.budget)
    clips = [clip for job in jobs for clip in job.clips]
    languages = [language for job in jobs for language in job.languages]
    contexts = [context for job in jobs for context in job.contexts]
    inputs = _to_model(asr_inputs(processor, clips, languages, contexts), loaded)
    budget = max(j.budget for j in jobs)
    options = {**_cache_options(loaded, *inputs["input_ids"].shape, budget), **jobs[0].generate_kwargs}
    if watched:
        options["stopping_criteria"] = StoppingCriteriaList([_WatchedRows(jobs, inputs["input_ids"].shape[1])])
    with torch.inference_mode():
        out = loaded.model.generate(**inputs, max_new_tokens=budget, **options)
    for job in watched:
        job.watch.decoding_finished()
    generated = out[:, inputs["input_ids"].shape[1]:]
    eos = set(loaded.model.generation_config.eos_token_id or [])
    results, first = [], 0
    for job in jobs:
        results.append(job.outputs(generated[first:first + len(job.clips)], eos))
        first += len(job.clips)
    return results


class _WatchedRows(StoppingCriteria):
    """At every step of a `generate` over these jobs' rows (in order): tell each job's watch the step, or, once it is
    cancelled, mark the job's rows finished. Rows are finished one by one, so the other jobs' rows decode on exactly as
    before, and `generate` returns once every row is finished; a cancelled job's rows still ride along in the
    batch's forward passes until then (a batch does not shrink), but no longer keep it going."""

    def __init__(self, jobs: list[_AsrJob], prompt_length: int):
        self.prompt_length = prompt_length
        self.spans: list[tuple[int, int, TranscriptionWatch]] = []
        first = 0
        for job in jobs:
            if job.watch is not None:
                self.spans.append((first, first + len(job.clips), job.watch))
            first += len(job.clips)
        self.rows = first
        self.none_finished: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        step = input_ids.shape[1] - self.prompt_length
        per_row = input_ids.shape[0] // self.rows  # sequences per clip (beams, return sequences)
        finished = None
        for first, end, watch in self.spans:
            if not watch.cancelled:
                watch.decoding_step(step)
                continue
            if finished is None:
                finished = torch.zeros(input_ids.shape[0], dtype=torch.bool)
            finished[first * per_row:end * per_row] = True
        if finished is not None:
            return finished.to(input_ids.device)
        if self.none_finished is None:
            self.none_finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        return self.none_finished


#: How `generate` compiles its decoding step on CUDA with the `compile` setting: inductor with CUDA graphs
#: ("reduce-overhead"): an eager 0.6B decode step is launches and Python (32-34 ms on an H200, against a floor under
#: 1 ms). `dynamic=None`: the first call compiles for its shapes; the first new batch size, and the first new cache
#: length, each compile once more with that size symbolic, and from then on a new size costs a graph capture, not a
#: compile (seen with dynamo on the CPU). `fullgraph=False`: a graph break costs speed, not the request (the decoding
#: forward traces as one graph under transformers 5.24; bench/bench_gpu.py reports any break).
COMPILE_CONFIG = CompileConfig(fullgraph=False, dynamic=None, mode="reduce-overhead")
#: Compiled static caches are this many tokens long, or a multiple of it (see `_cache_options`).
CACHE_LENGTH_STEP = 256


def _cache_options(loaded: LoadedModel, rows: int, prompt_tokens: int, budget: int) -> dict[str, Any]:
    """The KV cache, and on CUDA the compilation, of one `generate` call of `rows` rows.

    CPU: `cache_implementation="static"` when the call's whole cache fits `STATIC_CACHE_MAX_BYTES`.

    CUDA with the `compile` setting (`QASR_COMPILE`, carried by the loaded model): a static cache and `COMPILE_CONFIG`, with
    which `generate` compiles its decoding step (the prefill stays eager) and replays it as CUDA graphs. A compiled
    step is specialised to the cache's length, and every prompt's length differs, so the length is bucketed: prompt
    plus budget rounded up to a multiple of `CACHE_LENGTH_STEP`, which calls a few tokens apart share. transformers
    never shrinks a model's static cache (it keeps the longest allocated so far), so a process meets at most one new
    length per step up to its longest call: the first costs one more compile, the later ones a graph capture each
    (`COMPILE_CONFIG`). Not powers of two: attention reads the whole cache length at every step, for every row, and
    2,100 tokens rounded to 4,096 would nearly double that for the rest of the process.

    Otherwise: the default dynamic cache, eager.
    """
    if loaded.device.type == "cuda":
        if not loaded.compile:
            return {}
        length = -(-(prompt_tokens + budget) // CACHE_LENGTH_STEP) * CACHE_LENGTH_STEP
        return {"cache_implementation": "static", "max_cache_len": length, "compile_config": COMPILE_CONFIG}
    if loaded.device.type != "cpu":
        return {}
    text = loaded.model.config.get_text_config()
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    per_token = 2 * text.num_hidden_layers * text.num_key_value_heads * head_dim * loaded.dtype.itemsize
    if rows * (prompt_tokens + budget) * per_token > STATIC_CACHE_MAX_BYTES:
        return {}
    return {"cache_implementation": "static"}


def run_aligner(
    loaded: LoadedModel, clips: list[np.ndarray], texts: list[str], languages: list[str | None]
) -> list[list[dict]]:
    """Word times for each (clip, text) pair, as `decode_forced_alignment` gives them: seconds from clip start.

    Concurrent calls share one forward pass (the scheduler merges them). Japanese and Korean use nagisa /
    soynlp to split words when installed (nagisa is a requirement); without them the processor's generic splitting
    (CJK per character, else whitespace) is used rather than failing.
    """
    job = _AlignJob(loaded, list(clips), list(texts), list(languages))
    return SCHEDULER.submit(_align, job, policy=loaded.policy, size=len(job.clips))


@dataclass
class _AlignJob:
    """One `run_aligner` call waiting to be batched."""

    loaded: LoadedModel
    clips: list[np.ndarray]
    texts: list[str]
    languages: list[str | None]


def _align(jobs: list[_AlignJob]) -> list[list[list[dict]]]:
    """One aligner forward over every job's clips, split back per job."""
    loaded = jobs[0].loaded
    processor = loaded.processor
    split_languages = [
        None if lang in _WORD_SPLITTER_AVAILABLE and not _WORD_SPLITTER_AVAILABLE[lang]() else lang
        for job in jobs for lang in job.languages
    ]
    parts = [processor.prepare_forced_aligner_inputs(audio=[clip], transcript=[text], language=[language])
             for clip, text, language in zip([clip for job in jobs for clip in job.clips],
                                             [text for job in jobs for text in job.texts], split_languages)]
    inputs = _to_model(padded_together([part for part, _ in parts], processor.tokenizer.pad_token_id), loaded)
    word_lists = [words for _, (words,) in parts]
    with torch.inference_mode():
        logits = loaded.model(**inputs).logits
    aligned = processor.decode_forced_alignment(
        logits=logits, input_ids=inputs["input_ids"], word_lists=word_lists,
        timestamp_token_id=loaded.model.config.timestamp_token_id,
    )
    results, first = [], 0
    for job in jobs:
        results.append(aligned[first:first + len(job.clips)])
        first += len(job.clips)
    return results
