"""Figures drawn in a worker process while the computing goes on (`tms reproduce`).

A figure is drawn from saved results only, so it needs nothing of the process that made them:
a job is a picklable callable (a module-level function with its arguments, functools.partial)
returning the paths it wrote. Jobs run one after another in one spawned process (a fresh
interpreter: no threads inherited from torch or numba, pyplot on Agg); what follows a job,
e.g. recording its figures' checksums, runs here, in the submitting thread, when the job is
seen finished (at the next submit, or at `wait`). With background=False every job runs at
once, in this process. A job's error is raised here, at the latest by `wait`.
"""
from __future__ import annotations

import functools
import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Callable


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


def _worker_init() -> None:
    """A figure's tensors are small: one torch thread, so the worker does not take the cores
    the computing uses."""
    import torch

    torch.set_num_threads(1)


class FigureQueue:
    """Figure jobs in one background process (module docstring); use as a context manager."""

    def __init__(self, background: bool = True):
        self.background = background
        self._pool: ProcessPoolExecutor | None = None
        self._pending: list[tuple[Future, Callable[[list[Path]], None]]] = []

    def submit(self, job: Callable[[], list[Path]], then: Callable[[list[Path]], None]) -> None:
        """Draw job() (returns its figure paths); then(paths) runs here once it has finished."""
        if not self.background:
            then(job())
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_worker_init)
        self._pending.append((self._pool.submit(job), then))
        self._collect(block=False)

    def _collect(self, block: bool) -> None:
        """Run `then` of every finished job (of every job, waiting, when block), in order."""
        while self._pending and (block or self._pending[0][0].done()):
            future, then = self._pending.pop(0)
            then(future.result())

    def wait(self) -> None:
        """Every submitted figure drawn and its `then` run."""
        self._collect(block=True)

    def __enter__(self) -> FigureQueue:
        return self

    def __exit__(self, kind, err, tb) -> None:
        try:
            if kind is None:
                self.wait()
        finally:
            if self._pool is not None:  # after an error: the unfinished figures are dropped
                self._pool.shutdown(wait=kind is None, cancel_futures=kind is not None)
                self._pool = None
