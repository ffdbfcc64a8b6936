"""Greedy decoding batched per step: requests join a running batch between two decoding steps, and each row leaves it
the step it ends.

`generate` decodes one batch from start to end, so a request that arrives a step after it began waits for all of it,
and every request in it waits for the longest. Here the scheduler's consumer holds a `Decoding` and alternates: admit
the calls queued since the last step (`join`: each call's prefill, alone, then its rows added to the batch's KV
cache, left-padded to a common length), then one forward over every row (`step`), handing back each call whose rows
have all ended.

Each call gets exactly the tokens `generate` gives it alone: its prefill is its own (features and prompt made for its
clips only), its positions count its own tokens (as `generate` makes them from the attention mask), padding is masked
out, and its tokens go through the logits processors `generate` would build for it alone, fed with its own ids
(`supported` says which options this covers; `inference` sends the others to `generate`). What batching may change
is the rounding of a few products (other rows, other cache lengths), as it does inside `generate`: the tests check
that the tokens do not move.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from transformers import GenerationConfig
from transformers.cache_utils import Cache, DynamicLayer
from transformers.generation.configuration_utils import GenerationMode

#: Spare tokens a batch's KV cache is allocated with, so a step writes into it in place; `DynamicLayer` appends with
#: `torch.cat`, copying every layer's whole cache at every step, a cost that grows with the batch (BENCHMARKS.md).
CACHE_ROOM = 64


class DecodingJob(Protocol):
    """What a `Decoding` needs of one call (`inference._AsrJob`)."""

    loaded: Any
    generate_kwargs: dict[str, Any]
    budget: int
    watch: Any

    @property
    def clip_seconds(self) -> list[float]: ...

    def model_inputs(self) -> Any: ...

    def outputs(self, rows: torch.Tensor, eos: set[int]) -> list: ...


def supported(model: Any, options: dict[str, Any]) -> bool:
    """Whether `Decoding` gives a call with these `generate` options what `generate` gives it: greedy search, no
    stop strings or time limit, and only options of the generation config (no stopping criteria, streamers, ...)."""
    config, model_kwargs = model._prepare_generation_config(None, **options)
    if any(not name.startswith("output_") for name in model_kwargs):
        return False
    return (config.get_generation_mode() == GenerationMode.GREEDY_SEARCH and config.stop_strings is None
            and config.max_time is None and not config.return_dict_in_generate)


class _RoomyLayer(DynamicLayer):
    """A `DynamicLayer` that holds its keys and values in buffers with `CACHE_ROOM` spare tokens, and hands attention
    the whole buffers, as `StaticLayer` does: a step writes in place, the batch's attention mask covers the spare room
    (`Decoding._step_mask`), and only every `CACHE_ROOM` steps is the cache copied. (Handing attention strided views
    of the filled part instead, as before, measured the same: the CPU attention kernel reads the views in place.)"""

    length: int = 0

    def fill(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Hold `keys` and `values` (all the layer's tokens), with `CACHE_ROOM` spare tokens after them."""
        self.length = keys.shape[-2]
        self.keys = keys.new_zeros((*keys.shape[:-2], self.length + CACHE_ROOM, keys.shape[-1]))
        self.values = values.new_zeros((*values.shape[:-2], self.length + CACHE_ROOM, values.shape[-1]))
        self.keys[..., :self.length, :] = keys
        self.values[..., :self.length, :] = values
        self.device, self.is_initialized = keys.device, True

    @property
    def capacity(self) -> int:
        return self.keys.shape[-2]

    def filled(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys and values of the layer's tokens, without the spare room."""
        return self.keys[..., :self.length, :], self.values[..., :self.length, :]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        end = self.length + key_states.shape[-2]
        if end > self.capacity:  # `Decoding.step` makes room before the forward, as the mask is sized to it
            raise RuntimeError(f"KV cache full: {end} tokens, room for {self.capacity}")
        self.keys[..., self.length:end, :] = key_states
        self.values[..., self.length:end, :] = value_states
        self.length = end
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.capacity, 0


@dataclass(eq=False)
class _Call:
    """One call in the batch: its ids as `generate` alone would hold them (prompt, then a token per step, its
    pad token once a row ended), its logits processors, and which of its rows still decode."""

    job: DecodingJob
    ids: torch.Tensor
    processors: Any
    pad: int
    live: torch.Tensor
    steps: int = 0
    result: list | None = None

    def choose(self, logits: torch.Tensor, eos: torch.Tensor) -> torch.Tensor:
        """This step's token for each live row (greedy over the processed scores), recorded in `ids`; rows that end
        with it (an end-of-text token, or the budget) leave `live`."""
        rows = self.live.nonzero().squeeze(1)
        tokens = self.processors(self.ids[rows], logits).argmax(-1)
        column = torch.full((self.ids.shape[0],), self.pad, dtype=self.ids.dtype, device=self.ids.device)
        column[rows] = tokens
        self.ids = torch.cat([self.ids, column[:, None]], dim=1)
        self.steps += 1
        self.live[rows] = ~torch.isin(tokens, eos) & (self.steps < self.job.budget)
        return tokens


@dataclass(eq=False)
class Decoding:
    """One batch decoding per step, on the scheduler's consumer: `join` calls, `step` until `pending` is empty.
    Every call in it has the same model and `generate` options (the scheduler's group)."""

    loaded: Any
    config: GenerationConfig
    calls: list[_Call] = field(default_factory=list)
    #: Per batch row: its call and its index there, the token it feeds to the next step, its next position, its
    #: attention mask; and the batch's KV cache.
    owners: list[tuple[_Call, int]] = field(default_factory=list)
    tokens: torch.Tensor | None = None
    positions: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    cache: Cache | None = None

    @property
    def pending(self) -> list[DecodingJob]:
        return [call.job for call in self.calls]

    def join(self, jobs: list[DecodingJob]) -> None:
        """Prefill each job alone and add its rows to the batch; a job cancelled while queued ends at the next step
        with no outputs. Nothing is added unless every job's prefill succeeds."""
        joined = [self._prefill(job) for job in jobs]
        for call, cache, tokens, positions, mask in joined:
            self.calls.append(call)
            self._add_rows(call, cache, tokens, positions, mask)

    def step(self) -> list[tuple[DecodingJob, list]]:
        """One forward over every live row; each job whose rows have all ended, with its outputs."""
        for call in self.calls:
            watch = call.job.watch
            if watch is not None and watch.cancelled:
                call.live[:] = False
                call.result = []
        self._drop_ended_rows()
        if self.owners:
            with torch.inference_mode():
                out = self.loaded.model(input_ids=self.tokens[:, None], attention_mask=self._step_mask(),
                                        position_ids=self.positions[:, None], use_cache=True,
                                        **{cache_field(self.loaded.model): self.cache})
                logits = out.logits[:, -1].to(copy=True, dtype=torch.float32)
            self.positions = self.positions + 1
            tokens = self.tokens.clone()
            for call in {id(call): call for call, _ in self.owners}.values():
                rows = [row for row, (owner, _) in enumerate(self.owners) if owner is call]
                tokens[rows] = call.choose(logits[rows], self._eos)
                self._report(call)
            self.tokens = tokens
        return self._finished()

    def _prefill(self, job: DecodingJob):
        """The first token of each of the job's rows, from its own inputs and cache (as `generate` alone makes it)."""
        model = self.loaded.model
        inputs = job.model_inputs()
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        config = copy.deepcopy(self.config)
        config.max_new_tokens = job.budget
        model._prepare_special_tokens(config, True, device=ids.device)
        model._prepare_generated_length(generation_config=config, has_default_max_length=True,
                                        has_default_min_length=True, model_input_name="input_ids",
                                        inputs_tensor=ids, input_ids_length=ids.shape[1])
        processors = model._get_logits_processor(generation_config=config, input_ids_seq_length=ids.shape[1],
                                                 encoder_input_ids=ids, device=ids.device)
        positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
        call = _Call(job, ids, processors, int(config._pad_token_tensor),
                     torch.ones(ids.shape[0], dtype=torch.bool, device=ids.device))
        if job.watch is not None and job.watch.cancelled:
            call.live[:] = False
            call.result = []
            return call, None, None, None, None
        if job.watch is not None:
            job.watch.decoding_started(job.clip_seconds, job.budget)
        with torch.inference_mode():
            out = model(**inputs, position_ids=positions, use_cache=True, logits_to_keep=1)
            logits = out.logits[:, -1].to(copy=True, dtype=torch.float32)
        tokens = call.choose(logits, self._eos)
        self._report(call)
        return call, out[cache_field(model)], tokens, positions[:, -1] + 1, mask

    @property
    def _eos(self) -> torch.Tensor:
        return self.config._eos_token_tensor

    def _add_rows(self, call: _Call, cache: Cache | None, tokens, positions, mask) -> None:
        """The job's rows, left-padded with the batch to the longer of the two caches, appended to the batch."""
        if cache is None:
            return
        rows = [(layer.keys, layer.values) for layer in cache.layers]  # the prefill's `DynamicLayer`s
        if self.cache is None:
            self.cache = Cache(layers=[_RoomyLayer() for _ in rows])
            self.owners, self.tokens, self.positions, self.mask = [], tokens, positions, mask
            for layer, (keys, values) in zip(self.cache.layers, rows):
                layer.fill(keys, values)
        else:
            length = max(self.mask.shape[1], mask.shape[1])
            for layer, (keys, values) in zip(self.cache.layers, rows):
                held_keys, held_values = layer.filled()
                layer.fill(torch.cat([_left_pad(held_keys, length), _left_pad(keys, length)]),
                           torch.cat([_left_pad(held_values, length), _left_pad(values, length)]))
            self.mask = torch.cat([_left_pad(self.mask, length), _left_pad(mask, length)])
            self.tokens = torch.cat([self.tokens, tokens])
            self.positions = torch.cat([self.positions, positions])
        self.owners += [(call, index) for index in range(len(tokens))]

    def _step_mask(self) -> torch.Tensor:
        """The attention mask of this step's forward: the rows' masks, grown by this step's token, then zeros over
        the cache's spare room (made first if the cache is full)."""
        if self.cache.layers[0].length == self.cache.layers[0].capacity:
            for layer in self.cache.layers:
                layer.fill(*layer.filled())
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.mask.shape[0], 1))], dim=1)
        return _right_pad(self.mask, self.cache.layers[0].capacity)

    def _drop_ended_rows(self) -> None:
        """Rows whose call marked them ended leave the batch, and with them the cache's columns that only padded."""
        kept = [row for row, (call, index) in enumerate(self.owners) if call.live[index]]
        if len(kept) == len(self.owners):
            return
        self.owners = [self.owners[row] for row in kept]
        if not kept:
            self.cache = self.tokens = self.positions = self.mask = None
            return
        index = torch.tensor(kept, device=self.mask.device)
        self.mask = self.mask[index]
        first = int(self.mask.any(0).nonzero()[0])
        self.mask, self.tokens, self.positions = self.mask[:, first:], self.tokens[index], self.positions[index]
        for layer in self.cache.layers:
            keys, values = layer.filled()
            layer.fill(keys[index, :, first:], values[index, :, first:])

    def _report(self, call: _Call) -> None:
        watch = call.job.watch
        if watch is not None and not watch.cancelled:
            watch.decoding_step(call.steps)

    def _finished(self) -> list[tuple[DecodingJob, list]]:
        done = [call for call in self.calls if not call.live.any()]
        self.calls = [call for call in self.calls if call.live.any()]
        eos = set(self.config.eos_token_id or [])
        finished = []
        for call in done:
            if call.job.watch is not None:
                call.job.watch.decoding_finished()
            prompt = call.ids.shape[1] - call.steps
            result = call.result if call.result is not None else call.job.outputs(call.ids[:, prompt:], eos)
            finished.append((call.job, result))
        return finished


def cache_field(model: torch.nn.Module) -> str:
    """The name of the KV cache in the model's forward arguments and outputs: `cache` since transformers 5.24,
    `past_key_values` before (5.20.2, the last release for Python 3.10, where ZeroGPU runs)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def start(job: DecodingJob) -> Decoding:
    """An empty `Decoding` with the job's model and `generate` options; the scheduler then has it `join` the job."""
    config, _ = job.loaded.model._prepare_generation_config(None, **job.generate_kwargs)
    job.loaded.model._prepare_special_tokens(config, True, device=job.loaded.device)
    return Decoding(job.loaded, config)


def _left_pad(tensor: torch.Tensor, length: int) -> torch.Tensor:
    """`tensor` with zeros added before its sequence dimension (dim 2 of a cache's keys, 1 of a mask) to `length`."""
    missing = length - tensor.shape[2 if tensor.dim() == 4 else 1]
    if missing == 0:
        return tensor
    pad = (0, 0, missing, 0) if tensor.dim() == 4 else (missing, 0)
    return torch.nn.functional.pad(tensor, pad)


def _right_pad(mask: torch.Tensor, length: int) -> torch.Tensor:
    """A 2-D attention `mask` with zeros added after its tokens to `length`."""
    return torch.nn.functional.pad(mask, (0, length - mask.shape[1]))
