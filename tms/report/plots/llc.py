"""LLC figures (SPEC 5), drawn from a saved result only (tms.core.io: `tms llc --out`).

plot_traces: per centre, nbeta * (L(w_t) - L(w*)) of every chain against the SGLD step, the
estimate +- its standard error, escaped / non-finite chains drawn dashed, flags in the title.
plot_llc_checkpoints: the estimate at every checkpoint of every run (a saved trajectory).
"""
from __future__ import annotations

import numpy as np

from tms.core import io
from tms.report.plots import pyplot


def _nbeta(record: dict, shape) -> np.ndarray:
    return np.broadcast_to(np.asarray(record["nbeta"], dtype=float), shape)


def plot_traces(result_path, out_path, max_centres: int = 6) -> None:
    """Loss traces of the first `max_centres` centres of a saved LLC result, to an image."""
    arr, rec = io.load_result(result_path)
    trace = arr["loss_trace"]  # (C..., K, T)
    K, T = trace.shape[-2:]
    trace = trace.reshape(-1, K, T)
    C = trace.shape[0]
    nb = _nbeta(rec, arr["llc"].shape).reshape(-1)
    L0 = arr["centre_loss"].reshape(-1)
    llc, se = arr["llc"].reshape(-1), arr["llc_se"].reshape(-1)
    bad = (arr["escaped"] | arr["nonfinite"]).reshape(-1, K)
    labels = rec.get("labels") or [str(i) for i in range(C)]
    m = min(C, max_centres)
    plt = pyplot()
    fig, axes = plt.subplots(1, m, figsize=(max(4.2 * m, 7.0), 3.8), squeeze=False)
    burn = rec.get("n_burnin", 0)
    for i, ax in enumerate(axes[0]):
        y = nb[i] * (trace[i] - L0[i])
        for k in range(K):
            ax.plot(y[k], lw=0.6, alpha=0.8, ls="--" if bad[i, k] else "-")
        ax.axhline(llc[i], color="k", lw=1.2, label=f"lambda_hat = {llc[i]:.3f} +- {se[i]:.3f}")
        ax.axhspan(llc[i] - se[i], llc[i] + se[i], color="k", alpha=0.12)
        if burn:
            ax.axvline(burn, color="gray", lw=0.8, ls=":")
        ax.axhline(0, color="r", lw=0.6, ls=":")
        conv = (f", trend p {arr['trend_p'].reshape(-1)[i]:.2g}, rhat {arr['rhat'].reshape(-1)[i]:.3f}"
                if "rhat" in arr else "")
        ax.set_title(f"{labels[i]}  (acc {arr['acceptance'].reshape(-1)[i]:.3f}, "
                     f"esc {int(arr['escaped'].reshape(-1, K)[i].sum())}/{K}{conv})", fontsize=8)
        ax.set_xlabel("SGLD step")
        if i == 0:
            ax.set_ylabel("nbeta (L(w_t) - L(w*))")
        ax.legend(fontsize=7, loc="upper right")
    nbs = rec.get("nbeta")
    nbs = f"{nbs:.4g}" if isinstance(nbs, (int, float)) else "per centre"
    fig.suptitle(f"LLC loss traces: nbeta={nbs}, eps={rec.get('eps')}, gamma={rec.get('gamma')}, "
                 f"loss={rec.get('loss')}\n(dashed: escaped or non-finite chains, excluded from the mean)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    plt.close(fig)


def plot_llc_checkpoints(result_path, out_path, steps=None) -> None:
    """Estimate +- SE against checkpoint for a result of shape (T, R) (or (T,)), one line per run."""
    arr, rec = io.load_result(result_path)
    llc, se = arr["llc"], arr["llc_se"]
    if llc.ndim == 1:
        llc, se = llc[:, None], se[:, None]
    x = np.arange(llc.shape[0]) if steps is None else np.asarray(steps)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for r in range(llc.shape[1]):
        ax.errorbar(x, llc[:, r], yerr=se[:, r], lw=0.8, capsize=2, label=f"run {r}" if llc.shape[1] <= 8 else None)
    ax.set_xlabel("checkpoint" if steps is None else "SGD step")
    ax.set_ylabel("lambda_hat")
    nbs = rec.get("nbeta")
    nbs = f"{nbs:.4g}" if isinstance(nbs, (int, float)) else "per centre"
    ax.set_title(f"LLC along the trajectory (nbeta={nbs}, eps={rec.get('eps')}, gamma={rec.get('gamma')}, "
                 f"{rec.get('n_chains')} chains x {rec.get('n_burnin')} + {rec.get('n_draws')} steps)", fontsize=9)
    if llc.shape[1] <= 8:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
