"""What `tms free-energy` computes, as one Python function (SPEC 3): the measured free-energy
differences of the phases at one c, lambda three ways, the O(1) terms, the summary and its
figure, resumable from the pieces saved under `out`.

    res = free_energy_run.run(c=6, n=[200, 300, 400], scale="quick")
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tms.core import checks
from tms.theory import zoo
from tms.bayes.free_energy.measure import measure, report_section, save_summary
from tms.report.plots.free_energy import plot_free_energy

SWEEP_KEYS = ("seeds", "replicas", "n_temps", "beta_min", "n_warmup", "n_draws", "max_steps")
LAMBDA_KEYS = ("n", "seeds", "replicas", "n_temps", "beta_lo", "n_warmup", "n_draws")
BOUNDS = dict(seeds=1000, replicas=10**4, n_temps=1000, n_warmup=10**6, n_draws=10**6, max_steps=4096, n=10**6)


def check_settings(settings: dict | None, keys: tuple, what: str) -> dict:
    """Overrides of a sweep's settings (None values dropped), each within BOUNDS."""
    out = {}
    for key, v in (settings or {}).items():
        if key not in keys:
            raise ValueError(f"{what}: unknown setting {key!r}; known: {', '.join(keys)}")
        if v is None:
            continue
        if key in ("beta_min", "beta_lo"):
            if not 0 < checks.positive_float(v, f"{what} {key}") < 1:
                raise ValueError(f"{what} {key} must lie in (0, 1), got {v!r}")
        else:
            low = 4 if key == "n_warmup" else 2 if key in ("replicas", "n_temps", "n") else 1
            checks.positive_int(v, f"{what} {key}", minimum=low, maximum=BOUNDS[key])
        out[key] = v
    return out


def load_datasets(path: str, c: int) -> list[list[np.ndarray]]:
    """The arrays X (n, c) of a .npz, grouped by n (ascending): one grid point per n."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = [np.asarray(z[k], dtype=np.float64) for k in sorted(z.files)]
    except (OSError, ValueError) as err:
        raise ValueError(f"data {path}: not a readable .npz of arrays ({err})") from None
    bad = [a.shape for a in arrays if a.ndim != 2 or a.shape[1] != c or a.shape[0] < 2]
    if not arrays or bad:
        raise ValueError(f"data must hold arrays X of shape (n >= 2, c = {c}); got shapes {bad or 'none'}")
    groups: dict[int, list] = {}
    for a in arrays:
        groups.setdefault(a.shape[0], []).append(a)
    return [groups[n] for n in sorted(groups)]


def _check(c, n, data, scale, labels, mc_draws, batch_points, sgld_chains, sgld_burnin, sgld_draws, beta_lik, seed,
           threads, out, figure) -> Path:
    checks.positive_int(c, "c", minimum=4, maximum=8)
    checks.seed(seed, "seed")
    checks.threads(threads)
    checks.positive_float(beta_lik, "beta_lik")
    checks.scale(scale)
    if sgld_chains is not None:
        checks.positive_int(sgld_chains, "sgld_chains", minimum=2, maximum=10**6)
    if sgld_draws is not None:
        checks.positive_int(sgld_draws, "sgld_draws", minimum=10, maximum=10**6)
    if sgld_burnin is not None:
        checks.positive_int(sgld_burnin, "sgld_burnin", minimum=0, maximum=10**6)
    checks.positive_int(mc_draws, "mc_draws", minimum=1000, maximum=10**7)
    if batch_points is not None:
        checks.positive_int(batch_points, "batch_points", maximum=1000)
    if n is not None and data is not None:
        raise ValueError("give n (synthetic data sets) or data (your own), not both")
    unknown = sorted(set(labels or ()) - set(zoo.labels(c)))
    if unknown or (labels is not None and not labels):
        raise ValueError(f"labels: unknown zoo label(s) {', '.join(unknown)} at c = {c}; valid: {', '.join(zoo.labels(c))}")
    checks.output_dir(out, "out")
    return checks.output_file(figure or f"results/figures/free_energy_c{c}.png", "figure",
                              suffixes=checks.FIGURE_SUFFIXES)


def run(c: int = 6, n: list[int] | None = None, *, data: str | None = None, scale: str = "quick",
        sweep: dict | None = None, lam: dict | None = None, labels: list[str] | None = None,
        mc_draws: int = 200_000, batch_points: int | None = None, sgld_chains: int | None = None,
        sgld_burnin: int | None = None, sgld_draws: int | None = None, reading: str = "zoo", beta_lik: float = 1.0,
        seed: int = 0, out: str = "results/free_energy", figure: str | None = None, threads: int | None = None,
        progress: bool = True, device=None) -> dict:
    """Measure and save the free energies at c (tms.bayes.free_energy.measure.measure) under
    OUT/c{c}_{scale}[_data]_b{beta_lik}_s{seed}, write its summary and the figure (default
    results/figures/free_energy_c{c}.png, `reading` "zoo" or "hull"). n: the n-grid (default
    tms.bayes.free_energy.measure.QUICK_NS[c]); data: a .npz of your own data sets instead of seeds; sweep /
    lam: overrides of the posterior sweep's and the phase-confined ladders' settings
    (SWEEP_KEYS, LAMBDA_KEYS); sgld_chains / sgld_burnin / sgld_draws: the SGLD lambdas'
    chains, discarded and kept steps. threads: torch threads during the run (default 1: many
    small tensor ops; the caller's count is restored). Returns the summary record, with
    `figure` and `out` added."""
    fig_path = _check(c, n, data, scale, labels, mc_draws, batch_points, sgld_chains, sgld_burnin, sgld_draws,
                      beta_lik, seed, threads, out, figure)
    if reading not in ("zoo", "hull"):
        raise ValueError(f"reading must be 'zoo' or 'hull', got {reading!r}")
    sweep, lam = check_settings(sweep, SWEEP_KEYS, "sweep"), check_settings(lam, LAMBDA_KEYS, "lam")
    sgld = {k: v for k, v in (("n_chains", sgld_chains), ("n_burnin", sgld_burnin), ("n_draws", sgld_draws))
            if v is not None}
    datasets = load_datasets(data, c) if data is not None else None
    device = checks.device(device)
    run_dir = Path(out) / f"c{c}_{scale}{'_data' if datasets is not None else ''}_b{beta_lik:g}_s{seed}"
    with checks.torch_threads(threads or 1):
        res = measure(c, n, seed=seed, scale=scale, out_dir=run_dir, datasets=datasets, beta_lik=beta_lik,
                      progress=progress, sweep=sweep, lam=lam, sgld=sgld, labels=labels, batch_points=batch_points,
                      n_mc=mc_draws, device=device)
    res["settings"]["reading"] = reading
    save_summary(run_dir / f"summary_c{c}", res)
    res["figure"] = str(plot_free_energy(run_dir / f"summary_c{c}", fig_path, reading=reading))
    res["out"] = str(run_dir)
    return res


__all__ = ["run", "load_datasets", "check_settings", "report_section", "SWEEP_KEYS", "LAMBDA_KEYS", "BOUNDS"]
