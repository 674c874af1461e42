"""SGD runs and the LLC along trajectories as independent Dask tasks (tms.core.cluster runs
them): a task is a block of run indices (SGD) or of checkpoints (LLC); blocks are merged into
the one result an in-process run gives, since a run's numbers depend only on (seed, run) and a
checkpoint's LLC chains on its per-centre key.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import torch

from tms.core import checks, io
from tms.core.cluster import CONNECT_TIMEOUT, Task, block_paths, check_cluster, digest, remove_blocks, run_tasks
from tms.dynamics import train
from tms.llc import estimator as llc


def _train_block(settings: train.TrainSettings, run_ids: list[int], path: str, options: dict) -> str:
    """Task: train_sgd over one block of the experiment's runs, saved (and resumed) at `path`."""
    train.train_sgd(settings, run_ids=run_ids, path=path, progress=False, **options)
    return path


def merge_train(blocks: Sequence[train.TrainResult]) -> train.TrainResult:
    """One TrainResult from run blocks of one experiment: runs in block order, (T, R, ...)."""
    first = blocks[0]
    same = lambda rec: {k: v for k, v in rec.items() if k not in ("runs", io.PROVENANCE_KEY)}  # noqa: E731
    for blk in blocks[1:]:
        if same(blk.record) != same(first.record) or not torch.equal(blk.steps, first.steps):
            raise ValueError("run blocks with different settings or checkpoints cannot be merged")
    cat = lambda name: torch.cat([getattr(blk, name) for blk in blocks], 1)  # noqa: E731  run dim of (T, R, ...)
    if first.settings.shared_data:
        if not all(torch.equal(blk.X, first.X) for blk in blocks):
            raise ValueError("run blocks with a shared training set hold different training sets")
        X = first.X
    else:
        X = torch.cat([blk.X for blk in blocks], 0)  # (R, n, c)
    runs = [i for blk in blocks for i in blk.run_ids]
    return train.TrainResult(first.steps, cat("W"), cat("b"), cat("train_loss"), cat("pop_loss"), X,
                             dict(same(first.record), runs=runs))


def train_sgd(settings: train.TrainSettings | None = None, *, run_ids: Sequence[int] | None = None,
              path: str | Path | None = None, device=None, save_every: float = 60.0, threads: int | None = None,
              progress: bool = True, scheduler: str | None = None, workers: int | None = None,
              runs_per_task: int = 4, timeout: float = CONNECT_TIMEOUT, **changes) -> train.TrainResult:
    """tms.dynamics.train.train_sgd (the same arguments), its runs split into tasks of
    `runs_per_task` runs.

    Without scheduler/workers: exactly train.train_sgd. On a cluster `path` is required:
    each block trains into block_paths(path, K) (resumable, skipped when finished), the
    blocks are merged into the one result at `path` (what an in-process run saves: a run's
    numbers depend only on (seed, run)) and the block files removed.
    """
    check_cluster(scheduler, workers)
    settings = train.resolve_settings(settings, changes)
    options = dict(device=device, save_every=save_every, threads=threads)
    if scheduler is None and workers is None:
        return train.train_sgd(settings, run_ids=run_ids, path=path, progress=progress, **options)
    if path is None:
        raise ValueError("a cluster training run needs path: a result path that every worker can write")
    ids = train.run_indices(settings, run_ids)
    checks.positive_int(runs_per_task, "runs_per_task")
    if not io.result_exists(path):
        blocks = [ids[i:i + runs_per_task] for i in range(0, len(ids), runs_per_task)]
        paths = block_paths(path, len(blocks))
        shown = dict(seed=settings.seed, init=settings.init, epochs=settings.epochs)
        tasks = [Task(_train_block, dict(settings=settings, run_ids=blk, path=str(p), options=options),
                      name=f"train runs {blk[0]}..{blk[-1]}", settings=dict(runs=blk, **shown))
                 for blk, p in zip(blocks, paths) if not io.result_exists(p)]
        run_tasks(tasks, scheduler=scheduler, workers=workers, timeout=timeout, progress=progress,
                  desc="SGD run blocks")
        train.save_train(path, merge_train([train.load_train(p, "path") for p in paths]))
        remove_blocks(paths)
    # loads it and checks it is this run's
    return train.train_sgd(settings, run_ids=run_ids, path=path, progress=False, **options)


# ---- LLC checkpoint blocks ---------------------------------------------------------------


def _llc_block(W, b, X, keys, path: str, record: dict, kwargs: dict) -> str:
    """Task: estimate_llc of checkpoints W (T', R, r, c) with their per-centre keys (T', R),
    saved at `path` unless a result with the same record is there."""
    if io.reuse_problem(path, record, key="block") is None:
        return path
    res = llc.estimate_llc(W, b, X, keys=keys, loss="empirical", **kwargs)
    res.save(path, block=record)
    return path


def _load_llc(path: Path) -> llc.LLCResult:
    return llc.LLCResult.load(path)


def trajectory_llc(W: torch.Tensor, b: torch.Tensor, X: torch.Tensor, *, nbeta: float | None = None,
                   eps: float = 1e-3, gamma: float = 1.0, n_chains: int = 4, n_burnin: int = 0, n_draws: int = 500,
                   seed: int = 0, out_dir: str | Path | None = None, scheduler: str | None = None,
                   workers: int | None = None, checkpoints_per_task: int = 8, timeout: float = CONNECT_TIMEOUT,
                   progress: bool = True) -> llc.LLCResult:
    """LLC at checkpoints W (T, R, r, c), b (T, R, c) of runs with training sets X ((n, c)
    shared or (R, n, c)): localized full-batch SGLD (SPEC 4 defaults; nbeta default n / log n;
    the checkpoints split into tasks.

    Without scheduler/workers: one in-process estimate_llc over (T, R) with `seed`. On a
    cluster out_dir is required: each block of `checkpoints_per_task` checkpoints x all runs
    is estimated with the per-centre keys of the full (T, R) grid (tms.llc.estimator.centre_keys), so
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
    keys, data = llc.centre_keys(seed, (T, R)), digest(W, b, X)
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
    remove_blocks(paths)  # merged: the caller saves the one result
    return merged


def _merge_llc(blocks: list[llc.LLCResult], seed: int, device) -> llc.LLCResult:
    """Blocks along the checkpoint dim -> one LLCResult (the seed the in-process run records)."""
    tensors = {f.name: torch.cat([getattr(blk, f.name) for blk in blocks], 0).to(device)
               for f in dataclasses.fields(llc.LLCResult) if f.name != "settings"}
    return llc.LLCResult(**tensors, settings=dict(blocks[0].settings, seed=seed))
