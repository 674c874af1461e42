"""`tms train`: SGD on the TMS for many runs at once (SPEC 4) at a scale preset, saved at OUT
and resumed from there (tms.dynamics.train.train_sgd; run blocks as Dask tasks with
scheduler= / workers=, tms.dynamics.tasks.train_sgd).

    run(scale="full", out="results/sgd/train")            # tms train --scale full
    run(QUICK.replace(init="random"), out=...)              # tms train --init random
"""
from __future__ import annotations

from pathlib import Path

from tms.core import checks, io, work
from tms.core.cluster import check_cluster
from tms.dynamics import tasks
from tms.dynamics.train import TrainResult, TrainSettings, partial_path

QUICK = TrainSettings(runs=16, epochs=1500)  # minutes on 2 CPU cores
FULL = TrainSettings()  # the paper's protocol (SPEC 4): 32 runs x 4500 epochs = 225,000 steps
PRESETS = dict(quick=QUICK, full=FULL)


def run(settings: TrainSettings | None = None, *, scale: str = "quick", out: str | Path = "results/sgd/train",
        device="cpu", threads: int | None = None, save_every: float = 60.0, progress: bool = True,
        scheduler: str | None = None, workers: int | None = None, force: bool = False, **changes) -> TrainResult:
    """SGD runs of `settings` (default: the preset of `scale`, quick | full) with `changes`
    applied (field names of TrainSettings, the flags of `tms train`: runs=4, init="random",
    ...), saved at OUT (PATH.npz + PATH.json). A finished result with the same settings is
    loaded instead (another one at OUT is a ValueError), an unfinished one (OUT_partial,
    saved every `save_every` seconds and on Ctrl-C / SIGTERM) resumed. A result or partial run
    with other settings at OUT, or any other kind of record there, is a ValueError naming it
    (tms.core.io.claim_output); force=True discards a training result or partial run of other
    settings and trains afresh. threads: of the compiled SGD block (default: every core;
    torch uses one, its tensors are small; tms.core.checks.torch_threads); no number depends on it.
    scheduler / workers: run blocks as Dask tasks (the same numbers)."""
    checks.scale(scale, tuple(PRESETS))
    settings = (PRESETS[scale] if settings is None else settings).replace(**changes)
    check_cluster(scheduler, workers)
    threads = checks.threads(threads, "threads")
    checks.positive_float(save_every, "save_every", allow_zero=True)
    dev = checks.device(device, "device")
    out = checks.output_stem(out, "out")
    _claim(out, settings, force)
    work.announce(work.train(runs=settings.runs, epochs=settings.epochs, n=settings.n, batch_size=settings.batch_size),
                  progress=progress)
    with io.recording_kind("train"), checks.torch_threads(threads, torch_cap=1):  # provenance: the threads it ran with
        res = tasks.train_sgd(settings, path=out, device=dev, threads=threads, save_every=save_every,
                              progress=progress, scheduler=scheduler, workers=workers)
    _tidy(out)
    return res


def _claim(out: Path, settings: TrainSettings, force: bool) -> None:
    """OUT and its partial run hold nothing but this training (tms.core.io.claim_output); with
    force, a training result or partial run of other settings is removed first."""
    targets = ((out, "settings", "out"), (partial_path(out), ("train", "settings"), "out (its unfinished run)"))
    for path, key, name in targets:
        io.claim_output(path, "train", settings, key=key, force=force, name=name)
    for path, key, _ in targets:  # only overridable problems are left (claim_output passed): force
        if io.output_problem(path, "train", settings, key=key) is not None:
            io.remove_result(path)


def _tidy(out: Path) -> None:
    """A finished result makes an unfinished one (left by a kill after the final save) stale."""
    if io.result_exists(out):
        partial = partial_path(out)
        for f in (out.with_suffix(".npz"), out.with_suffix(".json"),
                  partial.with_suffix(".npz"), partial.with_suffix(".json")):
            io.remove_temp_files(f)
        for f in (partial.with_suffix(".npz"), partial.with_suffix(".json")):
            f.unlink(missing_ok=True)
