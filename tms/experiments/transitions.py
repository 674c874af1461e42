"""`tms transitions`: plateaus on zoo levels, the LLC along SGD trajectories and the
Bayesian-antecedent table of a saved training result (SPEC 4), saved, with its figures."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch

from tms.core import checks
from tms.core.cluster import check_cluster
from tms.core.records import TransitionsResult
from tms.dynamics.train import load_train
from tms.dynamics.transitions import (antecedent_table, checkpoint_llc, choose_run, default_tol, geometry,
                                      label_checkpoints, plateau_llc, segment, segmentation_arrays, zoo_levels)
from tms.report.plots.sgd import sgd_many, sgd_trajectory


def analyse(input: str = "results/sgd/train", *, out: str | None = None, figures: str | None = "results/figures",
            run: int | None = None, tol: float | None = None, min_points: int = 3, min_span: float = 1.25,
            llc: bool = True, llc_points: int = 20, n_chains: int = 4, n_burnin: int = 0, n_draws: int = 500,
            eps: float = 1e-3, gamma: float = 1.0, nbeta: float | None = None, seed: int = 0, prior: bool = True,
            beta_lik: float = 1.0, device=None, threads: int | None = None, progress: bool = True,
            scheduler: str | None = None, workers: int | None = None) -> TransitionsResult:
    """Plateaus, transitions, LLC along the trajectories and the Bayesian-antecedent table of
    a saved `tms train` result (SPEC 4), saved to OUT (default INPUT_transitions) as a
    TransitionsResult, with the figures sgd_trajectory.png (run `run`, default the one with
    the most plateaus) and sgd_many.png in `figures` (None: no figures). threads: torch
    threads to use (None: leave as is). scheduler / workers: the LLC checkpoint blocks as Dask
    tasks (tms.core.cluster)."""
    out_path = _check_analyse(input, out, figures, run, tol, min_points, min_span, llc_points, n_chains,
                              n_burnin, n_draws, eps, gamma, nbeta, seed, beta_lik, llc)
    check_cluster(scheduler, workers)
    if checks.threads(threads):
        torch.set_num_threads(threads)
    res = load_train(input)
    c = int(res.record["c"])
    levels = zoo_levels(c)
    tol = default_tol(levels) if tol is None else tol
    seg = segment(res.pop_loss, res.steps, levels, tol=tol, min_points=min_points, min_span=min_span)
    arrays = segmentation_arrays(seg)
    cls, near = label_checkpoints(res.W, res.b, res.pop_loss, levels)
    arrays.update(classify_label=cls, level_label=near)
    agree, other = geometry(seg, cls)
    llc_est, llc_settings = {}, None
    if llc:
        la, llc_settings = checkpoint_llc(res, out_path, llc_points=llc_points, n_chains=n_chains, n_burnin=n_burnin,
                                          n_draws=n_draws, eps=eps, gamma=gamma, nbeta=nbeta, seed=seed,
                                          device=device, progress=progress, scheduler=scheduler, workers=workers)
        arrays.update(la)
        llc_est = plateau_llc(seg, la["llc_index"], la["llc"], la["llc_se"], la["llc_ok"])
    rows, unseen = antecedent_table(seg, c, llc_est, prior=prior, beta_lik=beta_lik)
    for r in rows:
        r.geometry_src, r.geometry_dst = agree.get(r.src), agree.get(r.dst)
    seq_counts = sorted(Counter(seg.sequences()).items(), key=lambda kv: -kv[1])
    shown = choose_run(dict(arrays, pop_loss=res.pop_loss.numpy())) if run is None else run
    result = TransitionsResult(
        arrays=arrays, input=str(input), train=res.record, tol=tol, min_points=min_points, min_span=min_span,
        prior=prior, beta_lik=beta_lik, levels=dict(labels=levels.labels, loss=levels.loss.tolist(),
                                                    llc=[None if np.isnan(v) else float(v) for v in levels.llc],
                                                    prior=levels.prior.tolist()),
        plateau_labels=[p.label for p in seg.plateaus], plateaus=[p._asdict() for p in seg.plateaus],
        transitions=[t._asdict() for t in seg.transitions], sequence_counts=[[list(s), k] for s, k in seq_counts],
        classify_agreement=agree, classify_other=other, antecedents=rows, bayesian_unseen=unseen,
        llc_settings=llc_settings, plateau_llc={k: list(v) for k, v in llc_est.items()}, figure_run=int(shown))
    result.save(out_path)
    if figures is not None:
        Path(figures).mkdir(parents=True, exist_ok=True)
        sgd_trajectory(input, out_path, Path(figures) / "sgd_trajectory.png", run=result.figure_run)
        sgd_many(input, out_path, Path(figures) / "sgd_many.png")
    return result


def _check_analyse(input, out, figures, run, tol, min_points, min_span, llc_points, n_chains, n_burnin, n_draws,
                   eps, gamma, nbeta, seed, beta_lik, llc) -> Path:
    """Every argument of `analyse`, the input record and the output paths checked before any
    work; returns the result path. Warnings on the SGLD settings go to stderr."""
    checks.seed(seed, "seed")
    if tol is not None:
        checks.positive_float(tol, "tol")
    checks.positive_int(min_points, "min_points")
    if checks.positive_float(min_span, "min_span") < 1:
        raise ValueError(f"min_span must be >= 1 (a factor in steps), got {min_span!r}")
    checks.positive_int(llc_points, "llc_points")
    checks.positive_int(n_chains, "n_chains", maximum=checks.MAX_CHAINS)
    checks.positive_int(n_burnin, "n_burnin", minimum=0, maximum=checks.MAX_STEPS)
    checks.positive_int(n_draws, "n_draws", minimum=2, maximum=checks.MAX_STEPS)
    for note in ([] if not llc else checks.sgld_hyper(eps, gamma)):
        checks.warn(note)
    if nbeta is not None:
        checks.positive_float(nbeta, "nbeta")
    checks.positive_float(beta_lik, "beta_lik")
    data, _ = checks.train_result(input, "input")
    if run is not None:
        checks.positive_int(run, "run", minimum=0, maximum=data["W"].shape[1] - 1)
    inp = checks.result_stem(input)
    out_path = checks.output_stem(out or inp.with_name(inp.stem + "_transitions"), "out")
    checks.output_stem(out_path.with_name(out_path.stem + "_llc"), "out (its LLC result)")
    if figures is not None:
        fig = checks.output_dir(figures, "figures")
        for name in ("sgd_trajectory.png", "sgd_many.png"):
            checks.output_file(fig / name, "figures")
    return out_path
