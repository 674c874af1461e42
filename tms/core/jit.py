"""numba kernels made in closures, named and identified by their constants, so that numba's
disk cache serves them in the next process and never mixes two of them up.

numba names a function's cache files by its qualified name, and keys each entry by a hash of
the closure variables, pickled. Two problems for kernels made per (r, c) or per dimension:
- a compiled function among the closure variables (a kernel calling another) pickles with
  its dispatcher's uuid, random per process, so the key never repeats and every process
  compiles again (seconds per kernel): `stable` gives it a uuid made of its name and key;
- closures of other constants under one name share one index file, and processes that
  compile different entries at once (Dask workers, test workers on a fresh checkout) can
  point an entry at another's machine code: `kernel` names each closure by its constants.
Kernels reached from a cached closure (module-level ones too, which pickle the same way) are
all made stable.
"""
from __future__ import annotations

import hashlib
import threading

# One parallel kernel call at a time in a process (numba's workqueue threading layer is not
# thread-safe; the stages of `tms reproduce` run in threads): held around every prange call.
PARALLEL = threading.Lock()


def stable(dispatcher, *key):
    """The dispatcher, with the uuid 'tms:<module>.<qualname>:<key...>' (set once, at creation)."""
    f = dispatcher.py_func
    dispatcher._set_uuid(":".join(["tms", f"{f.__module__}.{f.__qualname__}", *map(str, key)]))
    return dispatcher


def kernel(fn, *key, **options):
    """njit(cache=True, **options) of the closure fn under a name of its own for key (its
    constants: the qualified name gains a short hash of them), made stable."""
    from numba import njit
    fn.__qualname__ = f"{fn.__qualname__}_{hashlib.sha1(repr(key).encode()).hexdigest()[:12]}"
    return stable(njit(cache=True, **options)(fn), *key)
