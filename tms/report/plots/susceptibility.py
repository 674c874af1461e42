"""Figure of the feature susceptibilities against n (docs/SPEC.md section 7), from a saved
`tms susceptibility` summary only: the symmetrised self responses of ||W_k||^2, b_k and the
feature-k loss to upweighting feature k, with the measured posterior mass crossings and the
predicted n_c marked (a susceptibility should peak where two phases share the posterior)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tms.core import io
from tms.report.plots import pyplot, save_figure

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


def transition_ns(ns: np.ndarray, rec: dict) -> list[tuple[str, int]]:
    """Three grid n for the BIF panels: below, at and above the first measured mass crossing of
    the record (its predicted pairs come first) on the grid (at: the grid n nearest it; below / above: the nearest at a factor 1.5 or more
    away, else the grid's ends); without a crossing the grid's ends and middle."""
    found = []
    for x in rec.get("crossings", []):
        try:
            found.append(float(x["n"]))
        except ValueError:
            continue
    if not found:
        return [("below", int(ns[0])), ("middle", int(ns[len(ns) // 2])), ("above", int(ns[-1]))]
    cross = found[0]
    at = int(ns[np.abs(np.log(ns / cross)).argmin()])
    below = [n for n in ns if n <= cross / 1.5]
    above = [n for n in ns if n >= cross * 1.5]
    return [("below", int(below[-1] if below else ns[0])), ("at", at), ("above", int(above[0] if above else ns[-1]))]


def _bif_panels(fig, axes, arrays: dict, rec: dict, ns: np.ndarray) -> None:
    """The grouped BIF matrix (feature x feature) at three n, one colour scale per panel."""
    if "influence_matrix" not in arrays:
        for ax in axes:
            ax.set_axis_off()
        return
    for ax, (where, n) in zip(axes, transition_ns(ns, rec)):
        i = int(np.flatnonzero(ns == n)[0])
        m = arrays["influence_matrix"][i]
        lim = float(np.nanmax(np.abs(m))) or 1.0
        im = ax.imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(f"BIF, n = {n} ({where} the crossing)", fontsize=8)
        ax.set_xlabel("feature of sample l", fontsize=7)
        ax.set_ylabel("feature of sample k", fontsize=7)
        ax.tick_params(labelsize=6)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=6)


def plot_susceptibility(summary_path, fig_path) -> Path:
    """One panel per observable: the symmetrised self susceptibility (mean diagonal of chi,
    band +-2 s.e.) against n on a log axis, with the transitions marked (and the local SGLD
    estimate where the summary has one); below, the grouped BIF matrix below, at and above the
    first measured mass crossing. Returns the figure path."""
    arrays, rec = io.load_result(summary_path)
    ns = np.asarray(arrays["ns"], dtype=float)
    plt = pyplot()
    fig = plt.figure(figsize=(8.5, 2.4 * len(OBSERVABLES) + 3.4))
    grid = fig.add_gridspec(len(OBSERVABLES) + 1, 3, height_ratios=[1] * len(OBSERVABLES) + [1.25])
    axes = [fig.add_subplot(grid[0, :])]
    axes += [fig.add_subplot(grid[i, :], sharex=axes[0]) for i in range(1, len(OBSERVABLES))]
    local = rec.get("local")
    for ax, name in zip(axes, OBSERVABLES):
        value, se = arrays[f"{name}_diagonal"], arrays[f"{name}_diagonal_se"]
        ax.plot(ns, value, "-o", ms=4, lw=2, color="tab:blue", label="self susceptibility (symmetrised)")
        ax.fill_between(ns, value - 2 * se, value + 2 * se, color="tab:blue", alpha=0.2, lw=0)
        if local is not None and f"local_{name}_diagonal" in arrays:
            ax.errorbar(ns, arrays[f"local_{name}_diagonal"], 2 * arrays[f"local_{name}_diagonal_se"], fmt="--s",
                        ms=3, lw=1.2, color="tab:orange", label=f"local SGLD at {local}")
        ax.axhline(0, color="0.6", lw=0.8)
        _mark_transitions(ax, rec, ns)
        ax.set_ylabel(TITLES[name], fontsize=8)
        ax.set_xscale("log")
    axes[0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes[-1].set_xlabel("sample size n")
    _bif_panels(fig, [fig.add_subplot(grid[-1, j]) for j in range(3)], arrays, rec, ns)
    sweep = rec.get("sweep", {})
    axes[0].set_title(f"TMS r={sweep.get('r', '?')}, c={rec['c']}: feature susceptibilities vs n  "
                      f"(\u03b2_lik = {rec['beta_lik']:g})", fontsize=10)
    caption = ("\u03c7[k, i] = -n \u03b2_lik Cov(\u03c6_k, L'_{n,i} - L_n): response of \u03c6_k to upweighting "
               "feature i's inputs, from the saved \u03b2 = 1 ladder draws; shown: mean over k of \u03c7[k, k], "
               "averaged over data sets, band \u00b12 s.e. (batch means).\nRed: n where the measured posterior "
               "mass of the later phase overtakes the earlier one; dashed: predicted n_c (zoo free energies). "
               "Bottom: BIF(a, b) = -mean Cov(l_k, l_l), samples k of feature a, l of feature b.")
    fig.text(0.01, 0.005, caption, fontsize=6.5, va="bottom", wrap=True)
    return save_figure(fig, fig_path, 0.045)
