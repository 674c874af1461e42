"""The free-energy sweeps (docs/SPEC.md section 3): replica-exchange ladders over the n-grid on
seeded or the researcher's own data sets (both readings of the samples), and the local ladders
confined to one phase that give lambda_Bayes."""
from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from tms.bayes import sweep
from tms.bayes.posterior import cold_slot, data_seed, ladder_start, ladder_target, with_dims
from tms.bayes.settings import FreeEnergySettings, FreeEnergySweep, LocalLadders
from tms.bayes.free_energy.estimators import Record, WbicLambda, ladder_fractions, wbic_lambda
from tms.bayes.free_energy.terms import MAX_PERM_C, data_term, sorted_losses, zoo_point
from tms.core import checks, io, rng
from tms.samplers import compiled, tempering
from tms.theory import zoo
from tms.theory.data import sample_inputs
from tms.theory.loss import (SortedData, flatten_params, sorted_data, stack_sorted,
                             unflatten_params)
from tms.theory.phases import classify, classify_hull, wall_kernel

@dataclass
class FreeEnergyPoint(Record):
    """The free-energy sweep at one n, per data set (S), ladder (R) and phase (P) in both
    readings of the cold-slot draws (zoo: tms.theory.phases.classify, hull: classify_hull):
    ids of the data sets; phases_zoo / phases_hull (labels); frac_zoo / frac_hull (S, R, P),
    mass_seed_* (S, P) and mass_se_seed_* (S, P) over the ladders; round_trips (S, R);
    betas (S, K) final ladders; swap_rate (S, K-1); accept (S,); divergences (S,); theory
    labels and data_term (S, L) of each (None without)."""

    OPTIONAL = ("data_term",)

    n: int
    ids: list
    phases_zoo: list
    phases_hull: list
    frac_zoo: np.ndarray
    frac_hull: np.ndarray
    mass_seed_zoo: np.ndarray
    mass_se_seed_zoo: np.ndarray
    mass_seed_hull: np.ndarray
    mass_se_seed_hull: np.ndarray
    round_trips: np.ndarray
    betas: np.ndarray
    swap_rate: np.ndarray
    accept: np.ndarray
    divergences: np.ndarray
    theory_labels: list = field(default_factory=list)
    data_term: np.ndarray | None = None


@dataclass(frozen=True)
class LocalLambda(WbicLambda):
    """lambda_Bayes of one phase (wbic_lambda's record) and its ladders: betas (S, K),
    round_trips (S, R), accept (S,), wall (S,) the fraction of transitions rejected at the wall."""

    betas: np.ndarray | None = None
    round_trips: np.ndarray | None = None
    accept: np.ndarray | None = None
    wall: np.ndarray | None = None


@dataclass(frozen=True)
class LocalLambdas(Record):
    """local_lambda's result: the labels, the settings (and n_used, the sample size), the data
    sets' ids, and per label its LocalLambda."""

    labels: list
    settings: dict
    ids: list
    per_label: dict

    @classmethod
    def from_record(cls, record: dict) -> "LocalLambdas":
        """From the saved record (the arrays as lists)."""
        return cls(record["labels"], record["settings"], record["ids"],
                   {k: LocalLambda.from_record(v) for k, v in record["per_label"].items()})


class LadderRun(NamedTuple):
    """Replica-exchange ladders run (run_ladders): draws (T, G, R, d) at the coldest slot, or
    (T, G, R, K, d) with all slots; betas (G, K) final; swap_rate (G, K-1); round_trips
    (G, R); accept (G,) mean Metropolis acceptance; divergences (G,) while sampling and
    divergence_rate (G,) per transition."""

    draws: torch.Tensor
    betas: torch.Tensor
    swap_rate: torch.Tensor
    round_trips: torch.Tensor
    accept: torch.Tensor
    divergences: torch.Tensor
    divergence_rate: torch.Tensor


def run_ladders(target: tempering.Target, theta0: torch.Tensor, keys: torch.Tensor, betas: torch.Tensor,
                n_warmup: int, n_draws: int, *, all_slots: bool = False, progress: bool = False,
                desc: str = "ladders") -> LadderRun:
    """Warm up and sample replica-exchange ladders (tms.samplers.tempering), batched.

    theta0 (G, R, K, d), keys (G, R, K) chain keys, betas (G, 1, K) (one ladder per item G,
    re-placed in warm-up from the swap rates pooled over its R ladders); n_warmup rounds of
    warm-up, n_draws of sampling (target.n_ticks leapfrog ticks a round).
    """
    state = tempering.init(theta0, keys, target, betas)
    state, _ = tempering.warmup(state, target, n_warmup, progress=progress, desc=f"{desc} warm-up")
    record = (lambda th: th.clone()) if all_slots else cold_slot
    state, out = tempering.sample(state, target, n_draws, record=record, progress=progress, desc=desc)
    return ladder_summary(out, state)


def ladder_summary(out: tempering.Sampled, state: tempering.SamplerState) -> LadderRun:
    """run_ladders' result from tempering.sample's and the final state."""
    trans = out.transitions.sum((1, 2)).clamp(min=1)
    return LadderRun(draws=out.draws, betas=state.betas[:, 0], swap_rate=out.swap_rate.mean(1),
                     round_trips=out.round_trips, accept=(out.accept_rate * out.transitions).sum((1, 2)) / trans,
                     divergences=out.divergences.sum((1, 2)), divergence_rate=out.divergences.sum((1, 2)) / trans)


def _label_draws(draws: torch.Tensor, r: int, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Both readings of draws (..., d): zoo labels and hull labels, numpy str (...)."""
    W, b = unflatten_params(draws.double().cpu(), r, c)
    return np.asarray(classify(W, b)), np.asarray(classify_hull(W, b))


def _as_X(x, c: int, dtype) -> torch.Tensor:
    X = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).to(dtype)
    if X.dim() != 2 or X.shape[1] != c:
        raise ValueError(f"every data set must be an array of shape (n, c = {c}), got {tuple(X.shape)}")
    return X


def data_id(X: torch.Tensor) -> str:
    """SHA-256 of a data set's values (float64): a user data set's identity in saved settings."""
    return hashlib.sha256(np.ascontiguousarray(X.double().cpu().numpy()).tobytes()).hexdigest()[:16]


def build_point(n: int, sl: slice, out: LadderRun, zl: np.ndarray, hl: np.ndarray, dterm, theory: list[str],
                ids) -> FreeEnergyPoint:
    """The sweep result at one n: its data sets are the items sl of the batch (cold-slot
    labels zl, hl (T, G, R); out: ladder_summary's)."""
    pz = sorted(set(np.unique(zl[:, sl]).tolist()))
    ph = sorted(set(np.unique(hl[:, sl]).tolist()))
    fz, fh = ladder_fractions(zl[:, sl], pz), ladder_fractions(hl[:, sl], ph)
    R = fz.shape[1]
    return FreeEnergyPoint(n=n, ids=list(ids), phases_zoo=pz, phases_hull=ph, frac_zoo=fz, frac_hull=fh,
                           mass_seed_zoo=fz.mean(1), mass_se_seed_zoo=fz.std(1, ddof=1) / math.sqrt(R),
                           mass_seed_hull=fh.mean(1), mass_se_seed_hull=fh.std(1, ddof=1) / math.sqrt(R),
                           round_trips=out.round_trips[sl].cpu().numpy(), betas=out.betas[sl].cpu().numpy(),
                           swap_rate=out.swap_rate[sl].cpu().numpy(), accept=out.accept[sl].cpu().numpy(),
                           divergences=out.divergences[sl].cpu().numpy(), theory_labels=list(theory),
                           data_term=None if dterm is None else dterm[sl])


POINT_ARRAYS = ("frac_zoo", "frac_hull", "mass_seed_zoo", "mass_se_seed_zoo", "mass_seed_hull", "mass_se_seed_hull",
                "round_trips", "betas", "swap_rate", "accept", "divergences", "data_term")
POINT_FIELDS = ("n", "ids", "phases_zoo", "phases_hull", "theory_labels")


def _sweep_phase(c: int, r: int, beta_lik: float, seed: int, st: FreeEnergySweep,
                 theory: list[str]) -> sweep.Phase:
    """Replica-exchange ladders (G, R, K, d) over every data set of a chunk; at the end the
    cold-slot draws in both readings, the data term of each data set and a point per n."""
    def blocked(records, blk: sweep.Block):
        out, data = ladder_summary(blk.out, blk.state), blk.batch.data
        zl, hl = _label_draws(out.draws, r, c)  # (T, G, R)
        dterm = data_term(SortedData(*(t.cpu() for t in data)), c, theory) if theory else None
        points, g = [], 0
        for it in blk.batch.items:
            points.append((it.n, build_point(it.n, slice(g, g + len(it.data)), out, zl, hl, dterm, theory, it.ids)))
            g += len(it.data)
        return records, list(range(len(blk.alive))), points

    return sweep.Phase(ladder_start(seed, rng.FE_SWEEP, st, r * c + c),
                       lambda data: ladder_target(data, r, c, beta_lik, st.max_steps), st.n_warmup, st.n_draws,
                       st.n_draws, cold_slot, blocked, desc="replica exchange")


def save_point(path: Path, pt: FreeEnergyPoint, settings: dict) -> None:
    """A sweep point: its arrays (POINT_ARRAYS) and record (settings, POINT_FIELDS)."""
    arrays = {k: getattr(pt, k) for k in POINT_ARRAYS if getattr(pt, k) is not None}
    io.save_result(path, arrays, dict(settings=settings, **{k: getattr(pt, k) for k in POINT_FIELDS}))


def load_point(path: Path) -> FreeEnergyPoint:
    """A point saved by save_point (its settings checked by the sweep, tms.bayes.sweep)."""
    arrays, rec = io.load_result(path)
    return FreeEnergyPoint(**{k: rec[k] for k in POINT_FIELDS}, **{k: arrays.get(k) for k in POINT_ARRAYS})


def sweep_data(c: int, datasets, settings: FreeEnergySweep | None = None, *, r: int = 2, beta_lik: float = 1.0,
               seed: int = 0, ids=None, out_dir: str | Path | None = None, progress: bool = False,
               batch_points: int | None = None, save_every: float = 60.0, dtype: torch.dtype = torch.float64,
               device: str | torch.device = "cpu", theory: bool = True, **changes) -> list[FreeEnergyPoint]:
    """Phase masses per data set and ladder at every n, from replica exchange (SPEC 3), on
    the researcher's own data sets.

    datasets: a list over the n-grid, item i a list of S_i arrays X (n_i, c) (numpy or torch,
    high-sparsity rows mu e_j) that share one sample size n_i; the n_i distinct. ids: per
    item a list of S_i identities saved with the result (default: SHA-256 of the values).
    settings: the ladders' (default tms.bayes.settings.FreeEnergySettings().sweep; its `seeds`
    is not used here) with `changes` applied. out_dir: each finished n saved there as
    fe_c{c}_n{n} and skipped when rerun with the same settings and data; the sampler state
    checkpointed every save_every seconds and on an interrupt (tms.bayes.sweep). theory: add
    the exact data term of every zoo label (c <= MAX_PERM_C). Returns the points, in the order
    of datasets.
    """
    st = (settings if settings is not None else FreeEnergySettings().sweep).replace(**changes)
    checks.positive_int(c, "c", minimum=3)
    checks.positive_int(r, "r")
    if r != 2:
        raise ValueError(f"the phase readings need r = 2, got r = {r}")
    checks.positive_float(beta_lik, "beta_lik")
    checks.positive_float(save_every, "save_every", allow_zero=True)
    items = _items(c, datasets, ids, dtype)
    theory_labels = zoo.labels(c) if theory and c <= MAX_PERM_C else []
    record = dict(c=c, r=r, beta_lik=float(beta_lik), seed=seed, **{k: v for k, v in st.as_record().items()
                                                                      if k != "seeds"})
    job = sweep.Job(f"fe_c{c}", record, lambda batch: [_sweep_phase(c, r, beta_lik, seed, st, theory_labels)],
                    save=save_point, load=load_point, dtype=dtype, device=device)
    done = sweep.run(job, items, out_dir=out_dir, batch_points=batch_points, save_every=save_every,
                     progress=progress, desc=f"free energy sweep c={c}")
    return [done[it.n] for it in items]


def _items(c: int, datasets, ids, dtype) -> list[sweep.Item]:
    """The sweep's items (n, [X (n, c)], ids) checked: non-empty, one n per item, distinct n."""
    if not isinstance(datasets, (list, tuple)) or not datasets:
        raise ValueError("datasets must be a non-empty list over the n-grid of lists of arrays X (n, c)")
    items = []
    for i, group in enumerate(datasets):
        Xs = [_as_X(x, c, dtype) for x in (group if isinstance(group, (list, tuple)) else [group])]
        if not Xs or len({X.shape[0] for X in Xs}) != 1:
            raise ValueError(f"datasets[{i}] must hold one or more arrays of one sample size n")
        gid = list(ids[i]) if ids is not None else [data_id(X) for X in Xs]
        if len(gid) != len(Xs):
            raise ValueError(f"ids[{i}] must name each of the {len(Xs)} data sets of datasets[{i}]")
        items.append(sweep.Item(int(Xs[0].shape[0]), Xs, gid))
    ns = [it.n for it in items]
    if len(set(ns)) != len(ns):
        raise ValueError(f"the sample sizes of datasets must be distinct, got {ns}")
    return items


def sweep_seeds(c: int, ns, settings: FreeEnergySweep | None = None, *, seed: int = 0,
                **kw) -> list[FreeEnergyPoint]:
    """sweep_data on synthetic data sets: at each n, settings.seeds data sets drawn from the
    high-sparsity distribution with the seeds tms.bayes.posterior.data_seed(seed, n, s) (the
    same data sets as tms.bayes.posterior.phase_sweep); the data seeds are the ids. kw: those
    of sweep_data, and field changes of the settings (seeds=2, ...)."""
    names = {f.name for f in dataclasses.fields(FreeEnergySweep)}
    st = (settings if settings is not None else FreeEnergySettings().sweep).replace(
        **{k: kw.pop(k) for k in list(kw) if k in names})
    ns = [checks.positive_int(int(n), "n", minimum=2) for n in ns]
    dtype = kw.get("dtype", torch.float64)
    dsets = [[sample_inputs(n, c, data_seed(seed, n, s), dtype=dtype) for s in range(st.seeds)] for n in ns]
    ids = [[data_seed(seed, n, s) for s in range(st.seeds)] for n in ns]
    return sweep_data(c, dsets, st, seed=seed, ids=ids, **kw)


# ---- lambda from local ladders (SPEC 3, 5: independent of SGLD) ---------------------------------------


def lambda_labels(c: int) -> list[str]:
    """Default phases for the three-way lambda table: p = 0 families with k >= max(4, c - 2)
    (c = 6: 6, 5+, 5, 4++, 4+, 4)."""
    return [lab for lab in zoo.labels(c) if (k := zoo.parse_label(lab))[2] == 0 and k[0] >= max(4, c - 2)]


def _energies(draws: torch.Tensor, data: SortedData, r: int, c: int, beta_lik: float) -> torch.Tensor:
    """beta_lik n L_n of draws (T, G, R, K, d) on data (G,) -> (T, G, R, K)."""
    th = draws.permute(1, 0, 2, 3, 4)  # (G, T, R, K, d)
    W, b = unflatten_params(th.to(data.mu.dtype), r, c)
    E = beta_lik * with_dims(data, 3).n * sorted_losses(W, b, with_dims(data, 3))
    return E.permute(1, 0, 2, 3)


def restricted(energy_grad, labels: np.ndarray, r: int, c: int, reader=classify):
    """The energy with a wall: +inf where the zoo reading of theta is not the item's phase.

    energy_grad: theta (G, ..., d) -> (E (G, ...), grad); labels (G,) str: the phase of each
    item. HMC proposals that leave the phase are then rejected (tms.samplers.rounds treats
    a non-finite energy as a divergence), so the chains sample the posterior restricted to
    the phase region, exp(-beta E - |w|^2/2) 1[classify(w) = label] (SPEC 3: a local free
    energy is the integral over that region). reader (W, b) -> labels: the zoo reading, or a
    census's (tms.theory.census.Census.read_posterior) at any r. With the zoo reading and an
    energy_grad that carries a compiled one-row form (`kernel`), the walled energy carries one
    too (tms.theory.phases.wall_kernel), so HMC rounds on the CPU run compiled: the same
    walls and numbers to rounding as this torch function (a census reading stays on it)."""
    codes = {lab: i for i, lab in enumerate(sorted(set(labels.tolist())))}
    want = torch.tensor([codes[lab] for lab in labels.tolist()])

    def f(theta):
        E, g = energy_grad(theta)
        fin = torch.isfinite(theta).all(-1)
        W, b = unflatten_params(torch.where(fin.unsqueeze(-1), theta, torch.zeros_like(theta)).detach(), r, c)
        lab = reader(W, b)
        got = torch.from_numpy(np.vectorize(lambda x: codes.get(x, -1), otypes=[np.int64])(lab)).to(theta.device)
        ok = fin & (got == want.to(theta.device).reshape((-1,) + (1,) * (got.dim() - 1)))
        return torch.where(ok, E, torch.full_like(E, math.inf)), g

    kernel = getattr(energy_grad, "kernel", None)
    if isinstance(kernel, compiled.RowEnergy) and reader is classify and r == 2:
        walled = wall_kernel(c, kernel.energy, kernel.scratch, kernel.bind, labels)
        if walled is not None:
            f.kernel = compiled.RowEnergy(*walled)
    return f


def local_lambda(c: int, labels=None, settings: LocalLadders | None = None, *, r: int = 2, beta_lik: float = 1.0,
                 seed: int = 0, data=None, progress: bool = False, dtype: torch.dtype = torch.float64,
                 device: str | torch.device = "cpu", census=None, **changes) -> LocalLambdas:
    """lambda_Bayes of each phase from local ladders restricted to the phase (SPEC 3).

    For every label and data set, R ladders of K temperatures beta_lo..1 (geometric, then
    re-placed in warm-up) at one sample size n, every slot started at the zoo point and
    confined to the phase by a wall (`restricted`): E = beta_lik n L_n at every slot and
    round, and `wbic_lambda` on them. settings: default tms.bayes.settings.
    FreeEnergySettings().local, with `changes` applied. data: optional list of S arrays
    X (n, c) instead of the synthetic data sets data_seed(seed, n, s). census: a census of
    (r, c) (tms.theory.census.Census): labels are its points', the ladders start there and its
    posterior reading draws the wall (any r; its identity joins the settings).
    """
    st = (settings if settings is not None else FreeEnergySettings().local).replace(**changes)
    labels = list(labels) if labels is not None else lambda_labels(c)
    Xs = [_as_X(x, c, dtype) for x in data] if data is not None else \
        [sample_inputs(st.n, c, data_seed(seed, st.n, s), dtype=dtype) for s in range(st.seeds)]
    n, S, R, K, d = int(Xs[0].shape[0]), len(Xs), st.replicas, st.n_temps, r * c + c
    ids = [data_id(X) for X in Xs] if data is not None else [data_seed(seed, n, s) for s in range(S)]
    base = stack_sorted([sorted_data(X) for X in Xs])
    data_g = SortedData(*(t.repeat((len(labels),) + (1,) * (t.dim() - 1)).to(device) for t in base))  # label-major
    start = _flat_point if census is None else (lambda lab, c, dt: _census_point(census, lab, dt))  # noqa: E731
    theta0 = torch.stack([start(lab, c, dtype) for lab in labels]).repeat_interleave(S, 0).to(device)
    keys = sweep.chain_keys(seed, [(n, s, rng.FE_LOCAL, _label_code(lab)) for lab in labels for s in range(S)], (R, K),
                            device)
    betas = tempering.geometric_ladder(K, st.beta_lo, dtype=dtype).to(device).expand(len(labels) * S, 1, K).clone()
    tgt = ladder_target(data_g, r, c, beta_lik, st.max_steps)
    reader = classify if census is None else census.read_posterior
    tgt = tgt._replace(energy_grad=restricted(tgt.energy_grad, np.repeat(labels, S), r, c, reader))
    out = run_ladders(tgt, theta0[:, None, None].expand(-1, R, K, d).clone(), keys, betas, st.n_warmup, st.n_draws,
                      all_slots=True, progress=progress, desc=f"local ladders ({len(labels)} phases)")
    E = _energies(out.draws, data_g, r, c, beta_lik).cpu().numpy()  # (T, G, R, K)
    zl = _label_draws(out.draws, r, c)[0] if census is None else \
        np.asarray(reader(*unflatten_params(out.draws.double().cpu(), r, c)))
    per = {}
    for i, lab in enumerate(labels):
        g, T = slice(i * S, (i + 1) * S), E.shape[0]
        bet = out.betas[g].cpu().numpy()  # (S, K)
        res = wbic_lambda(E[:, g].reshape(T, S * R, K), (zl[:, g] == lab).reshape(T, S * R, K),
                          np.repeat(bet, R, 0), np.repeat(np.arange(S), R))
        per[lab] = LocalLambda(**vars(res), betas=bet, round_trips=out.round_trips[g].cpu().numpy(),
                               accept=out.accept[g].cpu().numpy(), wall=out.divergence_rate[g].cpu().numpy())
    record = dict(c=c, r=r, beta_lik=float(beta_lik), seed=seed, **st.as_record(), n_used=n)
    if census is not None:
        record["census"] = census.identity()
    return LocalLambdas(labels, record, ids, per)


def _flat_point(label: str, c: int, dtype) -> torch.Tensor:
    W, b = zoo_point(label, c)
    return flatten_params(W, b).to(dtype)


def _census_point(census, label: str, dtype) -> torch.Tensor:
    (q,) = [q for q in census.points if q.label == label]
    return flatten_params(q.W, q.b).to(dtype)


def _label_code(label: str) -> int:
    return int.from_bytes(label.encode(), "little")

