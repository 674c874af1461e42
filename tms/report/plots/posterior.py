"""Figure of the Bayesian experiment: posterior phase mass against n (SPEC 3), from a saved
sweep summary (tms.bayes.posterior.save_summary) only."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tms.core import io
from tms.report.plots import pyplot, save_figure


def plot_phase_sweep(summary_path, fig_path, *, min_mass: float = 0.02) -> Path:
    """Draw mass (bands: +-2 s.e.) and chain occupancy of every phase whose mass or occupancy
    reaches `min_mass` somewhere, with vertical lines at the predicted n_c of transitions
    between phases shown. Returns the figure path."""
    arrays, rec = io.load_result(summary_path)
    ns = arrays["ns"]
    phases = rec["phases"]
    st = rec["settings"]
    show = [i for i, p in enumerate(phases)
            if max(arrays["mass"][:, i].max(), arrays["occupancy"][:, i].max()) >= min_mass]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 5.6))
    colors = plt.get_cmap("tab10")
    for j, i in enumerate(show):
        col = colors(j % 10)
        m, se = arrays["mass"][:, i], arrays["mass_se"][:, i]
        ax.plot(ns, m, "-o", color=col, ms=4, lw=2, label=f"{phases[i]}: posterior mass")
        ax.fill_between(ns, np.clip(m - 2 * se, 0, 1), np.clip(m + 2 * se, 0, 1), color=col, alpha=0.2, lw=0)
        ax.plot(ns, arrays["occupancy"][:, i], ":", color=col, lw=1.2, label=f"{phases[i]}: chain occupancy (not mass)")
    shown = {phases[i] for i in show}
    trans = [t for t in rec.get("transitions", []) if t.get("alpha") in shown and t.get("beta") in shown
             and ns.min() / 2 <= t["n_c"] <= ns.max() * 2]
    for k, t in enumerate(trans):
        ax.axvline(t["n_c"], color="0.3", ls="--", lw=1)
        ax.text(t["n_c"], 1.02 - 0.06 * (k % 4), f" {t['alpha']}\u2192{t['beta']}\n n_c={t['n_c']:.0f}",
                fontsize=7, va="top", color="0.2")
    ax.set_xscale("log")
    ax.set_xlabel("sample size n")
    ax.set_ylabel("fraction")
    ax.set_ylim(-0.02, 1.05)
    ax.set_title(f"TMS r={st['r']}, c={st['c']}: posterior phase mass vs n  "
                 f"(likelihood inverse temperature \u03b2_lik = {st['beta_lik']:g})", fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    omitted = rec.get("omitted_transitions", "")
    caption = (
        f"p(w|D_n) \u221d N(0,I) exp(-\u03b2_lik n L_n(w)). Mass: replica exchange over \u03b2 (K={st['n_temps']} "
        f"temperatures from {st['beta_min']:g} to 1, R={st['replicas']} ladders) per data set, mean over "
        f"S={st['seeds']} data sets, band \u00b12 s.e.; dotted: occupancy of {st['n_chains']} plain chains per data set.\n"
        "Dashed: predicted n_c, root of n\u03b2_lik \u0394L + \u0394\u03bb log(n\u03b2_lik) + \u0394(|w*|\u00b2/2) = 0 "
        "(F_n = nL + \u03bb log n + |w*|\u00b2/2; other O(1) terms dropped)." + (f"\n{omitted}" if omitted else "")
    )
    fig.text(0.01, 0.01, caption, fontsize=6.5, va="bottom", wrap=True)
    return save_figure(fig, fig_path, 0.1)
