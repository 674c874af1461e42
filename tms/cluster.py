"""Independent tasks in-process or on a Dask cluster (DESIGN: sweeps as tasks).

A task is one module-level function call that writes its own result atomically (tms.io)
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

Front ends (same parameters as the in-process function, plus scheduler, workers, timeout
and the task size):
  phase_sweep     posterior n-grid, a task = phase_sweep over a chunk of n into out_dir
  train_sgd       SGD runs, a task = a block of run indices; blocks merged into one result
  trajectory_llc  LLC at SGD checkpoints, a task = a block of checkpoints; blocks merged
  run_tasks       any list of Task (e.g. independent stages of tms reproduce)
  session         one cluster for many sweeps (tms reproduce: one LocalCluster for all stages)
dask is an optional extra (`pip install tms[cluster]`), imported only when a cluster is used.
In the import map this module sits above llc, posterior and train (it calls them) and below
transitions, reproduce and the commands (which pass scheduler= and workers= through).
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
from tqdm.auto import tqdm

from tms import checks, io, llc, posterior, train

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
        bar = tqdm(total=len(tasks), desc=desc, unit="task", disable=not progress)
        results: list = [None] * len(tasks)
        failures: list[tuple[Task, str]] = []
        try:
            for i, outcome, err in (_in_process(tasks) if cl is None else _on_cluster(cl, tasks)):
                bar.update(1)
                if err is None:
                    results[i] = outcome
                else:
                    failures.append((tasks[i], err))
                    tqdm.write(f"task failed: {_describe(tasks[i])}: {err}")
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
    futures = {cl.submit(t.fn, **t.kwargs, key=f"{_slug(t.name)}-{run}-{i}", pure=False): i
               for i, t in enumerate(tasks)}
    for fut in dd.as_completed(futures, loop=cl.loop):  # set_as_default=False: name its loop
        try:
            out = fut.result()
        except Exception as err:  # noqa: BLE001 - a task's own error, KilledWorker, cancellation
            yield futures[fut], None, _error(err)
        else:
            yield futures[fut], out, None
        fut.release()


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=,-]+", "_", name)[:80]


# ---- posterior n-grid --------------------------------------------------------------------


def _posterior_points(c: int, ns: list[int], out_dir: str, kwargs: dict) -> list[int]:
    """Task: phase_sweep over `ns` into out_dir (points on disk are skipped); the n done."""
    posterior.phase_sweep(c, ns, out_dir=out_dir, predict=False, progress=False, **kwargs)
    return list(ns)


def phase_sweep(c: int, ns, *, out_dir: str | Path | None = None, scheduler: str | None = None,
                workers: int | None = None, points_per_task: int | None = None, timeout: float = CONNECT_TIMEOUT,
                progress: bool = False, predict: bool = True, llcs: dict | None = None, **kwargs) -> dict:
    """tms.posterior.phase_sweep, its n-grid split into tasks of `points_per_task` n values
    (default: batch_points, else 1).

    Without scheduler/workers: exactly posterior.phase_sweep. On a cluster out_dir is
    required (a folder every worker can write); the points not on disk are sampled as
    tasks, each one batched call over its chunk saving its points there, and the in-process
    phase_sweep over all ns then loads them and aggregates. The numbers equal an in-process
    run's whatever the batching (points are layout-invariant: keys per (seed, n, data set),
    tms.posterior); only the batch layout each point records beside its settings differs.
    """
    check_cluster(scheduler, workers)
    if scheduler is None and workers is None:
        return posterior.phase_sweep(c, ns, out_dir=out_dir, progress=progress, predict=predict, llcs=llcs,
                                     **kwargs)
    if out_dir is None:
        raise ValueError("a cluster sweep needs out_dir: a results folder that every worker can write")
    points_per_task = points_per_task or kwargs.get("batch_points") or 1
    checks.positive_int(points_per_task, "points_per_task")
    ns = [int(n) for n in ns]
    todo = [n for n in ns if not posterior.point_done(out_dir, c, n)]
    chunks = [todo[i:i + points_per_task] for i in range(0, len(todo), points_per_task)]
    shown = {k: v for k, v in kwargs.items() if k in ("beta_lik", "seed", "r")}
    tasks = [Task(_posterior_points, dict(c=c, ns=ch, out_dir=str(out_dir), kwargs=kwargs),
                  name=f"posterior c={c} n={','.join(map(str, ch))}", settings=dict(c=c, n=ch, **shown))
             for ch in chunks]
    run_tasks(tasks, scheduler=scheduler, workers=workers, timeout=timeout, progress=progress,
              desc=f"posterior c={c} tasks")
    return posterior.phase_sweep(c, ns, out_dir=out_dir, progress=False, predict=predict, llcs=llcs, **kwargs)


# ---- SGD run blocks ----------------------------------------------------------------------


def _train_block(runs: list[int], path: str, kwargs: dict) -> str:
    """Task: train_sgd over one block of run indices, saved (and resumed) at `path`."""
    train.train_sgd(runs, path=path, progress=False, **kwargs)
    return path


def _run_ids(runs) -> list[int]:
    if isinstance(runs, (int, np.integer)) and not isinstance(runs, bool):
        return list(range(checks.positive_int(int(runs), "runs")))
    ids = [int(i) for i in runs]
    if not ids or min(ids) < 0 or len(set(ids)) != len(ids):
        raise ValueError(f"runs must be a count >= 1 or distinct run indices >= 0, got {runs!r}")
    return ids


def block_paths(path: str | Path, n_blocks: int) -> list[Path]:
    """Where the run blocks of the result `path` go: PATH_blocks/runs_JJJJ_of_KKKK."""
    path = Path(path)
    folder = path.with_name(path.name + "_blocks")
    return [folder / f"runs_{j:04d}_of_{n_blocks:04d}" for j in range(n_blocks)]


def _remove(stems: list[Path]) -> None:
    """Delete merged block results (.npz, .json) and their folder if that is left empty."""
    for p in stems:
        for suffix in (".npz", ".json"):
            p.with_suffix(suffix).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        stems[0].parent.rmdir()


def merge_train(blocks: Sequence[train.TrainResult]) -> train.TrainResult:
    """One TrainResult from run blocks of one experiment: runs in block order, (T, R, ...)."""
    first = blocks[0]
    settings = lambda rec: {k: v for k, v in rec.items() if k not in ("runs", "provenance")}  # noqa: E731
    for blk in blocks[1:]:
        if settings(blk.record) != settings(first.record) or not torch.equal(blk.steps, first.steps):
            raise ValueError("run blocks with different settings or checkpoints cannot be merged")
    cat = lambda name: torch.cat([getattr(blk, name) for blk in blocks], 1)  # noqa: E731  run dim of (T, R, ...)
    if first.record.get("shared_data"):
        if not all(torch.equal(blk.X, first.X) for blk in blocks):
            raise ValueError("run blocks with a shared training set hold different training sets")
        X = first.X
    else:
        X = torch.cat([blk.X for blk in blocks], 0)  # (R, n, c)
    runs = [i for blk in blocks for i in blk.record["runs"]]
    return train.TrainResult(first.steps, cat("W"), cat("b"), cat("train_loss"), cat("pop_loss"), X,
                             dict(settings(first.record), runs=runs))


def train_sgd(runs=32, *, path: str | Path | None = None, scheduler: str | None = None, workers: int | None = None,
              runs_per_task: int = 4, timeout: float = CONNECT_TIMEOUT, progress: bool = True,
              **kwargs) -> train.TrainResult:
    """tms.train.train_sgd, its runs split into tasks of `runs_per_task` runs.

    Without scheduler/workers: exactly train.train_sgd. On a cluster `path` is required:
    each block trains into block_paths(path, K) (resumable, skipped when finished), the
    blocks are merged into the one result at `path` (what an in-process run saves: a run's
    numbers depend only on (seed, run)) and the block files removed.
    """
    check_cluster(scheduler, workers)
    if scheduler is None and workers is None:
        return train.train_sgd(runs, path=path, progress=progress, **kwargs)
    if path is None:
        raise ValueError("a cluster training run needs path: a result path that every worker can write")
    ids = _run_ids(runs)
    checks.positive_int(runs_per_task, "runs_per_task")
    if not io.result_exists(path):
        blocks = [ids[i:i + runs_per_task] for i in range(0, len(ids), runs_per_task)]
        paths = block_paths(path, len(blocks))
        shown = {k: v for k, v in kwargs.items() if k in ("seed", "init", "epochs")}
        tasks = [Task(_train_block, dict(runs=blk, path=str(p), kwargs=kwargs), name=f"train runs {blk[0]}..{blk[-1]}",
                      settings=dict(runs=blk, **shown)) for blk, p in zip(blocks, paths) if not io.result_exists(p)]
        run_tasks(tasks, scheduler=scheduler, workers=workers, timeout=timeout, progress=progress,
                  desc="SGD run blocks")
        train.save_train(path, merge_train([train.load_train(p) for p in paths]))
        _remove(paths)
    return train.train_sgd(runs, path=path, progress=False, **kwargs)  # loads it; checks it is this run's


# ---- LLC checkpoint blocks ---------------------------------------------------------------


def _digest(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _llc_block(W, b, X, keys, path: str, record: dict, kwargs: dict) -> str:
    """Task: estimate_llc of checkpoints W (T', R, r, c) with their per-centre keys (T', R),
    saved at `path` unless a result with the same record is there."""
    if io.result_exists(path) and io.load_json(Path(path).with_suffix(".json")).get("block") == io._jsonable(record):
        return path
    res = llc.estimate_llc(W, b, X, keys=keys, loss="empirical", **kwargs)
    io.save_result(path, res.arrays(), dict(block=record, settings=res.settings))
    return path


def _load_llc(path: Path) -> llc.LLCResult:
    arrays, rec = io.load_result(path)
    return llc.LLCResult(**{k: torch.from_numpy(v) for k, v in arrays.items()}, settings=rec["settings"])


def trajectory_llc(W: torch.Tensor, b: torch.Tensor, X: torch.Tensor, *, nbeta: float | None = None,
                   eps: float = 1e-3, gamma: float = 1.0, n_chains: int = 4, n_burnin: int = 0, n_draws: int = 500,
                   seed: int = 0, out_dir: str | Path | None = None, scheduler: str | None = None,
                   workers: int | None = None, checkpoints_per_task: int = 8, timeout: float = CONNECT_TIMEOUT,
                   progress: bool = True) -> llc.LLCResult:
    """LLC at checkpoints W (T, R, r, c), b (T, R, c) of runs with training sets X ((n, c)
    shared or (R, n, c)): localized full-batch SGLD (SPEC 4 defaults; nbeta default n / log n;
    tms.transitions.trajectory_llc is this function), the checkpoints split into tasks.

    Without scheduler/workers: one in-process estimate_llc over (T, R) with `seed`. On a
    cluster out_dir is required: each block of `checkpoints_per_task` checkpoints x all runs
    is estimated with the per-centre keys of the full (T, R) grid (tms.llc.centre_keys), so
    the merged result equals the in-process one; blocks are saved in out_dir (reused when
    data and settings match, e.g. after a failed task) and removed once merged.
    """
    check_cluster(scheduler, workers)
    checks.params(W, b)
    checks.seed(seed, "seed")  # before any key is hashed
    if W.dim() != 4:
        raise ValueError(f"W must be (T, R, r, c), got shape {tuple(W.shape)}")
    checks.tensor(X, "X", min_dim=2)
    kw = dict(nbeta=llc.default_nbeta(X.shape[-2]) if nbeta is None else nbeta, eps=eps, gamma=gamma,
              n_chains=n_chains, n_burnin=n_burnin, n_draws=n_draws)
    if scheduler is None and workers is None:
        return llc.estimate_llc(W, b, X, loss="empirical", seed=seed, progress=progress, **kw)
    if out_dir is None:
        raise ValueError("a cluster LLC run needs out_dir: a results folder that every worker can write")
    checks.positive_int(checkpoints_per_task, "checkpoints_per_task")
    T, R = W.shape[:2]
    keys, data = llc.centre_keys(seed, (T, R)), _digest(W, b, X)
    tasks, paths = [], []
    for t0 in range(0, T, checkpoints_per_task):
        t1 = min(T, t0 + checkpoints_per_task)
        paths.append(Path(out_dir) / f"llc_checkpoints_{t0:05d}-{t1 - 1:05d}_of_{T:05d}")
        record = dict(rows=[t0, t1], shape=[T, R], seed=seed, data_sha256=data, **kw)
        tasks.append(Task(_llc_block, dict(W=W[t0:t1].cpu(), b=b[t0:t1].cpu(), X=X.cpu(), keys=keys[t0:t1],
                                           path=str(paths[-1]), record=record, kwargs=kw),
                          name=f"LLC checkpoints {t0}..{t1 - 1}", settings=dict(checkpoints=[t0, t1 - 1], seed=seed)))
    run_tasks(tasks, scheduler=scheduler, workers=workers, timeout=timeout, progress=progress,
              desc="LLC checkpoint blocks")
    merged = _merge_llc([_load_llc(p) for p in paths], seed, W.device)
    _remove(paths)  # merged: the caller saves the one result
    return merged


def _merge_llc(blocks: list[llc.LLCResult], seed: int, device) -> llc.LLCResult:
    """Blocks along the checkpoint dim -> one LLCResult (the seed the in-process run records)."""
    tensors = {f.name: torch.cat([getattr(blk, f.name) for blk in blocks], 0).to(device)
               for f in dataclasses.fields(llc.LLCResult) if f.name != "settings"}
    return llc.LLCResult(**tensors, settings=dict(blocks[0].settings, seed=seed))


# ---- the command line --------------------------------------------------------------------


def add_arguments(parser) -> None:
    """--scheduler ADDRESS | --workers N (mutually exclusive) for a command with tasks."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--scheduler", metavar="ADDRESS", default=None,
                       help="run the independent tasks on this running Dask scheduler (tcp://host:8786; "
                            "needs pip install 'tms[cluster]'; docs/cluster.md)")
    group.add_argument("--workers", metavar="N", type=int, default=None,
                       help="run the independent tasks on a local Dask cluster of N worker processes")


def options(args) -> dict:
    """scheduler= and workers= from the parsed flags, checked (ValueError naming the flag)."""
    scheduler, workers = getattr(args, "scheduler", None), getattr(args, "workers", None)
    check_cluster(scheduler, workers, names=("--scheduler", "--workers"))
    return dict(scheduler=scheduler, workers=workers)
