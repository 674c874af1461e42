"""Stable identities for numba kernels made in closures, so numba's disk cache finds them.

numba caches a closure's machine code under a hash of its closure variables, pickled; a
compiled function among them (a kernel calling another) pickles with its dispatcher's uuid,
random per process, so the hash never repeats and every process compiles again (seconds per
kernel). `stable` gives a dispatcher a uuid made of its module, name and the key that makes
it unique (its constants), before anything pickles it; kernels reached from a cached closure
(module-level ones included, which pickle the same way) are all made stable.
"""
from __future__ import annotations


def stable(dispatcher, *key):
    """The dispatcher, with the uuid 'tms:<module>.<qualname>:<key...>' (set once, at creation)."""
    f = dispatcher.py_func
    dispatcher._set_uuid(":".join(["tms", f"{f.__module__}.{f.__qualname__}", *map(str, key)]))
    return dispatcher
