"""Figures of the census of any (r, c) (tms.theory.census), from saved results only: the census by
loss with lambda and index, 3-D views of the columns of the lowest points, and the r = 3 study's
figures (tms.experiments.beyond_r2's folder)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tms.report.plots import pyplot, save_figure
from tms.report.plots.posterior import plot_phase_sweep
from tms.theory.census import Census

KIND_MARKERS = {"min": "o", "min?": "D", "saddle": "x"}


def plot_census(census_path, fig_path, *, max_points: int = 40) -> Path:
    """The census by loss: each of the lowest `max_points` points at (loss, index), marker by kind
    (min, min? = no descent to second order, saddle), annotated with its label and lambda (rank/2
    where minimally singular, else '?'). Returns the figure path."""
    cs = Census.load(census_path)
    pts = cs.points[:max_points]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 6))
    for kind, marker in KIND_MARKERS.items():
        sel = [q for q in pts if q.kind == kind]
        if sel:
            ax.scatter([q.loss for q in sel], [q.index for q in sel], marker=marker, s=36, label=kind)
    for k, q in enumerate(pts):
        lam = "?" if q.llc is None else f"{q.llc:g}"
        ax.annotate(f"{q.label} \u03bb={lam}", (q.loss, q.index), fontsize=6, rotation=30,
                    xytext=(3, 3 + 6 * (k % 3)), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("population loss L")
    ax.set_ylabel("index (negative Hessian eigenvalues)")
    ax.set_title(f"Census of critical points, r={cs.r}, c={cs.c}: {len(cs.points)} points from {cs.n_starts} "
                 f"starts ({cs.n_critical} reached |grad| < 1e-10)", fontsize=10)
    ax.legend(fontsize=8)
    fig.text(0.01, 0.01, "\u03bb = rank/2 at C^2 minimally singular minima; '?' where L is only C^1 (one-sided Hessian, "
             "index of one piece) or not minimally singular. Labels: frame names, else k[rR:orbits]; + positive-bias "
             "zero column, - switched-off vertex.", fontsize=6.5, va="bottom", wrap=True)
    return save_figure(fig, fig_path, 0.06)


def _draw_columns(ax, W: np.ndarray, title: str) -> None:
    """The columns of W (3, c) as arrows from the origin, zero columns left out."""
    plt = pyplot()
    lim = max(1e-9, float(np.abs(W).max()))
    for i in range(W.shape[1]):
        if np.linalg.norm(W[:, i]) > 1e-6:
            ax.quiver(0, 0, 0, *W[:, i], arrow_length_ratio=0.1, lw=1.2, color=plt.get_cmap("tab10")(i % 10))
            ax.text(*(1.08 * W[:, i]), str(i), fontsize=6)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_zlim(-lim, lim)
    ax.set_title(title, fontsize=7)
    ax.tick_params(labelsize=5)


def plot_columns_3d(census_path, fig_path, *, n_points: int = 6, kinds: tuple = ("min", "min?")) -> Path:
    """3-D views of the columns W_i of the n_points lowest census points of the given kinds (r = 3;
    a point of r = 2 is drawn in its plane). Returns the figure path."""
    cs = Census.load(census_path)
    pts = [q for q in cs.points if q.kind in kinds][:n_points]
    cols = min(3, max(1, len(pts)))
    rows = max(1, -(-len(pts) // cols))
    plt = pyplot()
    fig = plt.figure(figsize=(3.4 * cols, 3.2 * rows + 0.4))
    for k, q in enumerate(pts):
        W = np.zeros((3, cs.c))
        W[: min(3, cs.r)] = q.W.numpy()[:3]
        ax = fig.add_subplot(rows, cols, k + 1, projection="3d")
        _draw_columns(ax, W, f"{q.label}\nL={q.loss:.6f}, {q.kind}")
    fig.text(0.01, 0.01, f"Columns of the lowest local minima of the census, r={cs.r}, c={cs.c} (canonical forms; "
             "zero columns omitted).", fontsize=6.5, va="bottom")
    return save_figure(fig, fig_path, 0.04)


def plot_beyond_r2(folder, figures) -> list[Path]:
    """The r = 3 study's figures from its folder (tms.experiments.beyond_r2.run's out): census,
    columns, posterior phase mass. Returns their paths."""
    folder, figures = Path(folder), Path(figures)
    return [plot_census(folder / "census", figures / "census.png"),
            plot_columns_3d(folder / "census", figures / "census_columns.png"),
            plot_phase_sweep(folder / "posterior_summary", figures / "posterior.png")]
