"""Figures of the dynamical experiment (SPEC 4), drawn from saved results only.

Inputs: the training result of `tms train` (tms.dynamics.train.save_train) and the analysis result
of `tms transitions` (levels, plateaus, LLC along the trajectories).
"""
from __future__ import annotations

import numpy as np

from tms.core import io
from tms.report.plots import pyplot
from tms.dynamics.transitions import choose_run


def _levels(rec: dict, lo: float, hi: float):
    lv = rec["levels"]
    return [(lab, L) for lab, L in zip(lv["labels"], lv["loss"]) if lo <= L <= hi]


def _loss_range(L: np.ndarray, first=None) -> tuple[float, float]:
    """y-range of loss curves L (T, ...): from the lowest loss up to a bit above the loss at
    the start of the first plateaus (`first`: indices into L's first axis, per column), so a
    high random-start loss does not squash the levels; without plateaus, the 98% quantile."""
    lo = float(L.min())
    hi = float(np.quantile(L, 0.98))
    if first is not None and len(first):
        top = float(max(L[i].max() for i in first))
        hi = min(hi, top + 0.5 * (top - lo))
    pad = 0.05 * (hi - lo + 1e-6)
    return lo - pad, hi + pad


def _first_plateaus(an: dict) -> list:
    runs, starts = an["plateau_run"], an["plateau_start"]
    return [int(starts[runs == r].min()) for r in np.unique(runs)]


def _draw_levels(ax, rec, lo, hi, label_side=True):
    for lab, L in _levels(rec, lo, hi):
        ax.axhline(L, ls="--", lw=0.7, color="0.5", zorder=0)
        if label_side:
            ax.annotate(lab, (1.0, L), xycoords=("axes fraction", "data"), xytext=(3, 0),
                        textcoords="offset points", va="center", fontsize=7, color="0.3")


def sgd_trajectory(train_path, trans_path, out, run: int | None = None) -> int:
    """One run: the columns of W at the middle of each plateau (each labelled with its bias
    b_i), the loss on a log step axis with dashed zoo levels, and the LLC estimates beneath.
    Returns the run drawn."""
    tr, trec = io.load_result(train_path)
    an, rec = io.load_result(trans_path)
    ts = trec["settings"]  # the TrainSettings record
    if run is None:
        run = choose_run({**an, "pop_loss": tr["pop_loss"]})
    if not 0 <= run < tr["W"].shape[1]:
        raise ValueError(f"run must be in 0..{tr['W'].shape[1] - 1}, got {run}")
    sel = an["plateau_run"] == run
    starts, ends, labs = an["plateau_start"][sel], an["plateau_end"][sel], np.asarray(rec["plateau_labels"])[sel]
    snaps = [(int((s + e) // 2), lab) for s, e, lab in zip(starts, ends, labs)] or [(len(tr["steps"]) - 1, "(no plateau)")]
    n_snap = max(len(snaps), 3)
    plt = pyplot()
    fig = plt.figure(figsize=(max(8, 2.2 * n_snap), 9))
    gs = fig.add_gridspec(3, n_snap, height_ratios=[1.0, 1.3, 1.0], hspace=0.45)
    lim = 1.1 * float(np.abs(tr["W"][:, run]).max())
    for j, (t, lab) in enumerate(snaps):
        geo = str(an["classify_label"][t, run]) if "classify_label" in an else lab
        _draw_columns(fig.add_subplot(gs[0, j]), tr["W"][t, run], tr["b"][t, run], lim)
        fig.axes[-1].set_title(f"{lab}  (step {int(tr['steps'][t])})" + ("" if geo == lab else f"\ngeometry: {geo}"),
                               fontsize=8)
    ax = fig.add_subplot(gs[1, :])
    _draw_loss(ax, tr, rec, run, starts, ends)
    ax.set_title(f"run {run}: {' -> '.join(labs) if len(labs) else 'no plateau'}  "
                 f"(n={ts['n']}, batch {ts['batch_size']}, lr {ts['lr']}, init {ts['init']}; "
                 f"dashed: zoo levels, shaded: plateaus)", fontsize=8)
    _draw_llc(fig.add_subplot(gs[2, :], sharex=ax), tr["steps"].astype(float) + 1, an, rec, run, labs)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return run


def _draw_columns(ax, W: np.ndarray, b: np.ndarray, lim: float) -> None:
    """The columns of W (2, c) as arrows from the origin, each labelled with its bias."""
    small = []
    for i in range(W.shape[1]):
        col = f"C{i}"
        ax.plot([0, W[0, i]], [0, W[1, i]], color=col, lw=1.5)
        ax.plot(W[0, i], W[1, i], "o", color=col, ms=4)
        if np.hypot(W[0, i], W[1, i]) > 0.15 * lim:
            ax.annotate(f"{b[i]:+.2f}", (W[0, i], W[1, i]), fontsize=6, color=col, xytext=(2, 2),
                        textcoords="offset points")
        else:
            small.append(f"b{i}={b[i]:+.2f}")
    if small:  # short columns: their biases listed instead of piled up at the origin
        ax.text(0.02, 0.02, "\n".join(small), transform=ax.transAxes, fontsize=5.5, va="bottom", color="0.25")
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_loss(ax, tr: dict, rec: dict, run: int, starts, ends) -> None:
    """Population and training loss of one run on a log step axis, zoo levels, plateaus shaded."""
    x = tr["steps"].astype(float) + 1
    L = tr["pop_loss"][:, run]
    ax.plot(x, L, color="C0", lw=1.5, label="population loss L")
    ax.plot(x, tr["train_loss"][:, run], color="C1", lw=0.8, alpha=0.7, label="training loss $L_n$")
    lo, hi = _loss_range(np.c_[L, tr["train_loss"][:, run]], starts[:1] if len(starts) else None)
    _draw_levels(ax, rec, lo, hi)
    for s, e in zip(starts, ends):
        ax.axvspan(x[s], x[e], color="C2", alpha=0.08)
    ax.set_xscale("log")
    ax.set_ylim(lo, hi)
    ax.set_ylabel("loss")
    ax.legend(fontsize=7, loc="lower left")


def _draw_llc(ax2, x, an: dict, rec: dict, run: int, labs) -> None:
    """LLC estimates along one run (flagged ones as crosses) and the zoo's theory lines."""
    if "llc" in an:
        j = an["llc_index"]
        ok = an["llc_ok"][:, run].astype(bool)
        v, se = an["llc"][:, run], an["llc_se"][:, run]
        ax2.errorbar(x[j][ok], v[ok], yerr=2 * se[ok], fmt="o-", ms=3, lw=1, color="C3", label="LLC estimate (+-2 se)")
        if (~ok).any():
            ax2.plot(x[j][~ok], v[~ok], "x", color="0.5", label="flagged by diagnostics")
        lv = rec["levels"]
        for lab in dict.fromkeys(labs):
            k = lv["labels"].index(lab)
            if lv["llc"][k] is not None:
                ax2.axhline(lv["llc"][k], ls="--", lw=0.7, color="0.5")
                ax2.annotate(f"{lab}: {lv['llc'][k]:g}", (1.0, lv["llc"][k]), xycoords=("axes fraction", "data"),
                             xytext=(3, 0), textcoords="offset points", va="center", fontsize=7, color="0.3")
        s = rec["llc_settings"]
        ax2.set_title(f"local learning coefficient (SGLD: nbeta={s['nbeta']:.1f}, eps={s['eps']}, gamma={s['gamma']}, "
                      f"{s['n_chains']} chains x {s['n_burnin']} + {s['n_draws']} steps; dashed: theory where the zoo "
                      "has it)", fontsize=8)
        ax2.legend(fontsize=7, loc="upper left")
    else:
        ax2.text(0.5, 0.5, "LLC not estimated (tms transitions --no-llc)", ha="center", transform=ax2.transAxes)
    ax2.set_xscale("log")
    ax2.set_xlabel("SGD step + 1")
    ax2.set_ylabel(r"$\hat\lambda$")


def sgd_many(train_path, trans_path, out) -> None:
    """Every run's population loss on a log step axis, with the zoo levels labelled."""
    tr, trec = io.load_result(train_path)
    an, rec = io.load_result(trans_path)
    x = tr["steps"].astype(float) + 1
    L = tr["pop_loss"]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 5.5))
    cmap = plt.get_cmap("viridis")
    R = L.shape[1]
    for r in range(R):
        ax.plot(x, L[:, r], lw=0.8, alpha=0.75, color=cmap(r / max(R - 1, 1)))
    lo, hi = _loss_range(L, _first_plateaus(an))
    _draw_levels(ax, rec, lo, hi)
    ax.set_xscale("log")
    ax.set_ylim(lo, hi)
    ax.set_xlabel("SGD step + 1")
    ax.set_ylabel("population loss L")
    counts = rec.get("sequence_counts", [])
    top = "; ".join(f"{' -> '.join(s) or 'none'}: {k}" for s, k in counts[:4])
    ts = trec["settings"]
    ax.set_title(f"{R} SGD runs (n={ts['n']}, batch {ts['batch_size']}, lr {ts['lr']}, init {ts['init']}); "
                 f"dashed: zoo energy levels\nplateau sequences: {top}", fontsize=8)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
