"""The scheduler: one queue and one consumer thread own every forward pass of the process.

Model work arrives from many threads (Gradio's workers, the REST pool, live sessions, several files at once). Each
piece is queued here, and the one consumer thread runs it, oldest first:

- **Batching per step.** A stepwise call (`submit_stepwise`: greedy transcription, `decoding`) joins the running
  batch of its group (same start function, same policy, equal key) at its next decoding step, and returns the step
  its rows end. Between two steps the consumer admits what is queued, then steps every running batch once. A model
  (its policy) decodes at most `max_size` clips at once across its batches; a call that does not fit waits, and its
  model's later calls wait behind it. If a join raises, each call joins alone; if a step raises, each call in that
  batch is decoded again alone: only a bad request gets an error.
- **Batching per call.** A batchable call (`submit`: other generate options, the aligner, diarization) takes with it
  every queued call of its group up to the policy's `max_size` clips, and they run as one call, between two steps
  of any running batch. If a merged run raises, each call is run again alone.
- **Waiting for company.** When nothing is running and the oldest call is alone in the queue, it waits up to its
  policy's `wait_seconds` for company; under load, batches form with no waiting at all. Each run function gives
  every call exactly what it would get alone (`inference` computes features per clip, and cuts each call back to
  its own token budget).
- **One thread for the models.** PyTorch's OpenMP runtime (libgomp) gives every thread that runs a parallel region a
  pool of worker threads of its own, kept until that thread ends. Once the pools together hold more threads than
  there are cores, libgomp stops spinning between parallel regions and the thread that made the extra pool runs far
  slower: each of a CPU decode step's ~200 matrix products waits for its workers to wake (steps 20-35 % slower on 2
  cores), and on a 16-core GPU machine the same `generate` took 3x as long (BENCHMARKS.md). Gradio serves requests
  from many threads, so model work must not run in them.
- **No locks around the models.** Only the consumer runs them, so two requests never run the same weights at once.

Model loads run beside the consumer, in threads of their own (`models.run_in_new_thread`), so a load stalls nobody.
Work started by the consumer itself (model work inside model work) runs at once, so it cannot deadlock; a stepwise
call there is decoded alone to its end. In a forked child (ZeroGPU runs each GPU call in one) the consumer thread
does not exist, and the work runs in the caller's thread, alone: ZeroGPU switches cross-request batching off anyway
(`Settings.batch_requests`).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

log = logging.getLogger(__name__)

P = TypeVar("P")
R = TypeVar("R")


@dataclass
class BatchCounter:
    """How many model calls served how many requests and clips, so tests, `/info` and logs can see batching."""

    model_calls: int = 0
    requests: int = 0
    clips: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count_call(self) -> None:
        with self._lock:
            self.model_calls += 1

    def count_request(self, clips: int) -> None:
        with self._lock:
            self.requests += 1
            self.clips += clips

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"model_calls": self.model_calls, "requests": self.requests, "clips": self.clips}


@dataclass(eq=False)
class BatchPolicy:
    """How one model's calls batch: at most `max_size` clips a run, `wait_seconds` of waiting for company, and
    `enabled=False` for one call a run. Calls merge only under the same policy object, so each model has its own."""

    max_size: int = 4
    wait_seconds: float = 0.0
    enabled: bool = True
    counter: BatchCounter = field(default_factory=BatchCounter)


class Stepwise(Protocol):
    """A batch that calls join between its steps (`decoding.Decoding`): `join` admits payloads (all or none),
    `step` advances every row once and returns each payload that ended, with its result; `pending` is what has not."""

    pending: list

    def join(self, payloads: list) -> None: ...

    def step(self) -> list[tuple[Any, Any]]: ...


@dataclass(eq=False)
class _Work:
    """One queued piece of work: a batchable call (`run` over payloads, or with `stepwise` the maker of a `Stepwise`
    batch it joins) or, with no policy, one function call."""

    run: Callable[..., Any]
    payload: Any = None
    key: Hashable = None
    policy: BatchPolicy | None = None
    size: int = 1
    stepwise: bool = False
    future: Future = field(default_factory=Future)

    def joins(self, head: _Work) -> bool:
        return (self.policy is head.policy and self.run == head.run and self.key == head.key
                and self.stepwise == head.stepwise)

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        self.policy.counter.count_request(self.size)
        if error is None:
            self.future.set_result(result)
        else:
            self.future.set_exception(error)


@dataclass(eq=False)
class _Active:
    """A `Stepwise` batch the consumer is stepping, and the calls in it."""

    head: _Work
    batch: Stepwise
    works: dict[int, _Work] = field(default_factory=dict)

    @property
    def clips(self) -> int:
        return sum(self.works[id(payload)].size for payload in self.batch.pending)


class Scheduler:
    """The process's queue of model work and its consumer thread (see the module docstring)."""

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._queue: list[_Work] = []
        self._consumer: threading.Thread | None = None
        self._active: list[_Active] = []

    def submit(self, run: Callable[[list[P]], list[R]], payload: P, *, policy: BatchPolicy, key: Hashable = None,
               size: int = 1) -> R:
        """`run([payload, ...])[i]` for this payload, computed on the consumer together with queued payloads of the
        same group: the same `run` (a module-level function), the same `policy` and equal `key`s. `size` is how many
        clips the payload holds, counted against `policy.max_size`."""
        return self._wait_for(_Work(run, payload, key, policy, max(1, size)))

    def submit_stepwise(self, start: Callable[[P], Stepwise], payload: P, *, policy: BatchPolicy,
                        key: Hashable = None, size: int = 1) -> Any:
        """This payload's result from a `Stepwise` batch of its group (the same module-level `start`, `policy` and
        equal `key`): it joins the group's running batch at its next step, if that has room, else waits for the
        room (or starts one with `start(payload)`), and returns as soon as its rows end."""
        return self._wait_for(_Work(start, payload, key, policy, max(1, size), stepwise=True))

    def run(self, fn: Callable[..., R], *args, **kwargs) -> R:
        """`fn(*args, **kwargs)` on the consumer, in turn with the model calls queued before it; never merged."""
        return self._wait_for(_Work(functools.partial(fn, *args, **kwargs)))

    def on_consumer(self) -> bool:
        """Whether this thread is the consumer (or a forked child, where work runs in the caller's thread)."""
        return threading.current_thread() is self._consumer or os.getpid() != self._pid

    def _wait_for(self, work: _Work) -> Any:
        if self.on_consumer():
            self._execute([work], inline=True)
        else:
            with self._cond:
                if self._consumer is None:
                    self._consumer = threading.Thread(target=self._consume, name="qasr-model", daemon=True)
                    self._consumer.start()
                self._queue.append(work)
                self._cond.notify_all()
        return work.future.result()

    def _consume(self) -> None:
        while True:
            if not self._active:
                self._execute(self._next_batch())
                continue
            for batch in self._admissions():
                self._execute(batch)
            for active in list(self._active):
                if not self._step(active):
                    self._active.remove(active)

    def _next_batch(self) -> list[_Work]:
        """The oldest work, with the queued calls of its group up to the policy's size, once it has waited its
        `wait_seconds` for company (or the group is full)."""
        with self._cond:
            while not self._queue:
                self._cond.wait()
            head = self._queue[0]
            policy = head.policy
            if policy is None or not policy.enabled:
                return [self._queue.pop(0)]
            deadline = time.monotonic() + policy.wait_seconds
            while True:
                group = [work for work in self._queue if work.joins(head)]
                remaining = deadline - time.monotonic()
                if sum(work.size for work in group) >= policy.max_size or remaining <= 0:
                    break
                self._cond.wait(remaining)
            return self._take(head, policy.max_size, first=True)

    def _admissions(self) -> list[list[_Work]]:
        """Between two steps: the queued work to run or admit now, oldest first, as batches; without waiting. A
        stepwise call joins its group's running batch, or starts one, while its model's running batches hold fewer
        than `max_size` clips (a disabled policy: none); until it fits, its model's later calls wait behind it."""
        batches: list[list[_Work]] = []
        with self._cond:
            while self._queue:
                blocked: set[int] = set()
                for head in self._queue:
                    if head.policy is None or not head.stepwise:
                        batch = self._take(head, head.policy.max_size if head.policy else 1, first=True)
                        break
                    if id(head.policy) in blocked:
                        continue
                    running = [active for active in self._active if active.head.policy is head.policy]
                    room = (head.policy.max_size if head.policy.enabled else 1) - sum(a.clips for a in running)
                    if batch := self._take(head, room, first=not running):
                        break
                    blocked.add(id(head.policy))
                else:
                    break
                batches.append(batch)
                if batch[0].stepwise:
                    break  # the next admissions see the batch it starts or joins
        return batches

    def _take(self, head: _Work, room: int, first: bool = False) -> list[_Work]:
        """Queued calls of `head`'s group, oldest first, while their clips fit `room` (`first`: the oldest always),
        taken out of the queue."""
        batch, total = [], 0
        for work in self._queue:
            if not work.joins(head):
                continue
            if total + work.size > room and not (first and not batch):
                break
            batch.append(work)
            total += work.size
        self._queue = [work for work in self._queue if work not in batch]
        return batch

    def _active_for(self, work: _Work) -> _Active | None:
        return next((active for active in self._active if work.joins(active.head)), None)

    def _execute(self, batch: list[_Work], inline: bool = False) -> None:
        """Run the batch as one call and hand each caller its result; if a merged run raises, run each call alone,
        so only the failing ones get the error. A stepwise batch joins its group's running batch (or starts one);
        run inline, it is decoded to its end at once."""
        head = batch[0]
        if head.policy is None:
            _settle(head.future, head.run)
            return
        if head.stepwise:
            if inline:
                self._run_alone(head)
            else:
                self._join(self._active_for(head), batch)
            return
        head.policy.counter.count_call()
        try:
            results = head.run([work.payload for work in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batched run returned {len(results)} results for {len(batch)} requests")
        except BaseException as exc:
            if len(batch) > 1 and isinstance(exc, Exception):
                log.warning("a batch of %d requests failed (%s); running each alone", len(batch), exc)
                for work in batch:
                    self._execute([work])
                return
            for work in batch:
                work.settle(error=exc)
            return
        if len(batch) > 1:
            log.info("ran %d requests (%d clips) in one model call", len(batch), sum(work.size for work in batch))
        for work, result in zip(batch, results):
            work.settle(result)

    def _join(self, active: _Active | None, batch: list[_Work], keep: bool = True) -> _Active | None:
        """`batch` into `active` (or a new running batch, kept among those stepped when `keep`); if the merged
        join raises, each call joins alone, so only the failing ones get the error."""
        head = batch[0]
        head.policy.counter.count_call()
        try:
            if active is None:
                active = _Active(head, head.run(head.payload))
                if keep:
                    self._active.append(active)
            active.batch.join([work.payload for work in batch])
        except BaseException as exc:
            if len(batch) > 1 and isinstance(exc, Exception):
                log.warning("%d requests failed to join a batch (%s); each joins alone", len(batch), exc)
                for work in batch:
                    active = self._join(active, [work], keep)
                return active
            for work in batch:
                work.settle(error=exc)
            return active
        active.works.update((id(work.payload), work) for work in batch)
        return active

    def _step(self, active: _Active) -> bool:
        """One step of a running batch, handing each call that ended its result; whether calls remain in it. If the
        step raises, each call in the batch is decoded again alone, so only the failing ones get the error."""
        try:
            for payload, result in active.batch.step():
                active.works.pop(id(payload)).settle(result)
        except BaseException as exc:
            works = [active.works[id(payload)] for payload in active.batch.pending]
            if len(works) > 1 and isinstance(exc, Exception):
                log.warning("a batch of %d requests failed (%s); decoding each alone", len(works), exc)
                for work in works:
                    self._run_alone(work)
            else:
                for work in works:
                    work.settle(error=exc)
            return False
        return bool(active.batch.pending)

    def _run_alone(self, work: _Work) -> None:
        """A stepwise call in a running batch of its own, stepped to its end now."""
        active = self._join(None, [work], keep=False)
        while active is not None and self._step(active):
            pass


def _settle(future: Future, fn: Callable[[], Any]) -> None:
    try:
        future.set_result(fn())
    except BaseException as exc:  # handed to the waiting caller, who raises it
        future.set_exception(exc)


#: The process's scheduler: OpenMP's pools are per process, so every manager shares it.
SCHEDULER = Scheduler()
