"""The posterior n-grid as independent Dask tasks (tms.core.cluster runs them).

Same seed, same numbers: points are layout-invariant (keys per (seed, n, data set)), so a
chunk of n on any worker equals the same points of an in-process sweep.
"""
from __future__ import annotations

from pathlib import Path

from tms.core import checks
from tms.core.cluster import CONNECT_TIMEOUT, Task, check_cluster, run_tasks
from tms.bayes import posterior, posterior_point
from tms.bayes.settings import PosteriorSettings

def posterior_points(c: int, ns: list[int], out_dir: str, kwargs: dict) -> list[int]:
    """Task: phase_sweep over `ns` into out_dir (points on disk are skipped); the n done."""
    posterior.phase_sweep(c, ns, out_dir=out_dir, predict=False, progress=False, **kwargs)
    return list(ns)


def phase_sweep(c: int, ns, settings: PosteriorSettings | None = None, *, out_dir: str | Path | None = None,
                scheduler: str | None = None, workers: int | None = None, points_per_task: int | None = None,
                timeout: float = CONNECT_TIMEOUT, progress: bool = False, predict: bool = True,
                llcs: dict | None = None, **kwargs) -> posterior.PhaseSweep:
    """tms.bayes.posterior.phase_sweep (settings and kwargs are its), its n-grid split into
    tasks of `points_per_task` n values (default: batch_points, else 1).

    Without scheduler/workers: exactly posterior.phase_sweep. On a cluster out_dir is
    required (a folder every worker can write); the points not on disk are sampled as
    tasks, each one batched call over its chunk saving its points there, and the in-process
    phase_sweep over all ns then loads them and aggregates. The numbers equal an in-process
    run's whatever the batching (points are layout-invariant: keys per (seed, n, data set),
    tms.bayes.posterior); only the batch layout each point records beside its settings differs.
    """
    check_cluster(scheduler, workers)
    if scheduler is None and workers is None:
        return posterior.phase_sweep(c, ns, settings, out_dir=out_dir, progress=progress, predict=predict,
                                     llcs=llcs, **kwargs)
    if out_dir is None:
        raise ValueError("a cluster sweep needs out_dir: a results folder that every worker can write")
    points_per_task = points_per_task or kwargs.get("batch_points") or 1
    checks.positive_int(points_per_task, "points_per_task")
    ns = [int(n) for n in ns]
    todo = [n for n in ns if not posterior_point.point_done(out_dir, c, n)]
    chunks = [todo[i:i + points_per_task] for i in range(0, len(todo), points_per_task)]
    shown = {k: v for k, v in kwargs.items() if k in ("beta_lik", "seed", "r")}
    task_kwargs = dict(kwargs, settings=settings)
    tasks = [Task(posterior_points, dict(c=c, ns=ch, out_dir=str(out_dir), kwargs=task_kwargs),
                  name=f"posterior c={c} n={','.join(map(str, ch))}", settings=dict(c=c, n=ch, **shown))
             for ch in chunks]
    run_tasks(tasks, scheduler=scheduler, workers=workers, timeout=timeout, progress=progress,
              desc=f"posterior c={c} tasks")
    return posterior.phase_sweep(c, ns, settings, out_dir=out_dir, progress=False, predict=predict, llcs=llcs,
                                 **kwargs)


