"""The whole free-energy measurement at one c (docs/SPEC.md section 3), saved and resumable:
the sweep, lambda three ways, the O(1) terms, the data-term curve and the analysis; its summary
record and the REPORT.md section drawn from it."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tms.bayes import sweep
from tms.bayes.free_energy.analysis import analyse, lambda_table
from tms.bayes.free_energy.estimators import Record
from tms.bayes.free_energy.ladders import LocalLambdas, lambda_labels, local_lambda, sweep_data, sweep_seeds
from tms.bayes.free_energy.terms import MAX_PERM_C, data_term_curve, flat_volume, o1_terms
from tms.bayes.settings import FreeEnergySettings
from tms.core import checks, io
from tms.llc.estimator import LLCSettings
from tms.llc.zoo import zoo_llc
from tms.theory import zoo

# the default n-grid per c (quick scale: around the 5 -> 6 crossing at c = 6)
QUICK_NS = {6: (200, 300, 400, 500, 650), 5: (100, 150, 200, 300, 400), 4: (100, 150, 200, 300, 400)}


@dataclass(frozen=True)
class FreeEnergySummary(Record):
    """measure's result, as saved (JSON values): c; ns (N,) and n_fine; readings, per reading
    ('zoo', 'hull') its columns, mass, every pair and the primary pairs analysed
    (tms.bayes.free_energy.analysis records); o1 (the O(1) terms per label); lam_used (the
    lambdas of the theory curves); dcurve (the mean data-term curve, or None); lambda_table
    (lambda three ways per phase); sgld_error (None: the SGLD lambdas ran); diagnostics per n;
    settings (the measurement's, scale, the data's ids, and the figure's reading)."""

    c: int
    ns: list
    n_fine: list
    readings: dict
    o1: dict
    lam_used: dict
    dcurve: dict | None
    lambda_table: list
    sgld_error: str | None
    diagnostics: dict
    settings: dict


def _saved_or_computed(path: Path | None, settings: dict, compute):
    """The value saved at path when it may be reused for `settings` (tms.bayes.sweep.reusable,
    the one rule), else compute()'s, saved there."""
    if path is not None and sweep.reusable(path, settings, what="it"):
        return io.load_result(path)[1]["value"]
    value = io.jsonable(compute())
    if path is not None:
        io.save_result(path, {}, dict(settings=settings, value=value))
    return value


def _sgld(c: int, labels, settings: LLCSettings) -> dict:
    """SGLD estimates at the zoo points (tms.llc.zoo.zoo_llc), {label: [value, se]}; NaN with
    the error recorded if the estimator fails."""
    try:
        return {lab: [float(v), float(s)] for lab, (v, s) in zoo_llc(c, list(labels), settings).estimates().items()}
    except (ValueError, RuntimeError) as err:  # the estimator refused or failed: recorded, the rest goes on
        return {lab: [math.nan, math.nan] for lab in labels} | {"_error": f"{type(err).__name__}: {err}"}


def measure(c: int = 6, ns=None, settings: FreeEnergySettings | None = None, *, seed: int = 0, scale: str = "quick",
            out_dir: str | Path | None = None, datasets=None, beta_lik: float = 1.0, progress: bool = False,
            labels=None, batch_points: int | None = None, save_every: float = 60.0,
            dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu") -> FreeEnergySummary:
    """The whole free-energy measurement at one c: the sweep (seeds, or `datasets` as in
    sweep_data), the local-ladder lambdas, SGLD lambdas, the O(1) terms, the data-term curve
    and `analyse`.

    settings: tms.bayes.settings.FreeEnergySettings (default: the quick scale; the presets are
    tms.experiments.free_energy's); scale: the preset's name, recorded. ns: the n-grid
    (default QUICK_NS[c]; ignored with datasets). out_dir: every piece saved there and reused
    when rerun (resumable; with batch_points, n values are sampled and saved that many at a
    time; the sweep's sampler state checkpointed every save_every seconds); the
    summary `summary_c{c}` is rewritten. Returns the summary (as saved).
    """
    st = settings if settings is not None else FreeEnergySettings()
    st = st.replace(sgld=st.sgld.replace(seed=seed))  # the SGLD lambdas run with the measurement's seed
    checks.scale(scale)
    out = Path(out_dir) if out_dir is not None else None
    zoo.critical_points(c, progress=progress)
    common = dict(seed=seed, beta_lik=beta_lik, out_dir=out, progress=progress, batch_points=batch_points,
                  save_every=save_every, dtype=dtype, device=device)
    if datasets is None:
        points = sweep_seeds(c, list(ns if ns is not None else QUICK_NS.get(c, QUICK_NS[5])), st.sweep, **common)
    else:
        points = sweep_data(c, datasets, st.sweep, **common)
    labels = list(labels) if labels is not None else lambda_labels(c)
    lam_res = LocalLambdas.from_record(_saved_or_computed(
        None if out is None else out / f"lambda_c{c}", dict(labels=labels, seed=seed, beta_lik=beta_lik,
                                                             **st.local.as_record()),
        lambda: local_lambda(c, labels, st.local, seed=seed, beta_lik=beta_lik, progress=progress, dtype=dtype,
                             device=device)))
    sg = _saved_or_computed(None if out is None else out / f"sgld_c{c}",
                            dict(labels=labels, **st.sgld.as_record()), lambda: _sgld(c, labels, st.sgld))
    o1 = o1_terms(c, zoo.labels(c), n_mc=st.mc_draws, seed=seed)
    bayes = {lab: r.lam for lab, r in lam_res.per_label.items()}
    lam_used = {lab: t.llc if t.llc is not None else bayes.get(lab) for lab, t in o1.items()}
    dcurve = _dcurve(c, o1, [pt.n for pt in points], st.dcurve_sets, seed, beta_lik, st.mc_draws)
    res = analyse(points, c, o1, lam_used, dcurve=dcurve, beta_lik=beta_lik)
    res = FreeEnergySummary.from_record(io.jsonable(dict(
        res.as_record(), c=c, o1=o1, lam_used=lam_used, dcurve=dcurve, lambda_table=lambda_table(c, lam_res, sg, o1),
        sgld_error=sg.get("_error"), diagnostics=_diagnostics(points),
        settings=dict(c=c, r=2, seed=seed, beta_lik=beta_lik, scale=scale, **st.as_record(),
                      data="user" if datasets is not None else "seeds", ids={str(pt.n): pt.ids for pt in points}))))
    if out is not None:
        save_summary(out / f"summary_c{c}", res)
    return res


def _dcurve(c: int, o1: dict, ns, n_sets: int, seed: int, beta_lik: float, n_mc: int) -> dict | None:
    """The mean data term (with its a + b sqrt(n) fit) and the finite-n zero-column volume of
    the smooth labels on a log grid from half the sweep's smallest n to twice its largest."""
    labs = [lab for lab, t in o1.items() if t.laplace is not None]
    if not labs or c > MAX_PERM_C or beta_lik != 1.0:
        return None
    grid = np.unique(np.round(np.exp(np.linspace(math.log(min(ns) / 2), math.log(max(ns) * 2), 10))).astype(int))
    mean, se = data_term_curve(c, labs, grid, n_sets=n_sets, seed=seed)
    X = np.stack([np.ones(len(grid)), np.sqrt(grid)], 1)
    fit = []
    for j in range(len(labs)):  # E[data term](n) ~ a + b sqrt(n): the lowest of the copies' n L_n fluctuations
        w = 1.0 / np.maximum(se[:, j], 1e-6) ** 2
        fit.append(np.linalg.solve(X.T @ (w[:, None] * X), X.T @ (w * mean[:, j])))
    flat_n = np.stack([flat_volume(c, lab, grid, n_mc, seed) for lab in labs], 1)  # (Nc, L)
    return dict(ns=grid.tolist(), labels=labs, mean=mean, se=se, n_sets=n_sets, fit=np.array(fit), flat_n=flat_n)


def _diagnostics(points: list) -> dict:
    """Per n: phase masses per data set (S, P) in both readings, round trips per ladder
    (S, R), final ladders (S, K), swap rates, acceptance, divergences."""
    keys = ("phases_zoo", "mass_seed_zoo", "phases_hull", "mass_seed_hull", "round_trips", "betas", "swap_rate",
            "accept", "divergences")
    return {str(pt.n): {k: getattr(pt, k) for k in keys} for pt in points}


def save_summary(path: str | Path, res: FreeEnergySummary) -> None:
    """The summary record (JSON) with ns and n_fine as arrays (tms.core.io)."""
    io.save_result(path, dict(ns=np.asarray(res.ns), n_fine=np.asarray(res.n_fine)), res.as_record())


def load_summary(path: str | Path) -> FreeEnergySummary:
    """The summary saved by measure / save_summary."""
    _, rec = io.load_result(path)
    return FreeEnergySummary.from_record(rec)


# ---- REPORT.md section ------------------------------------------------------------------------------------


def _pm(v, se, fmt: str = ".2f") -> str:
    if v is None or not np.isfinite(v):
        return "-"
    return f"{v:{fmt}}" + ("" if se is None or not np.isfinite(se) or se == 0 else f" ± {se:{fmt}}")


def _nc(v) -> str:
    return "-" if v is None else f"{v:.0f}"


def _measured_table(pr: dict, other: dict | None, ns) -> list[str]:
    """Rows n | measured (both readings) | the theory curves on the grid."""
    g = pr.get("grid", {})
    head = ["n", "measured (zoo)", "measured (hull)", "formula", "+ computed O(1), n → ∞", "+ data term",
            "+ zero-column volume at n (all computed)"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, n in enumerate(ns):
        vals = [f"{int(n)}", _pm(pr["dF"][i], pr["se"][i]),
                _pm(other["dF"][i], other["se"][i]) if other is not None else "-"]
        vals += [_pm(g[k][i], None) if k in g else "-" for k in ("paper", "laplace", "data", "finite")]
        rows.append("| " + " | ".join(vals) + " |")
    return rows


def _fit_rows(pr: dict) -> list[str]:
    f = pr["fits"]
    names = dict(free="dlambda, dc fitted (dL from the zoo)", free_data="the same, data term of each data set "
                 "subtracted first", remainder="remainder beyond the formula (dlambda from theory)",
                 remainder_laplace="remainder beyond formula + computed O(1)",
                 remainder_laplace_data="remainder beyond formula + computed O(1) + data term",
                 remainder_all="remainder beyond all computed terms (zero-column volume at n)")
    rows = ["| fit | dlambda | dc | chi2 / dof |", "|---|---|---|---|",
            f"| theory (zoo) | {pr['dlam']:.2f} | {pr['dc_paper']:.2f} (formula: \u0394‖w*‖²/2); "
            f"{_pm(pr['dc_laplace'], None)} (all computed O(1) terms) | - |"]
    for key, name in names.items():
        if key in f:
            r = f[key]
            dl = _pm(r["dlam"], r["dlam_se"]) if key.startswith("free") else "(theory)"
            rows.append(f"| {name} | {dl} | {_pm(r['dc'], r['dc_se'])} | {_pm(r['chi2'], None, '.1f')} / {r['dof']} |")
    return rows


def _which_term(pr: dict) -> list[str]:
    """The split of F(alpha) - F(beta) at the observed crossing, and the sentence saying
    which term moves the crossing."""
    terms = [(k, float(v)) for k, v in pr["terms"]]
    rows = [f"Split of F_n({pr['rep_alpha']}) − F_n({pr['rep_beta']}) at n = {pr['n_star']:.0f} "
            "(the observed crossing, where the measured difference is 0):", "",
            "| term | nats |", "|---|---|"] + [f"| {k} | {v:+.2f} |" for k, v in terms]
    total = sum(v for _, v in terms)
    rows.append(f"| **sum** | **{total:+.2f}** |")
    o1 = [(k, v) for k, v in terms[2:]]  # beyond the formula (its asymptotic part and prior)
    if o1:
        k, v = max(o1, key=lambda kv: abs(kv[1]))
        nc = pr["n_c"]
        rows += ["", f"Which term moves the crossing: the lab's formula (asymptotic part + prior) puts n_c at "
                 f"{_nc(nc['paper'])}; the O(1) terms it drops add {sum(x for _, x in o1):+.2f} nats at n = "
                 f"{pr['n_star']:.0f}, the largest being {k} ({v:+.2f}). With the computed O(1) terms n_c = "
                 f"{_nc(nc['laplace'])}, adding the data term n_c = {_nc(nc['laplace+data'])}, with every computed "
                 f"term (zero-column volume at n) n_c = {_nc(nc.get('all computed'))}; formula + measured constant "
                 f"n_c = {_nc(nc['measured O(1)'])}; fitted dlambda and dc n_c = {_nc(nc['fit'])}; "
                 f"observed {_nc(nc['observed'])}."]
    return rows


def _lambda_rows(rows: list[dict]) -> list[str]:
    out = ["| phase | lambda (zoo theory) | lambda (SGLD) | lambda (Bayes, ladder) | n beta range |",
           "|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| `{r['label']}` | {_pm(r['theory'], None, '.1f')} | {_pm(r['sgld'], r['sgld_se'])} | "
                   f"{_pm(r['bayes'], r['bayes_se'])} | {r['nbeta_min']:.0f}..{r['nbeta_max']:.0f} |")
    return out


def report_section(result: FreeEnergySummary) -> list[str]:
    """Markdown lines of a REPORT.md section: the measured free-energy differences of the
    primary pairs (both readings), the fits, the crossings, the term that moves the
    crossing, and lambda three ways. result: measure(...) or load_summary(path)."""
    st, ns = result.settings, np.asarray(result.ns, float)
    sw = st["sweep"]
    lines = [f"## Measured free energies (c = {st['c']})", "",
             "F_n(alpha) − F_n(beta) = −log(P_alpha / P_beta) from the posterior phase masses (replica exchange, "
             f"K = {sw['n_temps']} temperatures, R = {sw['replicas']} ladders per data set, "
             f"S = {sw['seeds']} data sets per n, likelihood inverse temperature {st['beta_lik']:g}); "
             "error bars: delta method over the ladders, "
             "pooled over data sets (max of the across-data-set and Monte Carlo s.e.). The lab's formula is "
             "n dL + dlambda log n + d(‖w*‖²/2); the other O(1) terms are computed here (orbit multiplicity, "
             "Hessian determinant, O(2) orbit length, prior mass of the flat zero-column region) and the data term "
             "(the posterior picks the copy of the critical set with the lowest empirical loss) is exact per data "
             "set.", ""]
    zoo_p = {(p["alpha"], p["beta"]): p for p in result.readings["zoo"]["primary"]}
    hull_p = {(p["alpha"], p["beta"]): p for p in result.readings["hull"]["primary"]}
    for key, pr in zoo_p.items():
        if not pr.get("theory"):
            continue
        lines += [f"### F_n({key[0]}) − F_n({key[1]})", ""] + _measured_table(pr, hull_p.get(key), ns) + [""]
        lines += _fit_rows(pr) + [""] + _which_term(pr) + [""]
    lines += ["### lambda three ways", "", "Bayes: slope of E_beta[n L_n | phase] against 1/beta on ladders confined "
              f"to the phase (n = {st['local']['n']}, jackknife over ladders); SGLD: at the zoo point, population "
              f"loss, n beta = n / log n, n = {st['sgld']['n']:g}.", ""] + _lambda_rows(result.lambda_table) + [""]
    return lines
