"""Figure of the measured free energies (SPEC 3): F_n(alpha) - F_n(beta) against n beside the
lab's asymptotic formula and the formula with measured O(1) terms, and lambda three ways;
drawn from a saved summary (tms.bayes.free_energy.measure.save_summary) only."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tms.core import io
from tms.report.plots import pyplot, save_figure

STYLE = {"paper": ("0.3", "--", "asymptotic formula n dL + dlambda log n + d|w*|^2/2"),
         "measured": ("C3", "-", "formula + measured O(1) (fitted constant)"),
         "laplace": ("C2", ":", "formula + computed O(1) (n → ∞): multiplicity, Hessian, orbit, flat volume"),
         "finite": ("C4", "-.", "... + data term (copy of lowest L_n) + zero-column volume at n: all computed")}


def _pair_panel(ax, pair: dict, ns: np.ndarray, n_fine: np.ndarray, reading: str, beta_lik: float) -> None:
    dF, se = np.asarray(pair["dF"], float), np.asarray(pair["se"], float)
    ok = np.isfinite(dF)
    ax.errorbar(ns[ok], dF[ok], yerr=2 * se[ok], fmt="o", color="k", ms=5, capsize=3, zorder=5,
                label=f"measured -log(P_{pair['alpha']} / P_{pair['beta']}) (\u00b12 s.e.)")
    lo, hi = ns.min() / 1.6, ns.max() * 1.6
    sel = (n_fine >= lo) & (n_fine <= hi)
    for key, (col, ls, lab) in STYLE.items():
        y = pair.get("curves", {}).get(key)
        if y is not None:
            ax.plot(n_fine[sel], np.asarray(y, float)[sel], ls, color=col, lw=1.6, label=lab)
    ax.axhline(0, color="0.6", lw=0.8)
    nc = pair.get("n_c", {})
    top, span = ax.get_ylim()[1], ax.get_ylim()[1] - ax.get_ylim()[0]
    for k, (key, col) in enumerate((("paper", "0.3"), ("all computed", "C4"), ("observed", "k"))):
        v = nc.get(key)
        if v is not None and lo <= v <= hi:  # labels staggered so that close n_c stay readable
            ax.axvline(v, color=col, ls=":", lw=1)
            ax.text(v, top - 0.09 * k * span, f" {key}\n n_c={v:.0f}", fontsize=7, va="top", color=col)
    ax.set_xscale("log")
    ax.set_xlabel("sample size n")
    ax.set_ylabel(f"F_n({pair['alpha']}) \u2212 F_n({pair['beta']})  [nats]")
    ax.set_title(f"measured free-energy difference, {reading} reading of the samples (\u03b2_lik = {beta_lik:g})",
                 fontsize=9)
    ax.legend(fontsize=6.5, loc="lower right")


def _lambda_panel(ax, rows: list[dict]) -> None:
    x = np.arange(len(rows))
    th = [r["theory"] if r["theory"] is not None else np.nan for r in rows]
    ax.plot(x - 0.15, th, "x", color="k", ms=9, mew=2, label="zoo theory (Hessian rank / 2)")
    ax.errorbar(x, [r["sgld"] for r in rows], yerr=[2 * r["sgld_se"] for r in rows], fmt="o", color="C0",
                capsize=3, label="SGLD at the zoo point (\u00b12 s.e.)")
    ax.errorbar(x + 0.15, [r["bayes"] for r in rows], yerr=[2 * r["bayes_se"] for r in rows], fmt="s",
                color="C1", capsize=3, label="Bayes: slope of E_\u03b2[n L_n | phase] in 1/\u03b2 (\u00b12 s.e.)")
    ax.set_xticks(x)
    ax.set_xticklabels([r["label"] for r in rows])
    ax.set_ylabel("learning coefficient \u03bb")
    ax.set_title("\u03bb three ways", fontsize=9)
    ax.legend(fontsize=6.5, loc="upper right")


def plot_free_energy(summary_path, fig_path, *, reading: str | None = None, pair: int = 0) -> Path:
    """Draw the primary pair `pair` (index into the summary's primary pairs) of `reading`
    ('zoo' or 'hull'; default the summary's own) and the lambda table. Returns the path."""
    arrays, rec = io.load_result(summary_path)
    reading = reading or rec["settings"].get("reading", "zoo")
    prim = rec["readings"][reading]["primary"]
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 5.2), gridspec_kw=dict(width_ratios=[1.6, 1]))
    if prim and pair < len(prim) and prim[pair].get("theory"):
        _pair_panel(axes[0], prim[pair], np.asarray(arrays["ns"], float), np.asarray(arrays["n_fine"], float), reading,
                    rec["settings"]["beta_lik"])
    else:
        axes[0].text(0.5, 0.5, "no pair with theory held mass in this sweep", ha="center", transform=axes[0].transAxes)
    _lambda_panel(axes[1], rec["lambda_table"])
    st = rec["settings"]
    lam = st["local"]
    fig.text(0.01, 0.01, (
        f"c = {st['c']}, r = 2, p(w|D_n) \u221d N(0,I) exp(-\u03b2_lik n L_n). Masses by replica exchange "
        f"(K={st['sweep']['n_temps']} temperatures, R={st['sweep']['replicas']} ladders, S={st['sweep']['seeds']} "
        "data sets per n); error bars by the delta method over ladders, pooled over data sets. The lab's formula "
        "drops every O(1) term but |w*|\u00b2/2.\nBayes \u03bb: ladders confined to the phase, n = "
        f"{lam['n']}, \u03b2 from {lam['beta_lo']:g} to 1, jackknife over ladders. SGLD: population loss, "
        f"n\u03b2 = n/log n with n = {st['sgld']['n']:g}."), fontsize=6.5, va="bottom")
    return save_figure(fig, fig_path, 0.07)
