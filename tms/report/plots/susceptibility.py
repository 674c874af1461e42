"""Figure of the feature susceptibilities against n (docs/SPEC.md section 7), from a saved
`tms susceptibility` summary only: the symmetrised self responses of ||W_k||^2, b_k and the
feature-k loss to upweighting feature k, with the measured posterior mass crossings and the
predicted n_c marked (a susceptibility should peak where two phases share the posterior)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from tms.core import io
from tms.report.plots import save_figure

OBSERVABLES = ("norm", "bias", "feature_loss")  # FeatureResponse fields, one panel each
TITLES = dict(norm="self response of |W_k|\u00b2", bias="self response of b_k",
              feature_loss="self response of L_k (feature-k loss)")


def _mark_transitions(ax, rec: dict, ns: np.ndarray) -> None:
    """Solid lines at the measured mass crossings (numbers only), dashed at the predicted n_c."""
    lo, hi = ns.min() / 2, ns.max() * 2
    for x in rec.get("crossings", []):
        try:
            n = float(x["n"])
        except ValueError:  # '< n', '> n', '-': no crossing on the grid
            continue
        ax.axvline(n, color="tab:red", lw=1.2, alpha=0.8,
                   label=f"mass crossing {x['alpha']}\u2192{x['beta']}: n={n:.0f}")
    for t in rec.get("transitions", []):
        if lo <= t["n_c"] <= hi:
            ax.axvline(t["n_c"], color="0.3", ls="--", lw=1,
                       label=f"predicted n_c {t['alpha']}\u2192{t['beta']}: {t['n_c']:.0f}")


def plot_susceptibility(summary_path, fig_path) -> Path:
    """One panel per observable: the symmetrised self susceptibility (mean diagonal of chi,
    band +-2 s.e.) against n on a log axis, with the transitions marked. Returns the figure path."""
    arrays, rec = io.load_result(summary_path)
    ns = np.asarray(arrays["ns"], dtype=float)
    fig, axes = plt.subplots(len(OBSERVABLES), 1, figsize=(8.5, 2.6 * len(OBSERVABLES) + 1), sharex=True)
    for ax, name in zip(axes, OBSERVABLES):
        value, se = arrays[f"{name}_diagonal"], arrays[f"{name}_diagonal_se"]
        ax.plot(ns, value, "-o", ms=4, lw=2, color="tab:blue", label="self susceptibility (symmetrised)")
        ax.fill_between(ns, value - 2 * se, value + 2 * se, color="tab:blue", alpha=0.2, lw=0)
        ax.axhline(0, color="0.6", lw=0.8)
        _mark_transitions(ax, rec, ns)
        ax.set_ylabel(TITLES[name], fontsize=8)
        ax.set_xscale("log")
    axes[0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes[-1].set_xlabel("sample size n")
    sweep = rec.get("sweep", {})
    axes[0].set_title(f"TMS r={sweep.get('r', '?')}, c={rec['c']}: feature susceptibilities vs n  "
                      f"(\u03b2_lik = {rec['beta_lik']:g})", fontsize=10)
    caption = ("\u03c7[k, i] = -n \u03b2_lik Cov(\u03c6_k, L'_{n,i} - L_n): response of \u03c6_k to upweighting "
               "feature i's inputs, from the saved \u03b2 = 1 ladder draws; shown: mean over k of \u03c7[k, k], "
               "averaged over data sets, band \u00b12 s.e. (batch means).\nRed: n where the measured posterior "
               "mass of the later phase overtakes the earlier one; dashed: predicted n_c (zoo free energies).")
    fig.text(0.01, 0.01, caption, fontsize=6.5, va="bottom", wrap=True)
    return save_figure(fig, fig_path, 0.07)
