"""figures/REPORT.md from the saved results of `tms reproduce` (reads only saved files).

Every table here is computed from the results on disk: the zoo (SPEC 2), the predicted
critical sample sizes and the ones observed as crossings of the posterior phase masses
(SPEC 3), the SGD plateau sequences and the Bayesian-antecedent table (SPEC 4), and every
setting and seed of every stage.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from tms.bayes.free_energy import measure as free_energy
from tms.core import io
from tms.report.comparison import compare, load_posterior_summary, mass_crossing
from tms.dynamics.analysis import TransitionsResult

CAVEAT = ("Free energies F_n = n L + lambda log n + |w*|^2/2 (likelihood inverse temperature 1, "
          "i.e. exp(-n L_n) with the unhalved loss); other O(1) terms are dropped.")


def _f(v, fmt=".4g", none="-"):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return none
    return format(v, fmt)


def _pm(value, se, fmt: str = ".2f", why: str = "no s.e.") -> str:
    """'value ± se', or 'value (why)' when the standard error is missing or not finite: a
    number is printed only with its support."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if se is None or not math.isfinite(float(se)):
        return f"{format(value, fmt)} ({why})"
    return f"{format(value, fmt)} ± {format(se, fmt)}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]
    return out


def _sgd_section(out: Path, figs: Path, sgd: str, fig_dir: str) -> list[str]:
    """Plateau sequences, LLC per plateau and the antecedent table of out/SGD (SPEC 4)."""
    L: list[str] = []
    tr_path = out / sgd / "train_transitions"
    if not io.result_exists(tr_path):
        return ["(no SGD results)", ""]
    tr = TransitionsResult.load(tr_path, "results")
    t = tr.train_settings
    L += [f"{len(tr.train['runs'])} runs, {t.total_steps} steps (n = {t.n}, batch {t.batch_size}, lr {t.lr}, "
          f"init {t.init}). Plateaus: population loss within {_f(tr.tol, '.2g')} of a zoo level.", ""]
    L += _table(["plateau sequence", "runs"], [[" → ".join(f"`{x}`" for x in s) or "(none)", k]
                                               for s, k in tr.sequence_counts])
    if tr.plateau_llc:
        L += ["", "Estimated LLC per plateau level (mean ± s.e. over plateaus): " + ", ".join(
            f"`{k}` {_pm(v.mean, v.se, why='no s.e.: one plateau')}" for k, v in sorted(tr.plateau_llc.items()))
              + "."]
    rows = [[f"`{r.src}` → `{r.dst}`", r.sgd_count, _f(r.median_step, ".0f"), _f(r.dL, ".4f"),
             _f(r.dlambda, ".2f") if not r.dlambda_se else _pm(r.dlambda, r.dlambda_se),
             _f(r.n_c, ".0f"), r.posterior_crossing, r.antecedent] for r in compare(out, sgd)]
    L += ["", "#### Bayesian antecedents of the observed SGD transitions", "",
          "dlambda from theory where the zoo has it, else from the SGLD estimates on the plateaus; "
          "predicted n_c from the free energy; posterior crossing from the measured phase masses (section 2).", ""]
    L += _table(["transition", "SGD runs", "median step", "dL", "dlambda", "predicted n_c", "posterior crossing",
                 "antecedent"], rows) if rows else ["No transition observed at this scale."]
    unseen = tr.bayesian_unseen
    if unseen:
        L += ["", f"Bayesian transitions out of visited phases never seen along SGD ({len(unseen)}): " + ", ".join(
            f"`{u.alpha}` → `{u.beta}` (n_c {u.n_c:.0f})" for u in unseen[:12]) + "."]
    for name in ("sgd_trajectory.png", "sgd_many.png"):
        rel = f"{fig_dir}/{name}" if fig_dir else name
        if (figs / rel).exists():
            L += ["", f"![{name}]({rel})"]
    return L + [""]


def _free_energy_section(out: Path, figs: Path) -> list[str]:
    """The measured free energies of `tms free-energy` (c = 6), if the stage ran."""
    found = sorted((out / "free_energy").glob("c6_*/summary_c6.json"))
    if not found:
        return []
    lines = free_energy.report_section(free_energy.load_summary(found[-1].with_suffix("")))
    if (figs / "free_energy_c6.png").exists():
        lines += ["", "![free energy c=6](free_energy_c6.png)"]
    return ["#" + x if x.startswith("## ") else x for x in lines] + [""]


def _timing_section(out: Path) -> list[str]:
    """Wall time of every stage as last run (from the stage markers)."""
    rows, total = [], 0.0
    recs = [(p, io.load_json(p)) for p in (out / "stages").glob("*.json")]
    for p, rec in sorted(recs, key=lambda pr: str(pr[1].get("finished", "")) if isinstance(pr[1], dict) else ""):
        sec = rec.get("seconds") if isinstance(rec, dict) else None
        if isinstance(sec, (int, float)):
            total += sec
            rows.append([f"`{p.stem}`", f"{sec:.0f}", rec.get("finished", "-")])
    if not rows:
        return []
    return (["## 5. Wall time per stage", "", "Seconds each stage took when it last ran (a reused stage keeps its "
             "time), on the machine that ran it.", ""] + _table(["stage", "seconds", "finished"], rows)
            + ["", f"Total: {total:.0f} s ({total / 60:.1f} min).", ""])


def _zoo_section(out: Path, figs: Path, cs) -> list[str]:
    """Section 1: every zoo point with its loss, lambda (theory and SGLD), prior, rank."""
    L: list[str] = []
    L += ["## 1. The k-gon zoo (r = 2)", "",
          "lambda (theory) = Hessian rank / 2 at minimally singular points; at 4-gon families L is "
          "only C^1 and lambda is an SGLD estimate on the population loss (stated nbeta), used "
          "only where the estimator's diagnostics do not flag it (escaped chains, step size).", ""]
    for c in cs:
        zoo = io.load_json(out / "zoo" / f"zoo_c{c}.json")
        est_path = out / "zoo_llc" / f"zoo_llc_c{c}.json"
        est = io.load_json(est_path) if est_path.exists() else dict(rows=[], settings={})
        by = {r["label"]: r for r in est["rows"]}
        rows = []
        for p in zoo["points"]:
            e = by.get(p["label"], {})
            flag = "" if e.get("trustworthy", True) else " (flagged)"
            rows.append([f"`{p['label']}`", _f(p["loss"], ".6f"), _f(p["llc"], ".1f"),
                         (_pm(e.get("estimate"), e.get("se")) + flag) if e else "-",
                         _f(p["prior"], ".4f"), _f(p["hessian_rank"], "d"), _f(p["grad_norm"], ".1e")])
        s = est.get("settings", {})
        L += [f"### c = {c}", "",
              f"SGLD: nbeta = {_f(est.get('nbeta'), '.1f')} (n = {_f(s.get('n'), 'g')}), eps {s.get('eps')}, "
              f"gamma {s.get('gamma')}, {s.get('n_chains')} chains x {s.get('n_burnin')} + {s.get('n_draws')} steps, seed {s.get('seed')}.", ""]
        L += _table(["label", "loss", "lambda (theory)", "lambda (SGLD)", "prior ‖w‖²/2", "Hessian rank", "‖grad L‖"], rows)
        fig = figs / f"zoo_c{c}.png"
        if fig.exists():
            L += ["", f"![zoo c={c}]({fig.name})"]
        L += [""]

    return L


def _precision_cells(d: dict) -> list[str]:
    """Rounds sampled (range over data sets), mean round trips per ladder, largest MC s.e."""
    rounds, trips = d.get("pt_rounds") or [], d.get("round_trips_seed") or []
    r = "-" if not rounds else (f"{min(rounds)}" if min(rounds) == max(rounds) else f"{min(rounds)}-{max(rounds)}")
    t = "-" if not trips else f"{np.mean(trips):.1f}"
    return [r, t, _f(d.get("mass_mc_se_max"), ".3f")]


def _posterior_section(out: Path, figs: Path, cs) -> list[str]:
    """Section 2: predicted and observed transitions and the posterior mass of every c."""
    L: list[str] = []
    L += ["## 2. Bayesian phase transitions in n", "",
          "Posterior mass per phase by replica exchange over the likelihood temperature (error "
          "bars over data sets); chain occupancy of plain chains is shown beside it on the figures "
          "and is not the posterior mass. Predicted n_c: root of n dL + dlambda log n + dc = 0. "
          "Observed: where the posterior mass of the later phase overtakes the earlier one on the grid "
          "('-' where either phase never holds 5% of the posterior).", ""]
    for c in cs:
        post = load_posterior_summary(out, c)
        if post is None:
            L += [f"### c = {c}", "", "(no posterior results)", ""]
            continue
        arrays, rec = post
        ns, mass, phases = arrays["ns"], arrays["mass"], rec["phases"]
        rows = [[f"`{t['alpha']}` → `{t['beta']}`", _f(t.get("dL"), ".4f"), _f(t.get("dlambda"), ".2f"),
                 _f(t["n_c"], ".0f"), mass_crossing(ns, mass, phases, t["alpha"], t["beta"])]
                for t in rec.get("transitions", []) if t["alpha"] in phases and t["beta"] in phases]
        L += [f"### c = {c}", "", f"n-grid {ns.tolist()}; phases seen: {', '.join(phases)}.", ""]
        if rows:
            L += _table(["transition", "dL", "dlambda", "predicted n_c", "observed crossing"], rows)
        else:
            L += ["No predicted transition between phases seen in this sweep."]
        if rec.get("omitted_transitions"):
            L += ["", rec["omitted_transitions"]]
        diag = rec.get("diagnostics", {})
        mrows = [[str(n)] + [_pm(float(mass[i, j]), float(arrays["mass_se"][i, j])) for j in range(len(phases))]
                 + _precision_cells(diag.get(str(int(n)), {})) for i, n in enumerate(ns)]
        L += ["", "Posterior mass (± s.e. over data sets); sampling rounds per data set, round trips per "
              "ladder and the largest Monte Carlo s.e. of a mass (the precision target stops a data set):", ""]
        L += _table(["n"] + [f"`{p}`" for p in phases] + ["rounds", "round trips", "MC s.e."], mrows)
        fig = figs / f"posterior_c{c}.png"
        if fig.exists():
            L += ["", f"![posterior c={c}]({fig.name})"]
        L += [""]

    return L


def _susceptibility_section(out: Path, figs: Path, cs) -> list[str]:
    """Feature susceptibilities and the BIF against n per c (SPEC 7), if the stage ran."""
    L: list[str] = []
    for c in cs:
        stem = out / "susceptibility" / f"susceptibility_c{c}"
        if not io.result_exists(stem):
            continue
        arrays, rec = io.load_result(stem)
        rows = [[str(int(n))] + [f"{arrays[f'{k}_diagonal'][i]:.3g} ± {arrays[f'{k}_diagonal_se'][i]:.2g}"
                                 for k in ("norm", "bias", "feature_loss", "influence")]
                for i, n in enumerate(arrays["ns"])]
        marks = [f"mass crossing `{x['alpha']}` → `{x['beta']}`: {x['n']}" for x in rec.get("crossings", [])]
        marks += [f"predicted n_c `{t['alpha']}` → `{t['beta']}`: {t['n_c']:.0f}" for t in rec.get("transitions", [])]
        L += [f"### c = {c}", ""] + _table(["n", "|W_k|² self", "b_k self", "L_k self", "BIF self"], rows)
        L += ["", "; ".join(marks) + "."] if marks else []
        if (figs / f"susceptibility_c{c}.png").exists():
            L += ["", f"![susceptibility c={c}](susceptibility_c{c}.png)"]
        L += [""]
    if not L:
        return []
    return ["## 3b. Susceptibilities and the Bayesian influence function", "",
            "Symmetrised self responses (mean over k of chi[k, k] = -n Cov(phi_k, L'_{n,k} - L_n), phi_k one of "
            "|W_k|², b_k, the feature-k loss L_k, to upweighting feature k's inputs) and the BIF's diagonal (-mean "
            "Cov of per-sample losses of one feature), from the posterior stages' saved draws; ± s.e. across "
            "ladders, averaged over data sets (docs/susceptibility.md).", ""] + L


def write_report(out: str | Path, figs: str | Path, *, scale: str, seed: int, cs=(4, 5, 6)) -> Path:
    out, figs = Path(out), Path(figs)
    L = [f"# tms reproduce: report ({scale} scale, seed {seed})", "",
         f"Written {time.strftime('%Y-%m-%d %H:%M')} from the results in `{out}`. "
         "Science: Chen, Lau, Mendel, Wei, Murfet (2023), arXiv 2310.06301. " + CAVEAT, ""]
    if scale == "tiny":
        L += ["**Tiny smoke-test scale: the numbers below only show that the pipeline runs.**", ""]
    L += _zoo_section(out, figs, cs) + _posterior_section(out, figs, cs)

    # ---- dynamical --------------------------------------------------------------------
    L += ["## 3. Dynamical transitions along SGD", ""]
    L += _sgd_section(out, figs, "sgd", "")
    L += ["### From random starts (W ~ N(0, sigma^2), b = 0)", ""]
    L += _sgd_section(out, figs, "sgd_random", "random")
    L += _free_energy_section(out, figs)
    L += _susceptibility_section(out, figs, cs)

    # ---- settings ---------------------------------------------------------------------
    L += ["## 4. Every setting and seed", "",
          "Each stage's settings as run (the sub-commands' own records beside their results hold the rest).", "",
          "```json"]
    stages = {p.stem: io.load_json(p) for p in sorted((out / "stages").glob("*.json"))}
    L += [json.dumps(stages, indent=1, sort_keys=True), "```", ""]
    L += _timing_section(out)
    path = figs / "REPORT.md"
    text = "\n".join(L)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path
