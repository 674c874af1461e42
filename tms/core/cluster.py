"""Independent tasks in-process or on a Dask cluster (docs/cluster.md).

A task is one module-level function call that writes its own result atomically (tms.core.io)
to a shared output directory and returns something small; the client only schedules and
collects. Where the tasks run:
  - neither `scheduler` nor `workers` (the default): in this process, one after another;
    the sweep front ends below then call the in-process function unchanged;
  - `workers=N`: a dask.distributed LocalCluster of N single-threaded worker processes,
    started and closed here;
  - `scheduler="tcp://host:port"`: a running Dask scheduler (`dask scheduler` +
    `dask worker`, or dask-jobqueue's SLURMCluster.scheduler_address; docs/cluster.md).
One progress bar counts tasks. A failed task is reported at once with its settings and the
others go on; at the end TasksFailed (a ValueError: the CLI prints it as one line) names
every failure. A worker killed mid-task loses only that task (Dask reruns it elsewhere, or
it fails); rerunning the command skips every result already on disk.

Same seed, same numbers: every front end splits work along a dim whose items draw counter-
based keys from their own index (posterior: (seed, n, data set); SGD: (seed, run); LLC:
(seed, checkpoint, run)), so a block on any worker equals the same items of a full run.

Here: run_tasks (any list of Task, e.g. independent stages of tms reproduce), session (one
cluster for many sweeps), and the result-block helpers. The front ends that split a sweep
into tasks live with their science: tms.bayes.tasks.phase_sweep (posterior n-grid),
tms.dynamics.tasks.train_sgd (SGD run blocks) and .trajectory_llc (LLC checkpoint blocks).
dask is an optional extra (`pip install tms[cluster]`), imported only when a cluster is used.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import re
import uuid
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from tms.core import progress as progress_bar
from tms.core import checks

CONNECT_TIMEOUT = 10.0  # seconds to reach a scheduler before a ValueError
_ADDRESS = re.compile(r"^([a-z][a-z0-9+]*://)?[^\s/:]+(:\d+)?$")


@dataclasses.dataclass(frozen=True)
class Task:
    """fn(**kwargs) on a worker. fn must be importable there (a module-level tms function);
    name and settings identify the task in the bar and in failure reports."""

    fn: Callable[..., Any]
    kwargs: dict = dataclasses.field(default_factory=dict)
    name: str = "task"
    settings: dict = dataclasses.field(default_factory=dict)


class TasksFailed(ValueError):
    """Some tasks failed. failures: [(task, 'ErrorType: message')]; results: per task, None
    where it failed. Finished tasks' results are on disk; a rerun redoes only the others."""

    def __init__(self, failures: list[tuple[Task, str]], results: list, total: int):
        self.failures, self.results = failures, results
        groups: dict[str, list[Task]] = {}
        for task, err in failures:
            groups.setdefault(err, []).append(task)
        parts = [f"{', '.join(_describe(t) for t in tasks)}: {err}" for err, tasks in groups.items()]
        super().__init__(f"{len(failures)} of {total} tasks failed (finished results are saved; rerun to redo "
                         f"only the failed ones): " + "; ".join(parts))


def _describe(task: Task) -> str:
    settings = ", ".join(f"{k}={v}" for k, v in task.settings.items())
    return f"{task.name} [{settings}]" if settings else task.name


# ---- where tasks run ---------------------------------------------------------------------


def check_cluster(scheduler: str | None, workers: int | None, names=("scheduler", "workers")) -> None:
    """ValueError unless at most one of them is set, workers an int >= 1, scheduler an address."""
    if scheduler is not None and workers is not None:
        raise ValueError(f"give either {names[0]} (a Dask scheduler address) or {names[1]} (local worker "
                         "processes), not both")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer))
                                or workers < 1):
        raise ValueError(f"{names[1]} must be an integer >= 1 (local Dask worker processes), got {workers!r}")
    if scheduler is not None and (not isinstance(scheduler, str) or not _ADDRESS.match(scheduler.strip())):
        raise ValueError(f"{names[0]} must be a Dask scheduler address such as tcp://host:8786, got {scheduler!r}")


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ValueError("a Dask cluster needs the optional extra: pip install 'tms[cluster]'") from None
    return distributed


@contextlib.contextmanager
def client(scheduler: str | None = None, workers: int | None = None, timeout: float = CONNECT_TIMEOUT):
    """A dask.distributed Client on `scheduler` or on a LocalCluster of `workers` processes
    (closed on exit), or None when neither is given (run in-process)."""
    check_cluster(scheduler, workers)
    checks.positive_float(timeout, "timeout")
    if scheduler is None and workers is None:
        yield None
        return
    dd = _distributed()
    with contextlib.ExitStack() as stack:
        if workers is not None:
            with warnings.catch_warnings():  # its HTTP (metrics) port is taken: it picks a free one
                warnings.filterwarnings("ignore", message="Port .* is already in use")
                local = dd.LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                                        dashboard_address=None, silence_logs=logging.ERROR)
            stack.enter_context(local)
            address = local.scheduler_address
        else:
            address = scheduler.strip()
        try:
            cl = dd.Client(address, timeout=f"{timeout}s", set_as_default=False)
        except (OSError, TimeoutError) as err:
            raise ValueError(f"could not reach the Dask scheduler at {address} within {timeout:g} s ({err}); "
                             "is `dask scheduler` running there?") from None
        stack.enter_context(cl)
        yield cl


@contextlib.contextmanager
def session(scheduler: str | None = None, workers: int | None = None, timeout: float = CONNECT_TIMEOUT):
    """One cluster for many sweeps (e.g. every stage of tms reproduce): yields the
    scheduler=/workers= to pass on: with workers=N a LocalCluster started here for the whole
    block (its address as scheduler), a given scheduler checked reachable, or both None."""
    if scheduler is None and workers is None:
        check_cluster(scheduler, workers)
        yield dict(scheduler=None, workers=None)
        return
    with client(scheduler, workers, timeout) as cl:
        yield dict(scheduler=cl.scheduler.address, workers=None)


def run_tasks(tasks: Sequence[Task], *, scheduler: str | None = None, workers: int | None = None,
              timeout: float = CONNECT_TIMEOUT, progress: bool = True, desc: str = "tasks") -> list:
    """Run independent tasks; their return values in task order. Raises TasksFailed after
    every task has finished or failed, when some failed (each also printed when it fails)."""
    tasks = list(tasks)
    check_cluster(scheduler, workers)
    if not tasks:
        return []
    with client(scheduler, workers, timeout) as cl:
        bar = progress_bar.bar(total=len(tasks), desc=desc, unit="task", disable=not progress)
        results: list = [None] * len(tasks)
        failures: list[tuple[Task, str]] = []
        try:
            for i, outcome, err in (_in_process(tasks) if cl is None else _on_cluster(cl, tasks)):
                bar.update(1)
                if err is None:
                    results[i] = outcome
                else:
                    failures.append((tasks[i], err))
                    progress_bar.write(f"task failed: {_describe(tasks[i])}: {err}")
        finally:
            bar.close()
    if failures:
        raise TasksFailed(failures, results, len(tasks))
    return results


def _error(err: BaseException) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())}"


def _in_process(tasks):
    for i, task in enumerate(tasks):
        try:
            yield i, task.fn(**task.kwargs), None
        except Exception as err:  # noqa: BLE001 - reported with the task's settings; the others go on
            yield i, None, _error(err)


def _on_cluster(cl, tasks):
    dd = _distributed()
    run = uuid.uuid4().hex[:8]  # unique keys: a shared scheduler may hold an earlier run's tasks
    futures = {cl.submit(t.fn, **t.kwargs, key=f"{slug(t.name)}-{run}-{i}", pure=False): i
               for i, t in enumerate(tasks)}
    for fut in dd.as_completed(futures, loop=cl.loop):  # set_as_default=False: name its loop
        try:
            out = fut.result()
        except Exception as err:  # noqa: BLE001 - a task's own error, KilledWorker, cancellation
            yield futures[fut], None, _error(err)
        else:
            yield futures[fut], out, None
        fut.release()


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=,-]+", "_", name)[:80]


# ---- result blocks ----------------------------------------------------------------------


def block_paths(path: str | Path, n_blocks: int) -> list[Path]:
    """Where the run blocks of the result `path` go: PATH_blocks/runs_JJJJ_of_KKKK."""
    path = Path(path)
    folder = path.with_name(path.name + "_blocks")
    return [folder / f"runs_{j:04d}_of_{n_blocks:04d}" for j in range(n_blocks)]


def remove_blocks(stems: list[Path]) -> None:
    """Delete merged block results (.npz, .json) and their folder if that is left empty."""
    for p in stems:
        for suffix in (".npz", ".json"):
            p.with_suffix(suffix).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        stems[0].parent.rmdir()


def digest(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
