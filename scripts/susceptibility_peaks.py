"""Does the feature susceptibility peak where the posterior changes phase? (docs/susceptibility.md)

Protocol. For c = 6 (5-family -> 6) and c = 5 (4-family -> 5), r = 2, beta_lik = 1: a posterior
sweep (tms.experiments.posterior.run, quick ladders but SEEDS data sets per n and every draw
kept: min_draws = n_draws) on an n-grid dense around the measured mass crossing; then
tms.experiments.susceptibility.run on its saved draws; then, by bootstrap over the data sets
(resampled at every n independently, BOOT times):
  - the peak n of |the symmetrised self-susceptibility| (mean over k of chi[k, k], chi of
    ||W_k||^2, b_k and L_k to upweighting feature k; L_k's is negative): parabola through the
    largest grid value and its two neighbours in log n;
  - the crossing n where the summed mass of the later phase overtakes the earlier family's
    (log-linear interpolation of the first sign change of the mass difference).
Prints and saves (OUT/peaks.json) the point estimates and 16-84 % bootstrap intervals.

    python scripts/susceptibility_peaks.py sweep   [--out DIR]   # minutes per c on 2 cores
    python scripts/susceptibility_peaks.py analyse [--out DIR]   # seconds, from the saved runs
"""
from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import numpy as np

from tms.experiments import posterior as posterior_run
from tms.experiments import susceptibility as susceptibility_run

SEEDS, REPLICAS, N_DRAWS, BOOT = 8, 4, 200, 2000
GRIDS = {6: (150, 200, 250, 300, 350, 400, 450, 500, 600, 700, 850, 1000),
         5: (50, 70, 90, 110, 130, 150, 175, 200, 250, 300, 400)}
PAIRS = {6: ("5", "6"), 5: ("4", "5")}  # (earlier family, later phase family)
SETTINGS = posterior_run.QUICK.replace(seeds=SEEDS, replicas=REPLICAS, n_draws=N_DRAWS, min_draws=N_DRAWS)


def run_dir(out: Path, c: int) -> Path:
    return posterior_run.posterior_run_dir(out / f"posterior_c{c}", c, "quick", 1.0, 0)


def sweep(out: Path) -> None:
    """The two posterior sweeps (resumable point by point) and their susceptibilities."""
    for c in (6, 5):
        posterior_run.run(c, GRIDS[c], SETTINGS, seed=0, out=out / f"posterior_c{c}", threads=1)
        susceptibility_run.run(run_dir(out, c), out=out / f"susceptibility_c{c}",
                               figure=out / f"susceptibility_c{c}.png", threads=1)
        print(f"c = {c} done", flush=True)


def family_mass(mass: np.ndarray, phases: list[str], family: str) -> np.ndarray:
    """Summed mass (..., P) -> (...) of the phases of one family: the k-gons of one k, whatever
    their bias signs ('5', '5+', '4+,-', ...; tms.theory.zoo.make_label)."""
    return mass[..., [i for i, p in enumerate(phases) if re.match(r"\d+", p) and re.match(r"\d+", p)[0] == family]].sum(-1)


def peak_n(ns: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """n of the maximum of each curve (B, N): the vertex of the parabola through the largest
    grid value and its neighbours in log n (the grid end where the maximum sits there)."""
    x = np.log(ns)
    i = np.clip(curves.argmax(-1), 1, len(ns) - 2)
    rows = np.arange(len(curves))
    y0, y1, y2 = curves[rows, i - 1], curves[rows, i], curves[rows, i + 1]
    x0, x1, x2 = x[i - 1], x[i], x[i + 1]
    den = (x0 - x1) * (x0 - x2) * (x1 - x2)
    a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / den
    bq = (x2**2 * (y0 - y1) + x1**2 * (y2 - y0) + x0**2 * (y1 - y2)) / den
    vertex = np.where(a < 0, -bq / (2 * np.where(a == 0, 1, a)), x[curves.argmax(-1)])
    at_end = (curves.argmax(-1) == 0) | (curves.argmax(-1) == len(ns) - 1)
    return np.exp(np.where(at_end, x[curves.argmax(-1)], np.clip(vertex, x0, x2)))


def crossing_n(ns: np.ndarray, diffs: np.ndarray) -> np.ndarray:
    """First n where each difference curve (B, N) turns from negative to >= 0, log-linear
    between grid points; NaN where it never does."""
    x = np.log(ns)
    up = (diffs[:, 1:] >= 0) & (diffs[:, :-1] < 0)  # (B, N - 1)
    has = up.any(-1)
    j = up.argmax(-1)
    rows = np.arange(len(diffs))
    d0, d1 = diffs[rows, j], diffs[rows, j + 1]
    cross = x[j] + (x[j + 1] - x[j]) * (-d0) / np.where(d1 == d0, 1, d1 - d0)
    return np.where(has, np.exp(cross), np.nan)


def bootstrap_means(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Means over data sets resampled independently at every n: values (N, S) -> (BOOT, N)."""
    N, S = values.shape
    idx = rng.integers(0, S, size=(BOOT, N, S))
    return np.take_along_axis(np.broadcast_to(values, (BOOT, N, S)), idx, -1).mean(-1)


def interval(samples: np.ndarray) -> list[float]:
    """16 and 84 % quantiles of the finite bootstrap values (NaN: none)."""
    ok = samples[np.isfinite(samples)]
    return [float(v) for v in np.quantile(ok, [0.16, 0.84])] if len(ok) else [math.nan, math.nan]


def per_data_set(out: Path, c: int):
    """ns (N,), the mass difference later - earlier family (N, S) and each observable's
    symmetrised self susceptibility per data set {name: (N, S)}, from the saved sweep."""
    from tms.bayes import posterior_point
    from tms.bayes.feature_response import feature_response
    from tms.core import io

    folder = run_dir(out, c)
    arrays, _ = io.load_result(folder / f"summary_c{c}")
    ns = np.asarray(arrays["ns"])
    earlier, later = PAIRS[c]
    diff, selfs = [], {k: [] for k in susceptibility_run.OBSERVABLES}
    for n in ns:
        point = posterior_point.load_point(posterior_point.point_path(folder, c, int(n)))
        mass = np.asarray(point.mass_seed)  # (S, P) over the point's own phase list
        diff.append(family_mass(mass, list(point.phases), later) - family_mass(mass, list(point.phases), earlier))
        W, b, X, _ = susceptibility_run.point_draws(folder, c, int(n))
        resp = feature_response(W, b, X, n_batches="longest")
        for k in selfs:
            chi = getattr(resp, k).chi_each  # (S, c, c)
            selfs[k].append(np.trace(chi, axis1=-2, axis2=-1) / c)
    return ns, np.array(diff), {k: np.array(v) for k, v in selfs.items()}


def analyse(out: Path) -> dict:
    """Peaks against crossings at c = 6 and 5 (module docstring), printed and saved."""
    from tms.bayes import predictions

    result = {}
    for c in (6, 5):
        if not (run_dir(out, c) / f"summary_c{c}.json").exists():
            print(f"c = {c}: no sweep in {out} yet")
            continue
        rng = np.random.default_rng(c)
        ns, diff, selfs = per_data_set(out, c)
        cross = dict(n=float(crossing_n(ns, diff.mean(-1)[None])[0]),
                     interval=interval(crossing_n(ns, bootstrap_means(diff, rng))))
        peaks = {}
        for k, v in selfs.items():
            mean = v.mean(-1)
            sign = np.sign(mean[np.abs(mean).argmax()])  # the peak of |chi|: L_k's response is negative
            peaks[k] = dict(n=float(peak_n(ns, sign * mean[None])[0]),
                            interval=interval(peak_n(ns, sign * bootstrap_means(v, rng))),
                            curve=mean.tolist(), se=(v.std(-1, ddof=1) / math.sqrt(v.shape[-1])).tolist())
        earlier, later = PAIRS[c]
        n_c = [t.n_c for t in predictions.predicted_transitions(c, 1.0) if (t.alpha, t.beta) == (earlier, later)]
        result[c] = dict(ns=ns.tolist(), pair=[earlier, later], crossing=cross, peaks=peaks,
                         mass_difference=diff.mean(-1).tolist(), predicted_n_c=n_c[0] if n_c else None)
        print(f"c = {c}: {earlier}-family -> {later}: mass crossing n = {cross['n']:.0f} "
              f"[{cross['interval'][0]:.0f}, {cross['interval'][1]:.0f}] (16-84 %), predicted n_c "
              f"{n_c[0] if n_c else float('nan'):.0f}")
        for k, p in peaks.items():
            inside = cross["interval"][0] <= p["n"] <= cross["interval"][1]
            print(f"  peak of the self susceptibility of {k:<12}: n = {p['n']:.0f} [{p['interval'][0]:.0f}, "
                  f"{p['interval'][1]:.0f}]  {'inside' if inside else 'OUTSIDE'} the crossing interval")
    (out / "peaks.json").write_text(json.dumps(result, indent=1))
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("step", choices=("sweep", "analyse"))
    p.add_argument("--out", default="results/susceptibility_peaks")
    args = p.parse_args()
    out = Path(args.out)
    if args.step == "sweep":
        sweep(out)
    else:
        analyse(out)


if __name__ == "__main__":
    main()
