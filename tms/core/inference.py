"""Posterior draws and LLC traces as ArviZ InferenceData (netCDF), for re-analysis elsewhere.

A posterior point (one data set at one n, tms.bayes.posterior) is saved as one netCDF file that
``arviz.from_netcdf`` loads:
    posterior     W (chain, draw, W_row, W_col), b (chain, draw, feature), loss (chain, draw)
                  = L_n of the draw; chain = replica ladder, draw = sampling round at beta = 1
                  (thinned: every `thin_stride`-th round, at most `max_kept` per chain)
    sample_stats  energy (chain, draw) = beta_lik n L_n + |w|^2 / 2 (the potential, SPEC 3),
                  phase (chain, draw) int codes into the attribute `phase_labels`
    attrs         settings (JSON), phase_labels (JSON list), n, dataset, thin_stride, max_kept
Writes are atomic (a temporary file in the same folder, then a rename). ArviZ is imported only
inside the functions that build or read InferenceData: its import costs about a second, which
no `tms` command that writes none should pay.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tms.core import io

if TYPE_CHECKING:
    import arviz


def point_inference_data(draws: dict, *, r: int, c: int, n: int, dataset: int, settings: dict) -> arviz.InferenceData:
    """draws: theta (chain, draw, d), loss, energy, phase (chain, draw), phase_labels, thin_stride,
    max_kept (tms.bayes.posterior's per-data-set draw record) -> InferenceData (module docstring)."""
    import arviz  # here only (module docstring)

    theta = np.asarray(draws["theta"])
    K, T = theta.shape[:2]
    W = theta[..., : r * c].reshape(K, T, r, c)
    b = theta[..., r * c :]
    idata = arviz.from_dict(
        posterior={"W": W, "b": b, "loss": np.asarray(draws["loss"])},
        sample_stats={"energy": np.asarray(draws["energy"]), "phase": np.asarray(draws["phase"], dtype=np.int32)},
        dims={"W": ["W_row", "W_col"], "b": ["feature"]},
    )
    attrs = dict(settings=json.dumps(settings, sort_keys=True, default=str), phase_labels=json.dumps(
        [str(p) for p in draws["phase_labels"]]), n=int(n), dataset=int(dataset),
        thin_stride=int(draws["thin_stride"]), max_kept=int(draws["max_kept"]))
    for group in (idata.posterior, idata.sample_stats):
        group.attrs.update(attrs)
    return idata


def save_netcdf(idata: arviz.InferenceData, path: str | os.PathLike) -> Path:
    """Write idata to `path` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    io.remove_temp_files(path)  # one writer per file: leftovers are from a killed write (as tms.core.io)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        idata.to_netcdf(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_point_draws(path: str | os.PathLike) -> dict:
    """The per-data-set draw record back from a point's netCDF file (inverse of
    point_inference_data): theta (chain, draw, d), loss, energy, phase, phase_labels, ..."""
    import arviz  # here only (module docstring)

    idata = arviz.from_netcdf(path)
    post, stats = idata.posterior, idata.sample_stats
    W, b = post["W"].values, post["b"].values
    theta = np.concatenate([W.reshape(W.shape[:2] + (-1,)), b], -1)
    return dict(theta=theta, loss=post["loss"].values, energy=stats["energy"].values, phase=stats["phase"].values,
                phase_labels=json.loads(post.attrs["phase_labels"]), thin_stride=int(post.attrs["thin_stride"]),
                max_kept=int(post.attrs["max_kept"]))


def llc_inference_data(result, max_draws: int = 1000) -> arviz.InferenceData:
    """An LLC result's kept loss trace (tms.llc.estimator.LLCResult: loss_trace (C..., K, T), K chains)
    as InferenceData: posterior loss and llc = nbeta (L - L(w*)) (chain, draw, centre dims...),
    thinned to at most max_draws per chain, settings as attributes (LLCResult.to_inference_data)."""
    return result.to_inference_data(max_draws=max_draws)
