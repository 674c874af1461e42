"""Figure of the k-gon zoo: one panel per family, columns of W as arrows coloured by bias."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from tms.report.plots import pyplot


def plot_zoo(rows: list[dict], path: str | Path, c: int, dpi: int = 72) -> Path:
    """Draw `rows` (tms.theory.zoo.CriticalPoint.as_record rows: label, loss, llc, W, b, smooth, notes) to `path`.

    Each panel: the c columns of W as arrows from the origin, coloured by their bias (zero
    columns as a dot at the origin, ringed if the bias is positive); title: label, loss, lambda.
    """
    n = len(rows)
    ncol = min(6, n)
    nrow = math.ceil(n / ncol)
    plt = pyplot()
    from matplotlib import cm, colors  # here only, as pyplot (tms.report.plots)
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.0 * ncol, 2.15 * nrow + 0.6), squeeze=False)
    bmax = max(1e-9, max(abs(v) for r in rows for v in r["b"]))
    norm = colors.TwoSlopeNorm(vmin=-bmax, vcenter=0.0, vmax=max(bmax * 0.1, 0.1))
    cmap = plt.get_cmap("coolwarm")
    lim = 1.15 * max(1.0, max(float(np.hypot(*np.asarray(r["W"]))[...].max()) for r in rows))
    for ax, r in zip(axes.flat, rows):
        W, b = np.asarray(r["W"]), np.asarray(r["b"])
        zero = np.hypot(W[0], W[1]) < 1e-12
        for j in np.flatnonzero(~zero):
            x, y = W[:, j]
            ax.plot([0, x], [0, y], color="0.35", lw=3.4, alpha=0.45, solid_capstyle="butt", zorder=1)
            ax.annotate("", xy=(x, y), xytext=(0, 0), zorder=2,
                        arrowprops=dict(arrowstyle="-|>", color=cmap(norm(b[j])), lw=2.0, mutation_scale=10))
        n_plus, n_neg = int((zero & (b > 0)).sum()), int((zero & (b <= 0)).sum())
        if n_neg:
            ax.plot(0, 0, "o", ms=4, color=cmap(norm(-1.0)), zorder=3)
        if n_plus:
            ax.plot(0, 0, "o", ms=8, mfc=cmap(norm(b[zero & (b > 0)][0])), mec="k", zorder=4)
        if n_plus or n_neg:
            ax.text(0.03, 0.03, f"zero cols: {n_plus}+ {n_neg}−", transform=ax.transAxes, fontsize=6.5)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        if r["llc"] is not None:
            lam = f"λ={r['llc']:g}"
        elif not r["smooth"]:
            lam = "λ: C¹ only"
        else:
            lam = "λ: saddle" if any("saddle" in s for s in r["notes"]) else "λ: n/a"
        ax.set_title(f"{r['label']}\nL={r['loss']:.5f}  {lam}", fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(f"TMS k-gon zoo, r = 2, c = {c}: critical points sorted by loss "
                 "(arrows: columns of W, colour: bias; dots: zero columns, ringed = positive bias)",
                 fontsize=9)
    sm = cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=axes, fraction=0.02, pad=0.01, label="bias b_i")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
