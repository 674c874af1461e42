"""Jobs in a worker process while the computing goes on (`tms reproduce`): its figures, and
the stages that need nothing still to run in the main process (tms.experiments.stages).

A figure is drawn from saved results only, and a stage writes its results to disk, so neither
needs anything of this process: a job is a picklable callable (a module-level function with its
arguments, functools.partial), a figure job returning the paths it wrote. Jobs run one after
another in one spawned process (a fresh interpreter: no threads inherited from torch or numba,
pyplot on Agg); what follows a job, e.g. recording its figures' checksums, runs here, in the
submitting thread, when the job is seen finished (at the next submit, `collect` or `wait`).
With background=False every job runs at once, in this process. A job's error is raised here, at
the latest by `wait`.
"""
from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.pool import AsyncResult
from pathlib import Path
from typing import Callable

import torch


def _run(calls) -> list[Path]:
    out = []
    for fn, args in calls:
        got = fn(*args)
        out.extend(got if isinstance(got, list) else [got])
    return out


def calls(*specs) -> Callable[[], list[Path]]:
    """A picklable job of (function, arg, ...) tuples: calls each (module-level functions with
    picklable arguments), returns the paths they return (a path or a list each)."""
    return functools.partial(_run, [(fn, tuple(args)) for fn, *args in specs])


def _watch_parent(parent: int) -> None:
    """End this worker when the process that started it is gone (killed: nothing else would)."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


_SHARED = None  # in a worker: the object its queue was made with (JobQueue(shared=...))


def shared():
    """In a worker: the `shared` object of its JobQueue (a synchronised value, say), else None."""
    return _SHARED


def _worker_init(parent: int, quiet: bool, value=None) -> None:
    """One torch thread (a figure's tensors are small; the cores are the computing's); output
    to the null device, so a reader of the command's output is not kept waiting by the worker
    (a job's error comes back with its result), its warnings too where quiet; Ctrl-C left to
    the parent; a watchdog on the parent."""
    global _SHARED
    _SHARED = value
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it ends the pool (no traceback here)
    torch.set_num_threads(1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    if quiet:
        os.dup2(null, 2)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


class JobQueue:
    """Jobs in one background process, in order (module docstring); use as a context manager.
    quiet: the worker's stderr (warnings) to the null device too. shared: an object the worker
    inherits (`shared()` there; e.g. a multiprocessing Value of the spawn context, which cannot
    travel with a job)."""

    def __init__(self, background: bool = True, quiet: bool = True, shared=None):
        self.background, self.quiet, self.shared = background, quiet, shared
        self._pool = None
        self._pending: list[tuple[AsyncResult, Callable[[object], None]]] = []

    def submit(self, job: Callable[[], object], then: Callable[[object], None],
               ready: Callable[[object], None] | None = None) -> None:
        """Run job() (a figure job returns its paths); then(its result) runs here once it has
        finished; ready(its result or error), if given, in the pool's result thread as soon as it has."""
        if not self.background:
            then(job())
            return
        if self._pool is None:
            self._pool = multiprocessing.get_context("spawn").Pool(1, _worker_init,
                                                                   (os.getpid(), self.quiet, self.shared))
        self._pending.append((self._pool.apply_async(job, callback=ready, error_callback=ready), then))
        self.collect()

    def collect(self) -> None:
        """Run `then` of the jobs finished so far, in order (never waits)."""
        self._collect(block=False)

    def _collect(self, block: bool) -> None:
        """Run `then` of every finished job (of every job, waiting, when block), in order."""
        while self._pending and (block or self._pending[0][0].ready()):
            result, then = self._pending.pop(0)
            then(result.get())

    def wait(self) -> None:
        """Every submitted job done and its `then` run."""
        self._collect(block=True)

    def __enter__(self) -> JobQueue:
        return self

    def __exit__(self, kind, err, tb) -> None:
        try:
            if kind is None:
                self.wait()
        finally:
            if self._pool is not None:
                if kind is None:
                    self._pool.close()
                else:  # after an error or an interrupt: the unfinished jobs are dropped at once
                    self._pool.terminate()
                self._pool.join()
                self._pool = None
