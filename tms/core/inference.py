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
inside the functions that build InferenceData: its import costs about a second, which no `tms`
command that writes none should pay. The draws are read back with h5py (imported there too).
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


def netcdf_engine() -> str:
    """xarray's netCDF-4 writer: "netcdf4" (libnetcdf, ~15 ms for a point's file) where the
    netCDF4 package loads, else "h5netcdf" (~100 ms: per-variable Python overhead). The two
    write the same netCDF-4 (HDF5) layout, read back alike by ArviZ and `load_point_draws`."""
    try:
        import netCDF4  # noqa: F401  here only: what writes the draws (module docstring)
    except ImportError:
        return "h5netcdf"
    return "netcdf4"


def save_netcdf(idata: arviz.InferenceData, path: str | os.PathLike) -> Path:
    """Write idata to `path` atomically (engine: `netcdf_engine`); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    io.remove_temp_files(path)  # one writer per file: leftovers are from a killed write (as tms.core.io)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        idata.to_netcdf(tmp, engine=netcdf_engine())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_point_draws(path: str | os.PathLike) -> dict:
    """The per-data-set draw record back from a point's netCDF file (inverse of
    point_inference_data): theta (chain, draw, d), loss, energy, phase, phase_labels, ...

    Read with h5py (a netCDF-4 file is an HDF5 file: milliseconds, where arviz.from_netcdf
    through xarray takes ~0.3 s a file); a file that h5py cannot read as saved (netCDF-3,
    or values netCDF would decode) goes through ArviZ, with the same record."""
    try:
        post, stats, attrs = _read_hdf5(path)
    except (ImportError, OSError, KeyError, ValueError):
        post, stats, attrs = _read_arviz(path)
    W, b = post["W"], post["b"]
    theta = np.concatenate([W.reshape(W.shape[:2] + (-1,)), b], -1)
    return dict(theta=theta, loss=post["loss"], energy=stats["energy"], phase=stats["phase"],
                phase_labels=json.loads(attrs["phase_labels"]), thin_stride=int(attrs["thin_stride"]),
                max_kept=int(attrs["max_kept"]))


_DRAW_VARIABLES = dict(posterior=("W", "b", "loss"), sample_stats=("energy", "phase"))
_ATTRS = ("phase_labels", "thin_stride", "max_kept")


def _read_hdf5(path) -> tuple[dict, dict, dict]:
    """(posterior arrays, sample_stats arrays, posterior attrs) of a point's file, read raw with h5py;
    a ValueError where netCDF would decode a variable (scale, offset, a fill value other than NaN)."""
    import h5py  # here only: what reads the draws (module docstring)

    with h5py.File(path, "r") as f:
        groups = [{k: _raw_values(f[g][k]) for k in names} for g, names in _DRAW_VARIABLES.items()]
        attrs = {k: _attr(f["posterior"].attrs[k]) for k in _ATTRS}
    return groups[0], groups[1], attrs


def _raw_values(var) -> np.ndarray:
    """An HDF5 dataset's values, as xarray would decode them (only undecoded ones are accepted)."""
    fill = var.attrs.get("_FillValue")
    if {"scale_factor", "add_offset"} & set(var.attrs) or (fill is not None and not np.isnan(fill).all()):
        raise ValueError(f"{var.name} needs netCDF decoding")
    return var[()]


def _attr(value):
    """An HDF5 attribute as netCDF reads it: text as str, a one-element array as its number."""
    if isinstance(value, bytes):
        return value.decode()
    return value.item() if isinstance(value, np.ndarray) and value.size == 1 else value


def _read_arviz(path) -> tuple[dict, dict, dict]:
    """As _read_hdf5, through arviz.from_netcdf."""
    import arviz  # here only (module docstring)

    idata = arviz.from_netcdf(path)
    groups = [{k: getattr(idata, g)[k].values for k in names} for g, names in _DRAW_VARIABLES.items()]
    return groups[0], groups[1], dict(idata.posterior.attrs)


def llc_inference_data(result, max_draws: int = 1000) -> arviz.InferenceData:
    """An LLC result's kept loss trace (tms.llc.estimator.LLCResult: loss_trace (C..., K, T), K chains)
    as InferenceData: posterior loss and llc = nbeta (L - L(w*)) (chain, draw, centre dims...),
    thinned to at most max_draws per chain, settings as attributes (LLCResult.to_inference_data)."""
    return result.to_inference_data(max_draws=max_draws)
