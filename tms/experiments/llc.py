"""What `tms llc` computes, as one Python function: LLC estimates (SPEC 5) at a zoo point or at
every checkpoint of a saved trajectory, with the record saved beside them.

    from tms.experiments import llc
    res = llc.run(point="5+", c=6)                 # exact population loss, PROTOCOL, nbeta = n / log n
    res = llc.run(point="5+", n_chains=4)          # PROTOCOL with 4 chains (settings=, **changes)
    print(res.result.summary(labels=res.labels)); res.save("results/p5")
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tms.core import checks, inference, io, work
from tms.theory import zoo
from tms.theory.data import sample_inputs
from tms.llc.estimator import PROTOCOL, LLCSettings, estimate_llc
from tms.llc.result import LLCResult


@dataclass
class LLCRun:
    """result: the LLCResult; labels: one name per centre; settings: the sampler settings it ran
    with; record: the source (zoo point or checkpoints file), n and nbeta used, and for a zoo
    point its loss, Hessian rank and theory."""

    result: LLCResult
    labels: list[str]
    settings: LLCSettings = PROTOCOL
    record: dict = field(default_factory=dict)

    def save(self, out) -> None:
        """PATH.npz + PATH.json (tms.core.io, LLCResult.save): every array of the result, its
        settings and the record; and PATH.nc, the kept draws as ArviZ InferenceData
        (LLCResult.to_inference_data, <= 1000 draws per chain), loadable with arviz.from_netcdf."""
        rec = dict(self.result.settings, labels=self.labels, **self.record, shape=list(self.result.llc.shape))
        with io.recording_kind("llc"):
            self.result.save(out, **rec)
        inference.save_netcdf(self.result.to_inference_data(), f"{out}.nc")  # atomic, as a point's draws


def _zoo_centre(point: str, c: int, loss: str, n: float, data_seed: int, progress: bool = True):
    zoo.parse_label(point)  # a malformed label fails before the zoo is solved
    checks.positive_int(c, "c", minimum=3, maximum=16)
    zoo.critical_points(c, progress=progress)  # solved once (seconds at large c), then cached
    q = zoo.critical_point(c, point)
    X = sample_inputs(int(n), c, data_seed) if loss == "empirical" else None
    rec = dict(point=q.label, c=c, zoo_loss=q.loss, zoo_llc=q.llc, hessian_rank=q.hessian_rank)
    return q.W, q.b, X, [q.label], rec


def _checkpoint_labels(shape, steps) -> list[str]:
    idx = torch.cartesian_prod(*[torch.arange(s) for s in shape]).reshape(-1, len(shape)).tolist() if shape else [[]]
    if steps is None or not shape or len(steps) != shape[0]:
        return [str(tuple(i)) for i in idx]
    return [f"t={int(steps[i[0]])}" + (f",r{i[1]}" if len(i) > 1 else "") for i in idx]


def _checkpoint_centres(path, every: int, loss: str, n: float, data_seed: int):
    arrays, record = checks.checkpoints_result(Path(path), "checkpoints")
    if "blocks_done" in record:  # tms.dynamics.train's partial state: no checkpoint steps, no training set
        raise ValueError(f"checkpoints: {path} is an unfinished training run (the state `tms train` resumes "
                         "from), not a trajectory; finish it with `tms train --out` and give the result")
    W = torch.from_numpy(arrays["W"]).to(torch.float64)
    b = torch.from_numpy(arrays["b"]).to(torch.float64)
    steps = arrays.get("steps")
    if W.dim() > 2 and every > 1:
        W, b = W[::every], b[::every]
        steps = None if steps is None else steps[::every]
    X = None
    if loss == "empirical":
        X = torch.from_numpy(arrays["X"]).to(torch.float64) if "X" in arrays else sample_inputs(int(n), W.shape[-1],
                                                                                                 data_seed)
    shape = tuple(W.shape[:-2])
    steps_list = [int(s) for s in steps] if steps is not None and shape and len(steps) == shape[0] else None
    rec = dict(checkpoints=str(path), train_record=record, steps=steps_list)
    return W, b, X, _checkpoint_labels(shape, steps), rec


def _check_sources(point, checkpoints, c, data_seed: int, every: int) -> None:
    if (point is None) == (checkpoints is None):
        raise ValueError("give exactly one of point (a zoo label) or checkpoints (a saved trajectory)")
    if checkpoints is not None and c is not None:
        raise ValueError(f"c = {c} is for point; checkpoints fix c by their W (give one of c and checkpoints)")
    if point is not None and every != 1:
        raise ValueError(f"every = {every} is for checkpoints; a point is one centre (give one of every and point)")
    checks.seed(data_seed, "data_seed")
    checks.positive_int(every, "every")


def _check_n(settings: LLCSettings, X, checkpoints) -> None:
    """n sets the drawn data set's size and nbeta = n / log n; a trajectory's own training set
    fixes both, so an n other than that set's size is an error, not ignored."""
    if checkpoints is not None and X is not None and settings.n != PROTOCOL.n and settings.n != X.shape[-2]:
        raise ValueError(f"n = {settings.n:g} conflicts with checkpoints: their training set X has n = "
                         f"{X.shape[-2]}, which sets the loss and nbeta (give one of n and checkpoints with X)")


def run(*, point: str | None = None, checkpoints: str | Path | None = None, c: int | None = None,
        loss: str | None = None, data_seed: int = 0, every: int = 1, settings: LLCSettings = PROTOCOL, device="cpu",
        threads: int | None = None, progress: bool = False, out: str | Path | None = None, force: bool = False,
        **changes) -> LLCRun:
    """`tms llc`: the LLC at the zoo point `point` of c features, or at every checkpoint of a
    saved trajectory (SPEC 5).

    loss: "population" (exact L; default for a point) or "empirical" (L_n: a drawn data set of
    size settings.n and seed data_seed for a point; the trajectory's own training set X if it
    has one, default for checkpoints). every: use every k-th checkpoint. settings: the sampler
    settings (default PROTOCOL, whose measured bias is in tms.llc.estimator's docstring) with
    `changes` applied (n_chains=4, ...); nbeta = settings.nbeta_for(n), n the data set's size
    when there is one, else settings.n. c (default 6) is for a point only; with checkpoints, an
    n other than their training set's size is an error. out: save the LLCRun there (LLCRun.save)
    after claiming it (tms.core.io.claim_output: never the checkpoints file, never another
    kind of result; an LLC result of other settings only with force=True). threads: the
    run's threads (None: every core for the compiled SGLD, one for torch; the numbers do not
    depend on it).
    """
    settings = settings.replace(**changes) if changes else settings
    threads = checks.threads(threads, "threads")
    _check_sources(point, checkpoints, c, data_seed, every)
    loss = loss or ("population" if point is not None else "empirical")
    c = (6 if c is None else c) if point is not None else None
    request = dict(point=point, checkpoints=None if checkpoints is None else str(checkpoints), c=c, loss=loss,
                   data_seed=data_seed, every=every, settings=settings.as_record())
    if out is not None:
        out = checks.output_stem(out, "out")
        io.claim_output(out, "llc", request, key="request", inputs=(checkpoints,), force=force)
    if point is not None:
        W, b, X, labels, rec = _zoo_centre(point, c, loss, settings.n, data_seed, progress)
    else:
        W, b, X, labels, rec = _checkpoint_centres(checkpoints, every, loss, settings.n, data_seed)
        _check_n(settings, X, checkpoints)
    if settings.batch_size is not None and X is not None and settings.batch_size > X.shape[-2]:
        raise ValueError(f"batch_size {settings.batch_size} exceeds the data set size n = {X.shape[-2]}; "
                         "use at most n, or None for full batch")
    n_used = X.shape[-2] if X is not None else settings.n
    nbeta_used = settings.nbeta_for(n_used)
    work.announce(work.llc(centres=math.prod(W.shape[:-2]), n_chains=settings.n_chains,
                           steps=settings.n_burnin + settings.n_draws, n=n_used, empirical=loss == "empirical",
                           batch_size=settings.batch_size), progress=progress)
    dev = torch.device(device)
    with checks.torch_threads(threads, torch_cap=1):
        res = estimate_llc(W.to(dev), b.to(dev), None if X is None else X.to(dev), nbeta=nbeta_used,
                           eps=settings.eps, gamma=settings.gamma, n_chains=settings.n_chains,
                           n_burnin=settings.n_burnin, n_draws=settings.n_draws, loss=loss,
                           batch_size=settings.batch_size, seed=settings.seed, progress=progress)
    result = LLCRun(res, labels, settings, dict(rec, n=n_used, nbeta=nbeta_used, nbeta_default=settings.nbeta is None,
                                                request=request))
    if out is not None:
        result.save(out)
    return result
