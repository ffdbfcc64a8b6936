"""Batching across requests: concurrent calls on one model share one forward pass instead of queueing for it.

Each loaded model owns a `MicroBatcher`. A call joins the model's queue. If the model is idle, the caller becomes
the leader: it waits up to `wait_seconds` for more calls to arrive (less once `max_size` clips are queued), takes
the oldest call and the other queued calls of the same group (same run function and options) up to `max_size`
clips, runs them as one call, and hands each caller its own results. Calls that arrive while the model is busy
queue up and are served together by the next leader, so under load batches form without any waiting.

Calls of different groups never share a run (a model's ASR calls with different generate options, say). If a
merged run raises, each of its calls is run again alone, so only a bad request gets an error. Callers block in
their own threads (Gradio workers, the REST thread pool); the leader is one of them. It hands each run to the
batcher's `runner`, which for a manager's models is the process's one model thread (`models.ModelThread`).

On ZeroGPU (`SPACES_ZERO_GPU`), GPU work must run inside the `@spaces.GPU` call of its own request, in a process of
its own, so cross-request batching is switched off there (`Settings.batch_requests`): each call runs alone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

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
class _Call(Generic[P, R]):
    """One caller's request, waiting in the queue; `done` is set once `result` or `error` is."""

    run: Callable[[list[P]], list[R]]
    key: Hashable
    payload: P
    size: int
    done: bool = False
    result: R | None = None
    error: BaseException | None = None

    def same_group(self, other: _Call) -> bool:
        return self.run == other.run and self.key == other.key


class MicroBatcher:
    """Merges concurrent `submit` calls on one model into batched runs (see the module docstring)."""

    def __init__(self, counter: BatchCounter | None = None, *, max_size: int = 4, wait_seconds: float = 0.0,
                 enabled: bool = True, runner: Callable[..., Any] | None = None):
        self.counter = counter or BatchCounter()
        #: Calls `run(payloads)` as `runner(run, payloads)`: where the model work happens (default: right here).
        self.runner = runner or _run_here
        self.max_size = max(1, max_size)
        self.wait_seconds = max(0.0, wait_seconds)
        self.enabled = enabled
        self._cond = threading.Condition()
        self._queue: list[_Call] = []
        self._busy = False

    def submit(self, run: Callable[[list[P]], list[R]], payload: P, *, key: Hashable = None, size: int = 1) -> R:
        """`run([payload, ...])[i]` for this payload, computed together with concurrent payloads of the same group.

        `run` maps a list of payloads to one result per payload, in order. Calls merge only when they pass the same
        `run` (a module-level function) and equal `key`s (the options that must match).
        `size` is how many clips the payload holds, counted against `max_size`.
        """
        call = _Call(run, key, payload, size)
        if not self.enabled:
            self._execute([call])
        else:
            with self._cond:
                self._queue.append(call)
                self._cond.notify_all()
                while not call.done and self._busy:
                    self._cond.wait()
                lead = not call.done
                if lead:
                    self._busy = True
            if lead:
                self._lead(call)
        if call.error is not None:
            raise call.error
        return call.result  # type: ignore[return-value]

    def _lead(self, own: _Call) -> None:
        """Serve the queue, oldest call first, until this caller's own call is done; then hand over."""
        batch: list[_Call] = []
        try:
            while not own.done:
                batch = self._gather()
                self._execute(batch)
                with self._cond:
                    self._cond.notify_all()
        finally:
            with self._cond:
                for call in batch:
                    if not call.done:  # only after an interrupt (KeyboardInterrupt, SystemExit) in the run
                        call.error, call.done = RuntimeError("the batched model call was interrupted"), True
                if own in self._queue:  # interrupted while gathering
                    self._queue.remove(own)
                self._busy = False
                self._cond.notify_all()

    def _gather(self) -> list[_Call]:
        """Wait for company (up to `wait_seconds`), then take the oldest call and its group's calls up to `max_size`."""
        deadline = time.monotonic() + self.wait_seconds
        with self._cond:
            while True:
                head = self._queue[0]
                group = [call for call in self._queue if call.same_group(head)]
                remaining = deadline - time.monotonic()
                if sum(call.size for call in group) >= self.max_size or remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch, total = [], 0
            for call in group:
                if batch and total + call.size > self.max_size:
                    continue
                batch.append(call)
                total += call.size
            self._queue = [call for call in self._queue if call not in batch]
        return batch

    def _execute(self, batch: list[_Call]) -> None:
        """Run the batch as one call; if that raises, run each call alone so only the failing ones get the error."""
        self.counter.count_call()
        try:
            results = self.runner(batch[0].run, [call.payload for call in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batched run returned {len(results)} results for {len(batch)} requests")
        except Exception as exc:
            if len(batch) > 1:
                log.warning("a batch of %d requests failed (%s); running each alone", len(batch), exc)
                for call in batch:
                    self._execute([call])
                return
            batch[0].error = exc
            results = [None]
        if len(batch) > 1:
            log.info("ran %d requests (%d clips) in one model call", len(batch), sum(c.size for c in batch))
        for call, result in zip(batch, results):
            if call.error is None:
                call.result = result
            self.counter.count_request(call.size)
        with self._cond:
            for call in batch:
                call.done = True


def _run_here(run: Callable[[list[P]], list[R]], payloads: list[P]) -> list[R]:
    return run(payloads)
