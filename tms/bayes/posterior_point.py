"""One point of the posterior phase sweep (docs/SPEC.md section 3): the phase mass, chain
occupancy and diagnostics at one n from its data sets' records, and the point on disk.

A point is saved (tms.core.io) as arrays keyed by phase label (``mass_seed[5]`` (S,)), so a
column means the same phase at every n, and a record with its settings (the identity used for
reuse) and beside them the batch layout (which n shared the batch, data sets per batch); per
data set, the beta = 1 ladder draws (at most MAX_KEPT['ladder'] = 200 evenly thinned rounds per
ladder) as ArviZ InferenceData (tms.core.inference), with the rank diagnostics of their loss
and energy in diag['draws'].
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tms.core import inference, io
from tms.samplers import diagnostics
from tms.theory.loss import SortedData, loss_and_grad_flat, unflatten_params
from tms.theory.phases import classify

MAX_KEPT = dict(plain=200, ladder=200)  # draws kept (thinned) per chain: plain for classification, ladder saved
POINT_ARRAYS = ("mass_seed", "mass_se_seed", "occupancy_seed", "occupancy_se_seed")  # (S, P): saved per label
SEED_ARRAYS = ("round_trips_seed",)


@dataclass
class PosteriorPoint:
    """The posterior at one sample size n, per data set (S) and phase (P, labels `phases`):
    mass_seed (S, P), the beta = 1 phase fractions averaged over a data set's ladders, with
    their Monte Carlo error mass_se_seed (S, P); occupancy_seed (S, P) of the plain chains with
    occupancy_se_seed (S, P); round_trips_seed (S, R) per ladder; diag, the diagnostics (JSON);
    layout, the batch it was sampled in (beside, not in, the settings); draws, per data set the
    kept beta = 1 ladder draws (theta (R, T, d), loss, energy, phase codes, phase_labels)."""

    n: int
    phases: list
    mass_seed: np.ndarray
    mass_se_seed: np.ndarray
    occupancy_seed: np.ndarray
    occupancy_se_seed: np.ndarray
    round_trips_seed: np.ndarray
    diag: dict
    layout: dict | None = None
    draws: list = field(default_factory=list)


def summaries(theta: torch.Tensor, data: SortedData, r: int, c: int) -> torch.Tensor:
    """Symmetry-invariant summaries for diagnostics: L_n, sorted column norms, sorted biases.

    theta (G, ..., d) -> (G, ..., 2c + 1). Invariant under O(2) and feature permutations,
    so chains in the same phase but different symmetric copies are comparable. L_n by the fused
    loss (tms.theory.loss.loss_and_grad_flat: the compiled kernel where it runs, ~10x faster than
    the eager loss, which it equals to rounding).
    """
    W, b = unflatten_params(theta, r, c)
    L = loss_and_grad_flat(theta, r, c, data)[0].unsqueeze(-1)
    norms = W.norm(dim=-2).sort(-1).values
    return torch.cat([L, norms, b.sort(-1).values], -1)


def classify_draws(theta: np.ndarray, r: int, c: int, census=None) -> np.ndarray:
    """Phase labels (...) of draws theta (..., d), float64, batched over every draw: the zoo
    reading (tms.theory.phases.classify) without a census, else the census's posterior reading
    (nearest local minimum modulo O(r) x permutations, tms.theory.census.Census.read_posterior)."""
    t = torch.as_tensor(theta, dtype=torch.float64)
    W, b = unflatten_params(t, r, c)
    return np.asarray(classify(W, b) if census is None else census.read_posterior(W, b))


def fractions(labels: np.ndarray, phases: list[str], axis_draw: int) -> np.ndarray:
    """labels (...) -> (..., P) with the draw axis averaged out."""
    return np.stack([(labels == p).mean(axis_draw) for p in phases], -1)


def mass_from_ladders(recs: list[dict], phases: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per data set: mass (S, P) = mean over ladders of the beta = 1 phase fractions, and
    its Monte Carlo error (S, P): std / sqrt(R) across the independent ladders, or from the
    ESS of the phase indicator when R = 1."""
    mass, se = [], []
    for rec in recs:
        lab = np.concatenate(rec["labels"])  # (T, R)
        frac = fractions(lab, phases, 0)  # (R, P)
        mass.append(frac.mean(0))
        if lab.shape[1] >= 2:
            se.append(frac.std(0, ddof=1) / math.sqrt(lab.shape[1]))
        else:
            ind = np.stack([(lab == p).T.astype(float) for p in phases])  # (P, R, T)
            se.append(diagnostics.mean_and_se(ind)[1])  # (P,); NaN where the ESS is undefined, never 0
    return np.stack(mass), np.stack(se)


def ladders_done(labels: list[np.ndarray], target_se: float) -> bool:
    """Every phase mass of one data set within target_se (s.e. across its R ladders)."""
    lab = np.concatenate(labels)  # (T, R)
    if lab.shape[1] < 2:
        return False
    _, se = mass_from_ladders([dict(labels=labels)], sorted(set(np.unique(lab))))  # (1, P)
    return bool(se.max() < target_se)


def _draw_records(recs: list[dict], phases: list[str]) -> tuple[list[dict], dict]:
    """Per data set: its kept draws with phase codes (index into phases), and the rank
    diagnostics of their loss and energy over the ladders (what ArviZ finds in the saved file)."""
    draws, diag = [], {f"{q}_{v}": [] for q in ("rhat", "ess_bulk", "ess_tail") for v in ("loss", "energy")}
    diag["flags"] = []
    for rec in recs:
        kept = dict(rec["kept"])
        labels = kept.pop("labels")
        kept.update(phase=np.searchsorted(np.asarray(phases), labels).astype(np.int32), phase_labels=list(phases))
        draws.append(kept)
        for v in ("loss", "energy"):
            x = kept[v] if kept[v].shape[-1] >= 4 else np.full((1, 4), np.nan)
            for q, val in zip(("rhat", "ess_bulk", "ess_tail"), map(float, diagnostics.rank_diagnostics(x))):
                diag[f"{q}_{v}"].append(val if np.isfinite(val) else None)
        diag["flags"].append(diagnostics.failing({k: v[-1] for k, v in diag.items() if k != "flags"}))
    return draws, diag


def build_point(n: int, recs: list[dict], plain: dict, g: slice, summ: np.ndarray, layout: dict) -> PosteriorPoint:
    """The result at one n from its S ladder records and the plain chains' (data sets g of
    the batch; summ (T, G, C, 2c+1) their summaries); layout (which n shared the batch, data
    sets per batch) is recorded beside, not in, the settings."""
    ll = plain["labels"][:, g]  # (T, S, C)
    phases = [str(p) for p in sorted(set().union(*(np.unique(np.concatenate(r["labels"])) for r in recs))
                                     | set(np.unique(ll)))]
    mass_s, se_s = mass_from_ladders(recs, phases)
    occ_chain = fractions(ll, phases, 0)  # (S, C, P)
    C = occ_chain.shape[1]
    occ_se_s = occ_chain.std(1, ddof=1) / math.sqrt(C) if C >= 2 else np.zeros_like(occ_chain[:, 0])
    ind_ess = {}
    for p in phases:  # ESS of the phase indicator at beta = 1, per data set
        ind_ess[p] = []
        for rec in recs:
            ind = (np.concatenate(rec["labels"]) == p).T.astype(float)[None]  # (1, R, T)
            e = diagnostics.ess(ind)[0] if ind.size >= 8 else np.nan
            ind_ess[p].append(float(e) if np.isfinite(e) else None)
    draws, draw_diag = _draw_records(recs, phases)
    diag = dict(
        pt_accept=[rec["accept"] / max(rec["transitions"], 1) for rec in recs],
        pt_divergences=[rec["divergences"] for rec in recs],
        pt_warmup_divergences=[rec["warmup_divergences"] for rec in recs],
        pt_rounds=[rec["rounds"] for rec in recs],
        swap_rate=np.mean([rec["swap_acc"] / np.maximum(rec["swap_prop"], 1) for rec in recs], 0).tolist(),
        swap_rate_seed=[(rec["swap_acc"] / np.maximum(rec["swap_prop"], 1)).tolist() for rec in recs],
        betas_seed=[rec["betas"].tolist() for rec in recs],
        round_trips_seed=[rec["round_trips"].tolist() for rec in recs],
        mass_mc_se_max=float(se_s.max()) if se_s.size else 0.0,
        plain_accept=plain["accept_rate"][g].mean(1).tolist(),
        plain_divergences=plain["divergences"][g].sum(1).tolist(),
        plain_mean_steps=plain["mean_steps"][g].mean(1).tolist(),
        mass_indicator_ess=ind_ess,
        draws=draw_diag,
        plain_phase_diagnostics=[diagnostics.phase_diagnostics(summ[:, k].transpose(1, 0, 2), ll[:, j].T)
                                 for j, k in enumerate(range(g.start, g.stop))],
    )
    return PosteriorPoint(n, phases, mass_s, se_s, occ_chain.mean(1), occ_se_s,
                          np.array([rec["round_trips"] for rec in recs]), diag, layout, draws)


def draws_path(path: Path, s: int) -> Path:
    """The netCDF file (ArviZ InferenceData) of data set s's kept draws at a point."""
    return path.with_name(f"{path.name}_draws_s{s}.nc")


def point_problem(path: Path) -> str | None:
    """What is missing of a saved point beyond its arrays and record: a draws file it names."""
    missing = [draws_path(path, s) for s in range(io.load_json(path.with_suffix(".json")).get("draw_files", 0))
               if not draws_path(path, s).exists()]
    return f"the draws file {missing[0]} it names is missing" if missing else None


def save_point(path: Path, point: PosteriorPoint, settings: dict) -> None:
    """Draws first (one netCDF per data set), then the arrays and record, so a point counts as
    done only when all of it is on disk. Arrays keyed by phase label (`mass_seed[4+]` (S,)):
    a column means the same phase at every n. The batch layout sits beside the settings.
    settings: the sweep's and the data seeds `ids`; a draws file names the sweep's settings
    and its data set s."""
    sweep_settings = {k: v for k, v in settings.items() if k != "ids"}
    for s, draws in enumerate(point.draws):
        inference.save_netcdf(inference.point_inference_data(
            draws, r=settings["r"], c=settings["c"], n=point.n, dataset=s, settings=sweep_settings),
            draws_path(path, s))
    arrays = {f"{k}[{p}]": np.asarray(getattr(point, k))[:, j]
              for k in POINT_ARRAYS for j, p in enumerate(point.phases)}
    arrays.update({k: getattr(point, k) for k in SEED_ARRAYS})
    io.save_result(path, arrays, dict(settings=settings, n=point.n, phases=point.phases, diagnostics=point.diag,
                                      layout=point.layout, draw_files=len(point.draws)))


def load_point(path: Path) -> PosteriorPoint:
    """A point saved by save_point (its settings were checked by the sweep, tms.bayes.sweep)."""
    arrays, rec = io.load_result(path)
    per_label = {k: np.stack([arrays[f"{k}[{p}]"] for p in rec["phases"]], -1) for k in POINT_ARRAYS}
    draws = [inference.load_point_draws(draws_path(path, s)) for s in range(rec.get("draw_files", 0))]
    return PosteriorPoint(rec["n"], rec["phases"], **per_label, **{k: arrays[k] for k in SEED_ARRAYS},
                          diag=rec["diagnostics"], layout=rec.get("layout"), draws=draws)


def point_path(out_dir: str | Path, c: int, n: int) -> Path:
    """Where phase_sweep saves the point n of c under out_dir (PATH.npz/.json + draws .nc)."""
    return Path(out_dir) / f"posterior_c{c}_n{n}"


def point_done(out_dir: str | Path, c: int, n: int) -> bool:
    """The point n is complete on disk: its arrays, record and every draws file it names
    (what phase_sweep reuses; a Dask task skips it)."""
    path = point_path(out_dir, c, n)
    return io.result_exists(path) and point_problem(path) is None
