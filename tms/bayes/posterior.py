"""The Bayesian experiment (SPEC 3): posterior phase mass against the sample size n.

Posterior p(w | D_n) proportional to N(0, I)(w) * exp(-beta_lik * n * L_n(w)) on all
d = r*c + c parameters; beta_lik = 1 is the SPEC convention (a Gaussian likelihood of
variance 1/2 per output), beta_lik = 1/2 the unit-variance one.

Phase mass. Chains at the target temperature seldom cross between phases, so the fraction
of chains in a phase (chain occupancy) reflects basins of attraction of the start, not
posterior mass. The mass is estimated by replica exchange over the likelihood temperature
(tms.samplers.tempering): K tempered posteriors exp(-beta_k beta_lik n L_n - |w|^2/2),
beta_k geometric from beta_min to 1, swaps between neighbours; the slot at beta = 1 samples
the posterior, and the hot end, close to the prior, moves between phases. R independent
replica ladders per data set give the mass as the mean over ladders of the fraction of
beta = 1 draws in the phase, with standard error std / sqrt(R) across ladders (independent
by construction, so autocorrelation is accounted for). Across S data sets (seeds) the mass
reported at n is the mean over data sets, its error the standard error over data sets
(std / sqrt(S), which contains the Monte Carlo error), or the Monte Carlo error when S = 1.
Chain occupancy, from `chains` plain HMC chains per data set started from the prior, is
reported beside it under that name. Draws are thinned to at most MAX_KEPT per chain before
classification (memory), which changes no expectation.

Layout: data sets (n-grid x seeds) are one leading dim G; the ladders are (G, R, K, d) and
the plain chains (G, C, d); one batched sampler call serves a whole chunk of the n-grid.
Every random number is counter-based per (seed, n, data set, chain) and no arithmetic
depends on an item's place in the batch, so a point's numbers are the same to the last bit
alone, chunked with other n, or with any number of data sets (tests/test_posterior_layout.py).
Each finished n is saved (tms.core.io) as soon as its data sets are done, whatever the batching,
and skipped when the sweep is run again: arrays keyed by phase label (``mass_seed[5]`` (S,)),
the record with the settings (the identity used for reuse) and beside them the batch layout
(which n shared the batch, data sets per batch); per data set, the beta = 1 ladder draws
(at most MAX_KEPT['ladder'] = 200 evenly thinned rounds per ladder) as ArviZ InferenceData
(tms.core.inference), with the rank diagnostics of their loss and energy in diag['draws'].
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from tms.core import checks, inference, io
from tms.samplers import diagnostics
from tms.theory import zoo
from tms.theory.data import sample_inputs
from tms.theory.loss import (SortedData, empirical_loss_sorted, loss_and_grad_flat, sorted_data, stack_sorted,
                      unflatten_params)
from tms.llc.estimator import default_nbeta, estimate_llc
from tms.theory.phases import classify
from tms.core import rng
from tms.samplers import tempering

QUICK = dict(seeds=2, n_chains=16, replicas=4, n_temps=10, beta_min=0.01, n_warmup=100, n_draws=120, max_steps=40,
             plain_draws=60, target_se=0.02, block=40, min_draws=80)
MAX_KEPT = dict(plain=200, ladder=200)  # draws kept (thinned) per chain: plain for classification, ladder saved
# paper scale: grids of SPEC 3 (set by the command), 4 data sets per n, 12 ladders each; rounds of 40
# leapfrog ticks (a trajectory is at most 40 steps: the measured U-turn lengths are ~25), at most
# 400 sampling rounds per data set, fewer where every mass is within target_se
PAPER = dict(seeds=4, n_chains=64, replicas=12, n_temps=16, beta_min=0.003, n_warmup=200, n_draws=400, max_steps=40,
             plain_draws=200, target_se=0.02, block=50, min_draws=150)


def data_seed(seed: int, n: int, s: int) -> int:
    """Seed of data set s at sample size n: independent of the grid and of the batching."""
    return int(np.random.SeedSequence([seed, n, s]).generate_state(1)[0])


def _with_dims(data: SortedData, k: int) -> SortedData:
    """Insert k singleton dims after the leading data dim (to broadcast with chain dims)."""

    def f(t):
        return t.reshape(t.shape[:1] + (1,) * k + t.shape[1:])

    return SortedData(f(data.mu), f(data.cum1), f(data.cum2), f(data.count), f(data.n))


def energy_fn(data: SortedData, r: int, c: int, beta_lik: float = 1.0):
    """theta (G, ..., d) -> beta_lik * n * L_n(theta) (G, ...); data has batch dims (G, 1...).

    The tempered part of the posterior potential (SPEC 3); the prior |theta|^2/2 is `prior`.
    """

    def energy(theta: torch.Tensor) -> torch.Tensor:
        W, b = unflatten_params(theta, r, c)
        return beta_lik * data.n * empirical_loss_sorted(W, b, data)

    return energy


def energy_grad_fn(data: SortedData, r: int, c: int, beta_lik: float = 1.0):
    """theta (G, ..., d) -> (beta_lik n L_n (G, ...), its gradient (G, ..., d)): the exact
    fused energy and gradient of tms.theory.loss (SPEC 1, no autograd), the samplers' hot path."""

    scale = beta_lik * data.n  # (G, 1...) broadcasting with the chains

    def energy_grad(theta: torch.Tensor):
        return loss_and_grad_flat(theta, r, c, data, scale=scale)

    return energy_grad


def prior_grad(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """|theta|^2 / 2 and its gradient theta."""
    return prior(theta), theta


def prior(theta: torch.Tensor) -> torch.Tensor:
    """-log N(0, I) up to a constant: |theta|^2 / 2, (..., d) -> (...)."""
    return 0.5 * (theta**2).sum(-1)


def _summaries(theta: torch.Tensor, data: SortedData, r: int, c: int) -> torch.Tensor:
    """Symmetry-invariant summaries for diagnostics: L_n, sorted column norms, sorted biases.

    theta (G, ..., d) -> (G, ..., 2c + 1). Invariant under O(2) and feature permutations,
    so chains in the same phase but different symmetric copies are comparable.
    """
    W, b = unflatten_params(theta, r, c)
    L = empirical_loss_sorted(W, b, data).unsqueeze(-1)
    norms = W.norm(dim=-2).sort(-1).values
    return torch.cat([L, norms, b.sort(-1).values], -1)


def _classify(theta: np.ndarray, r: int, c: int) -> np.ndarray:
    t = torch.as_tensor(theta, dtype=torch.float64)
    W, b = unflatten_params(t, r, c)
    return np.asarray(classify(W, b))


def _fractions(labels: np.ndarray, phases: list[str], axis_draw: int) -> np.ndarray:
    """labels (...) -> (..., P) with the draw axis averaged out."""
    return np.stack([(labels == p).mean(axis_draw) for p in phases], -1)


def _settings(c, r, beta_lik, seed, cfg) -> dict:
    return dict(c=c, r=r, beta_lik=float(beta_lik), seed=seed, **cfg)


def point_path(out_dir: str | Path, c: int, n: int) -> Path:
    """Where phase_sweep saves the point n of c under out_dir (PATH.npz/.json + draws .nc)."""
    return Path(out_dir) / f"posterior_c{c}_n{n}"


def point_done(out_dir: str | Path, c: int, n: int) -> bool:
    """The point n is complete on disk: its arrays, record and every draws file it names
    (what phase_sweep reuses; a Dask task skips it)."""
    return _point_complete(point_path(out_dir, c, n))


def _data_keys(seed: int, ns, S: int, which: int, device=None) -> torch.Tensor:
    """(G,) base keys of the data sets (n, s) of a chunk: hash(seed, n, s, which), which = 0
    for the ladders and 1 for the plain chains. A data set's chains get their keys from its
    own (seed, n, s), never from its position in a chunk (same numbers alone or batched)."""
    return torch.tensor([rng.key(seed, n, s, which) for n in ns for s in range(S)], dtype=torch.int64,
                        device=device)


def _subset(data: SortedData, idx: torch.Tensor) -> SortedData:
    return SortedData(*(t.index_select(0, idx) for t in data))


def _target(data: SortedData, r: int, c: int, beta_lik: float, n_ticks: int) -> tempering.Target:
    return tempering.Target(energy_grad_fn(data, r, c, beta_lik), prior_grad, n_ticks)


def _sample_plain(data, keys, r, c, beta_lik, cfg, progress) -> dict:
    """Plain chains at beta = 1 from prior draws (chain occupancy): (G, C, d), data (G, 1)."""
    ck = rng.keys_from(keys, (cfg["n_chains"],))
    th0 = rng.normal(ck, 0, r * c + c, data.mu.dtype, rng.START)
    out = tempering.run_chains(None, th0, keys=ck, energy_grad_fn=energy_grad_fn(_with_dims(data, 1), r, c, beta_lik),
                               prior_grad_fn=prior_grad, n_warmup=cfg["n_warmup"], n_draws=cfg["plain_draws"],
                               max_steps=cfg["max_steps"], record=lambda th: th.to(torch.float32),
                               thin=math.ceil(cfg["plain_draws"] / MAX_KEPT["plain"]), progress=progress,
                               desc=f"plain chains ({data.mu.shape[0]} data sets)")
    out["labels"] = _classify(out["draws"].cpu().numpy(), r, c)  # (T, G, C)
    return out


def _ladders_done(labels: list[np.ndarray], target_se: float) -> bool:
    """Every phase mass of one data set within target_se (s.e. across its R ladders)."""
    lab = np.concatenate(labels)  # (T, R)
    if lab.shape[1] < 2:
        return False
    _, se = _mass_from_ladders([dict(labels=labels)], sorted(set(np.unique(lab))))  # (1, P)
    return bool(se.max() < target_se)
def _ladder_record(out: dict, i: int) -> dict:
    """Sums over one block of the sampling statistics of data set i (ladders (R, K))."""
    return dict(accept=(out["accept_rate"][i] * out["transitions"][i]).sum().item(),
                transitions=out["transitions"][i].sum().item(), divergences=out["divergences"][i].sum().item(),
                swap_acc=out["swap_acc"][i].sum(0).cpu().numpy(),
                swap_prop=out["swap_prop"][i].sum(0).cpu().numpy(),
                round_trips=out["round_trips"][i].cpu().numpy())


def _merge(rec: dict, new: dict) -> None:
    for k, v in new.items():
        rec[k] = rec[k] + v if k in rec else v


def _sample_ladders(data, keys, r, c, beta_lik, cfg, progress, on_done) -> None:
    """Replica exchange for every data set of a chunk, (G, R, K, d) with data (G, 1, 1).

    After warm-up (temperatures re-placed per data set), sampling runs in blocks of
    cfg['block'] rounds; a data set stops once, after at least cfg['min_draws'] rounds, every
    phase mass has a standard error below cfg['target_se'] (across its R ladders), or after
    cfg['n_draws'] rounds (the budget), and is then dropped from the batch. on_done(g, record) receives its labels (T, R) and statistics.
    """
    G, R, K, d = data.mu.shape[0], cfg["replicas"], cfg["n_temps"], r * c + c
    ck = rng.keys_from(keys, (R, K))
    betas = tempering.geometric_ladder(K, cfg["beta_min"], dtype=data.mu.dtype).to(data.mu.device)
    betas = betas.expand(G, 1, K).clone()
    target = _target(_with_dims(data, 2), r, c, beta_lik, cfg["max_steps"])
    state = tempering.init(rng.normal(ck, 0, d, data.mu.dtype, rng.START), ck, target, betas)
    state, winfo = tempering.warmup(state, target, cfg["n_warmup"], progress=progress,
                                    desc=f"replica exchange warm-up ({G} data sets)")
    recs = {g: dict(labels=[], draws=[], warmup_divergences=winfo["divergences"][g].sum().item(),
                    betas=state.betas[g, 0].cpu().numpy(), step_size=state.step_size[g].mean(0).cpu().numpy())
            for g in range(G)}
    alive, rounds_done = list(range(G)), 0
    bar = tqdm(total=cfg["n_draws"], desc=f"replica exchange ({G} data sets)", disable=not progress, leave=False)
    while alive:
        block = min(cfg["block"], cfg["n_draws"] - rounds_done)
        state, out = tempering.sample(state, target, block, record=lambda th: th[..., -1, :].to(torch.float32))
        labels = _classify(out["draws"].cpu().numpy(), r, c)  # (T, G_alive, R)
        rounds_done += block
        bar.update(block)
        keep = []
        for i, g in enumerate(alive):  # bookkeeping per data set, once per block
            recs[g]["labels"].append(labels[:, i])
            recs[g]["draws"].append(out["draws"][:, i].cpu().numpy())  # (T, R, d) float32 at beta = 1
            _merge(recs[g], _ladder_record(out, i))
            if rounds_done >= cfg["n_draws"] or (rounds_done >= cfg["min_draws"]
                                                 and _ladders_done(recs[g]["labels"], cfg["target_se"])):
                on_done(g, dict(recs.pop(g), rounds=rounds_done))
            else:
                keep.append(i)
        if keep and len(keep) < len(alive):
            state = tempering.select(state, torch.tensor(keep, device=data.mu.device))
            rows = torch.tensor([alive[i] for i in keep], device=data.mu.device)
            target = _target(_with_dims(_subset(data, rows), 2), r, c, beta_lik, cfg["max_steps"])
        alive = [alive[i] for i in keep]
    bar.close()


def _mass_from_ladders(recs: list[dict], phases: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per data set: mass (S, P) = mean over ladders of the beta = 1 phase fractions, and
    its Monte Carlo error (S, P): std / sqrt(R) across the independent ladders, or from the
    ESS of the phase indicator when R = 1."""
    mass, se = [], []
    for rec in recs:
        lab = np.concatenate(rec["labels"])  # (T, R)
        frac = _fractions(lab, phases, 0)  # (R, P)
        mass.append(frac.mean(0))
        if lab.shape[1] >= 2:
            se.append(frac.std(0, ddof=1) / math.sqrt(lab.shape[1]))
        else:
            ind = np.stack([(lab == p).T.astype(float) for p in phases])  # (P, R, T)
            se.append(np.nan_to_num(diagnostics.mean_and_se(ind)[1][:, 0]))
    return np.stack(mass), np.stack(se)


def _kept_draws(rec: dict, data: SortedData, r: int, c: int, beta_lik: float) -> dict:
    """One data set's beta = 1 ladder draws (T, R, d), thinned to at most MAX_KEPT['ladder']
    per ladder, as (R, T', ...): theta, labels, loss L_n and energy beta_lik n L_n + |w|^2/2.
    data: that data set alone (batch 1)."""
    theta, labels = np.concatenate(rec["draws"]), np.concatenate(rec["labels"])  # (T, R, d), (T, R)
    stride = math.ceil(theta.shape[0] / MAX_KEPT["ladder"])
    theta, labels = theta[::stride].swapaxes(0, 1), labels[::stride].T  # (R, T', d), (R, T')
    th = torch.as_tensor(theta, device=data.mu.device).to(data.mu.dtype)[None]  # (1, R, T', d)
    W, b = unflatten_params(th, r, c)
    loss = empirical_loss_sorted(W, b, _with_dims(data, 2))
    energy = beta_lik * data.n.reshape(-1, 1, 1) * loss + prior(th)
    return dict(theta=theta, labels=labels, loss=loss[0].cpu().numpy(), energy=energy[0].cpu().numpy(),
                thin_stride=stride, max_kept=MAX_KEPT["ladder"])


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
            for q in ("rhat", "ess_bulk", "ess_tail"):
                val = float(getattr(diagnostics, q)(x))
                diag[f"{q}_{v}"].append(val if np.isfinite(val) else None)
        diag["flags"].append(diagnostics.failing({k: v[-1] for k, v in diag.items() if k != "flags"}))
    return draws, diag


def _point(n: int, recs: list[dict], plain: dict, g: slice, summ: np.ndarray, layout: dict) -> dict:
    """The result at one n from its S ladder records and plain chains (data sets g); layout
    (which n shared the batch, data sets per batch) is recorded beside, not in, the settings."""
    ll = plain["labels"][:, g]  # (T, S, C)
    phases = [str(p) for p in sorted(set().union(*(np.unique(np.concatenate(r["labels"])) for r in recs))
                                     | set(np.unique(ll)))]
    mass_s, se_s = _mass_from_ladders(recs, phases)
    occ_chain = _fractions(ll, phases, 0)  # (S, C, P)
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
    return dict(n=n, phases=phases, mass_seed=mass_s, mass_se_seed=se_s, occupancy_seed=occ_chain.mean(1),
                occupancy_se_seed=occ_se_s, round_trips_seed=np.array([rec["round_trips"] for rec in recs]), diag=diag,
                draws=draws, layout=layout)


def _run_chunk(c, r, ns, beta_lik, seed, cfg, dtype, device, progress, on_point) -> None:
    """Sample every (n, seed) data set of ns in one batch; on_point(result) for each n as soon
    as all its data sets are finished (so an interrupted chunk keeps its finished n)."""
    S = cfg["seeds"]
    datas = [sorted_data(sample_inputs(n, c, data_seed(seed, n, s), dtype=dtype)) for n in ns for s in range(S)]
    data = SortedData(*(t.to(device) for t in stack_sorted(datas)))  # batch (G,), G = len(ns) * S
    plain = _sample_plain(data, _data_keys(seed, ns, S, 1, device), r, c, beta_lik, cfg, progress)
    summ = np.concatenate([_summaries(blk.to(dtype), _with_dims(data, 1), r, c).cpu().numpy()
                           for blk in plain["draws"].split(16)])  # (T, G, C, 2c+1), blocks bound memory
    finished: dict[int, dict] = {}
    layout = dict(batch_ns=list(ns), datasets_per_batch=len(ns) * S)

    def on_done(g: int, rec: dict) -> None:
        rec["kept"] = _kept_draws(rec, _subset(data, torch.tensor([g], device=data.mu.device)), r, c, beta_lik)
        del rec["draws"]
        finished[g] = rec
        i = g // S
        if all(i * S + s in finished for s in range(S)):
            recs = [finished.pop(i * S + s) for s in range(S)]
            on_point(_point(ns[i], recs, plain, slice(i * S, (i + 1) * S), summ, layout))

    _sample_ladders(data, _data_keys(seed, ns, S, 0, device), r, c, beta_lik, cfg, progress, on_done)


POINT_ARRAYS = ("mass_seed", "mass_se_seed", "occupancy_seed", "occupancy_se_seed")  # (S, P): saved per label
SEED_ARRAYS = ("round_trips_seed",)


def _draws_path(path: Path, s: int) -> Path:
    """The netCDF file (ArviZ InferenceData) of data set s's kept draws at a point."""
    return path.with_name(f"{path.name}_draws_s{s}.nc")


def _point_complete(path: Path) -> bool:
    """The point's arrays, record and every draws file it names are on disk."""
    if not io.result_exists(path):
        return False
    return all(_draws_path(path, s).exists() for s in range(io.load_json(path.with_suffix(".json")).get("draw_files", 0)))


def _save_point(path: Path, res: dict, settings: dict) -> None:
    """Draws first (one netCDF per data set), then the arrays and record, so a point counts as
    done only when all of it is on disk. Arrays keyed by phase label (`mass_seed[4+]` (S,)):
    a column means the same phase at every n. The batch layout sits beside the settings."""
    for s, draws in enumerate(res.get("draws") or []):
        inference.save_netcdf(inference.point_inference_data(
            draws, r=settings["r"], c=settings["c"], n=res["n"], dataset=s, settings=settings), _draws_path(path, s))
    arrays = {f"{k}[{p}]": np.asarray(res[k])[:, j] for k in POINT_ARRAYS for j, p in enumerate(res["phases"])}
    arrays.update({k: res[k] for k in SEED_ARRAYS})
    io.save_result(path, arrays, dict(settings=settings, n=res["n"], phases=res["phases"], diagnostics=res["diag"],
                                      layout=res.get("layout"), draw_files=len(res.get("draws") or [])))


def _reusable(path: Path) -> bool:
    """The point at path is complete on disk; a damaged or partial one is reported (and then
    recomputed by the caller), a missing one is simply not there yet."""
    if _point_complete(path):
        return True
    if path.with_suffix(".npz").exists() or path.with_suffix(".json").exists():
        checks.warn(f"{path}: {io.check_result(path) or 'a draws file it names is missing'}; recomputing this point")
    return False


def _load_point(path: Path, settings: dict) -> dict:
    arrays, rec = io.load_result(path)
    if rec["settings"] != io.jsonable(settings):
        raise ValueError(
            f"{path} holds a result with other settings ({rec['settings']}); use another --out directory or delete it"
        )
    out = {k: np.stack([arrays[f"{k}[{p}]"] for p in rec["phases"]], -1) for k in POINT_ARRAYS}
    out.update({k: arrays[k] for k in SEED_ARRAYS})
    draws = [inference.load_point_draws(_draws_path(path, s)) for s in range(rec.get("draw_files", 0))]
    return dict(n=rec["n"], phases=rec["phases"], diag=rec["diagnostics"], layout=rec.get("layout"), draws=draws,
                **out)


def aggregate(points: list[dict]) -> dict:
    """Per-n results -> arrays over the n-grid and the union of phases.

    mass, mass_se, occupancy, occupancy_se: (N, P). mass_se is the standard error over data
    sets (std / sqrt(S)) when S >= 2, else the within-data-set Monte Carlo error.
    """
    phases = sorted({p for pt in points for p in pt["phases"]})
    N, P = len(points), len(phases)
    out = {k: np.zeros((N, P)) for k in ("mass", "mass_se", "mass_mc_se", "occupancy", "occupancy_se")}
    for i, pt in enumerate(points):
        idx = [phases.index(p) for p in pt["phases"]]
        ms, ses = np.asarray(pt["mass_seed"]), np.asarray(pt["mass_se_seed"])
        oc, ocse = np.asarray(pt["occupancy_seed"]), np.asarray(pt["occupancy_se_seed"])
        S = ms.shape[0]
        out["mass"][i, idx] = ms.mean(0)
        out["mass_mc_se"][i, idx] = np.sqrt((ses**2).sum(0)) / S
        out["mass_se"][i, idx] = ms.std(0, ddof=1) / math.sqrt(S) if S >= 2 else out["mass_mc_se"][i, idx]
        out["occupancy"][i, idx] = oc.mean(0)
        out["occupancy_se"][i, idx] = oc.std(0, ddof=1) / math.sqrt(S) if S >= 2 else np.sqrt((ocse**2).sum(0)) / S
    out["ns"] = np.array([pt["n"] for pt in points])
    out["phases"] = phases
    return out


def predicted_transitions(c: int, beta_lik: float = 1.0, llcs: dict | None = None) -> list[dict]:
    """Predicted critical sample sizes from the zoo's free energies (SPEC 3).

    F_n(alpha) = n beta_lik L_alpha + lambda_alpha log(n beta_lik) + |w*_alpha|^2 / 2 (other
    O(1) terms dropped), so every n_c of the beta_lik = 1 convention is divided by beta_lik.
    Rows of tms.theory.zoo.transition_table(c, llcs) with a finite n_c, as dicts with
    'alpha', 'beta', 'n_c' (scaled), and the table's other fields.
    """
    rows = zoo.transition_table(c, llcs=llcs)
    out = []
    for row in rows:
        rec = dict(row) if isinstance(row, dict) else dict(row._asdict()) if hasattr(row, "_asdict") else dict(vars(row))
        nc = rec.get("n_c")
        if nc is None or not np.isfinite(nc):
            continue
        rec["n_c"] = float(nc) / beta_lik
        out.append(rec)
    return out


def _omitted(c: int, result: dict, llcs: dict | None, min_mass: float = 0.02) -> str:
    """Sentence naming the phases seen in the sweep for which the zoo has no lambda."""
    lam = {q.label: (llcs or {}).get(q.label, q.llc) for q in zoo.critical_points(c)}
    seen = [p for i, p in enumerate(result["phases"])
            if max(result["mass"][:, i].max(), result["occupancy"][:, i].max()) >= min_mass]
    missing = [p for p in seen if p in lam and lam[p] is None]
    if not missing:
        return ""
    return ("n_c lines omitted for transitions involving " + ", ".join(missing)
            + " (the zoo has no lambda there: L is only C^1 at 4-gons; supply estimates with --llc LABEL=VALUE).")


def add_predictions(result: dict, c: int, beta_lik: float, llcs: dict[str, float] | None = None) -> dict:
    """Fill result['transitions'] and result['omitted_transitions'] from the zoo (in place)."""
    try:
        result["transitions"] = predicted_transitions(c, beta_lik, llcs)
        result["omitted_transitions"] = _omitted(c, result, llcs)
        result.pop("transitions_error", None)
    except (ImportError, AttributeError, ValueError, TypeError) as err:
        result["transitions"], result["omitted_transitions"] = [], ""
        result["transitions_error"] = f"{type(err).__name__}: {err}"
    return result


def missing_llc_labels(c: int, result: dict, min_mass: float = 0.02) -> list[str]:
    """Zoo labels seen in a sweep (mass or occupancy >= min_mass) for which the zoo has no lambda."""
    lam = {q.label: q.llc for q in zoo.critical_points(c)}
    return [p for i, p in enumerate(result["phases"])
            if lam.get(p, 0.0) is None and max(result["mass"][:, i].max(), result["occupancy"][:, i].max()) >= min_mass]


def estimate_llcs(c: int, labels: list[str], *, n: int = 1000, n_chains: int = 16, n_burnin: int = 4000,
                  n_draws: int = 4000, seed: int = 0) -> dict[str, tuple[float, float]]:
    """SGLD estimates (SPEC 5) of lambda at the zoo points `labels` (e.g. 4-gons, where L is
    only C^1 and the zoo has no lambda): population loss, nbeta = n / log n, eps = 1e-3,
    gamma = 1, n_burnin + n_draws steps (tms.llc.estimator.PROTOCOL's), all points and chains batched.
    Returns {label: (lambda_hat, standard error across chains)}; NaN where the estimator
    excluded every chain (see tms.llc.estimator)."""
    if not labels:
        return {}
    pts = {q.label: q for q in zoo.critical_points(c)}
    W = torch.stack([pts[lab].W for lab in labels])
    b = torch.stack([pts[lab].b for lab in labels])
    res = estimate_llc(W, b, None, nbeta=default_nbeta(n), eps=1e-3, gamma=1.0, n_chains=n_chains,
                       n_burnin=n_burnin, n_draws=n_draws, loss="population", seed=seed)
    return {lab: (float(res.llc[i]), float(res.llc_se[i])) for i, lab in enumerate(labels)}


def _check_sweep(c, r, beta_lik, seed, ns, overrides) -> tuple[list[int], dict]:
    """phase_sweep's arguments checked: (the n-grid as ints, QUICK updated by overrides)."""
    checks.positive_int(c, "c", minimum=2)
    checks.positive_int(r, "r")
    if r > c:
        raise ValueError(f"r must be <= c, got r = {r}, c = {c}")
    checks.positive_float(beta_lik, "beta_lik")
    checks.seed(seed, "seed")  # counter-based keys hash it: a non-negative int
    ns = [checks.positive_int(int(n), "n") for n in ns]
    if not ns or len(set(ns)) != len(ns):
        raise ValueError(f"ns must be a non-empty list of distinct sample sizes, got {ns}")
    unknown = set(overrides) - set(QUICK)
    if unknown:
        raise ValueError(f"unknown sampler settings {sorted(unknown)}; expected some of {sorted(QUICK)}")
    cfg = {**QUICK, **overrides}
    for k in ("seeds", "n_chains", "replicas", "n_temps", "n_draws", "max_steps", "plain_draws", "block", "min_draws"):
        checks.positive_int(cfg[k], k)
    checks.positive_float(cfg["target_se"], "target_se")
    checks.positive_int(cfg["n_warmup"], "n_warmup", minimum=4)
    if not 0 < cfg["beta_min"] < 1:
        raise ValueError(f"beta_min must lie in (0, 1), got {cfg['beta_min']!r}")
    return ns, cfg


def phase_sweep(
    c: int,
    ns,
    *,
    r: int = 2,
    beta_lik: float = 1.0,
    seed: int = 0,
    out_dir: str | Path | None = None,
    progress: bool = False,
    batch_points: int | None = None,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
    predict: bool = True,
    llcs: dict[str, float] | None = None,
    **overrides,
) -> dict:
    """Posterior phase mass and chain occupancy at every n of `ns` (SPEC 3).

    Sampler settings default to QUICK (seeds, chains, replicas, n_temps, beta_min, n_warmup,
    n_draws (the budget of sampling rounds), max_steps (ticks per round), plain_draws,
    target_se, block, min_draws: see _sample_ladders); pass any as keyword arguments (or
    **PAPER).
    out_dir: save each finished n there and skip n already saved (resumable).
    batch_points: how many n to sample in one batched call (default all); each n is saved as
    soon as its data sets are finished, whatever the batching.
    device: where the sampling runs (data, chains and keys live there; results come back to
    the CPU).
    predict: add the predicted n_c of the zoo (predicted_transitions; llcs supplies lambdas
    the zoo lacks, e.g. SGLD estimates at 4-gons).
    Returns aggregate(...) plus 'points' (per-n dicts), 'settings', 'transitions' (predicted
    n_c, or [] with 'transitions_error' when the zoo cannot provide them) and
    'omitted_transitions' (a sentence naming phases seen without a lambda).
    """
    ns, cfg = _check_sweep(c, r, beta_lik, seed, ns, overrides)
    settings = _settings(c, r, beta_lik, seed, cfg)
    out_dir = Path(out_dir) if out_dir is not None else None

    done: dict[int, dict] = {n: _load_point(point_path(out_dir, c, n), settings) for n in ns
                             if out_dir is not None and _reusable(point_path(out_dir, c, n))}
    todo = [n for n in ns if n not in done]
    step = batch_points or max(1, len(todo))
    chunks = [todo[i : i + step] for i in range(0, len(todo), step)]

    def on_point(res: dict) -> None:
        done[res["n"]] = res
        if out_dir is not None:
            _save_point(point_path(out_dir, c, res["n"]), res, settings)

    for chunk in tqdm(chunks, desc=f"posterior c={c}", disable=not progress or len(chunks) < 2):
        _run_chunk(c, r, chunk, beta_lik, seed, cfg, dtype, device, progress, on_point)
    points = [done[n] for n in ns]
    result = aggregate(points)
    result.update(points=points, settings=settings)
    result["transitions"], result["omitted_transitions"] = [], ""
    if predict:
        add_predictions(result, c, beta_lik, llcs)
    return result


def save_summary(path: str | Path, result: dict) -> None:
    """Save a phase_sweep result (arrays over the n-grid + settings, phases, transitions and
    per-n diagnostics as JSON) for plotting (tms.report.plots.posterior)."""
    arrays = {k: result[k] for k in ("ns", "mass", "mass_se", "mass_mc_se", "occupancy", "occupancy_se")}
    record = dict(
        settings=result["settings"], phases=list(result["phases"]), transitions=result.get("transitions", []),
        transitions_error=result.get("transitions_error"), omitted_transitions=result.get("omitted_transitions", ""),
        diagnostics={str(p["n"]): p["diag"] for p in result["points"]},
    )
    io.save_result(path, arrays, record)
