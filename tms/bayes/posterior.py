"""The Bayesian experiment (SPEC 3): posterior phase mass against the sample size n.

Posterior p(w | D_n) proportional to N(0, I)(w) * exp(-beta_lik * n * L_n(w)) on all
d = r*c + c parameters; beta_lik = 1 is the SPEC convention (a Gaussian likelihood of
variance 1/2 per output), beta_lik = 1/2 the unit-variance one. The likelihood part is
tempered by a replica ladder, the prior |w|^2/2 is not (ladder_target; the free-energy
sweeps sample the same target). Phase mass. Chains at the target temperature seldom cross
between phases, so the fraction of chains in a phase (chain occupancy) reflects basins of
attraction of the start, not posterior mass. The mass is estimated by replica exchange over the
likelihood temperature (tms.samplers.tempering): K tempered posteriors exp(-beta_k beta_lik n
L_n - |w|^2/2), beta_k geometric from beta_min to 1, swaps between neighbours; the slot at
beta = 1 samples the posterior, and the hot end, close to the prior, moves between phases. R
independent replica ladders per data set give the mass as the mean over ladders of the
fraction of beta = 1 draws in the phase, with standard error std / sqrt(R) across ladders
(independent by construction, so autocorrelation is accounted for). Across S data sets
(seeds) the mass reported at n is the mean over data sets, its error the standard error over
data sets (std / sqrt(S), which contains the Monte Carlo error), or the Monte Carlo error when
S = 1. Chain occupancy, from `n_chains` plain HMC chains per data set started from the prior,
is reported beside it under that name. Draws are thinned to at most MAX_KEPT per chain before
classification (memory), which changes no expectation.

The sweep runs on the one sweep engine (tms.bayes.sweep) in two phases, plain chains (G, C, d)
then ladders (G, R, K, d), data sets (n-grid x seeds) the leading dim G: one batched sampler
call serves a whole chunk of the n-grid, each finished n is saved at once (tms.bayes.posterior_point)
and the sampler state is checkpointed, so a rerun resumes. Every random number is
counter-based per (seed, n, data set, chain) and no arithmetic depends on an item's place in
the batch, so a point's numbers are the same to the last bit alone, chunked with other n, with
any number of data sets, or resumed (tests/bayes/test_posterior_layout.py).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tms.bayes import predictions, sweep
from tms.bayes.settings import PosteriorSettings, SweepLadders
from tms.bayes.posterior_point import (MAX_KEPT, PosteriorPoint, build_point, classify_draws, ladders_done,
                                       load_point, point_problem, save_point, summaries)
from tms.core import checks, io, rng
from tms.samplers import compiled, tempering
from tms.theory.data import sample_inputs
from tms.theory.loss import SortedData, empirical_loss_sorted, loss_and_grad_flat, row_energy, unflatten_params

def data_seed(seed: int, n: int, s: int) -> int:
    """Seed of data set s at sample size n: independent of the grid and of the batching."""
    return int(np.random.SeedSequence([seed, n, s]).generate_state(1)[0])


def with_dims(data: SortedData, k: int) -> SortedData:
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


def energy_grad_fn(data: SortedData, r: int, c: int, beta_lik: float = 1.0, reweight: tuple | None = None):
    """theta (G, ..., d) -> (beta_lik n L_n (G, ...), its gradient (G, ..., d)): the exact
    fused energy and gradient of tms.theory.loss (SPEC 1, no autograd), the samplers' hot path.
    reweight (i, h): the likelihood under q_h = (1 - h) q + h q'_i instead (docs/SPEC.md section
    7), beta_lik n [(1 - h) L_n + h L'_{n,i}], L'_{n,i} the mean loss of feature i's inputs."""

    scale = beta_lik * data.n  # (G, 1...) broadcasting with the chains
    if reweight is not None:
        return _reweighted_energy_grad(data, r, c, scale, *reweight)

    def energy_grad(theta: torch.Tensor):
        return loss_and_grad_flat(theta, r, c, data, scale=scale)

    kernel = row_energy(r, c, data, scale)
    if kernel is not None:  # HMC rounds on the CPU run compiled (tms.samplers.compiled)
        energy_grad.kernel = compiled.RowEnergy(*kernel)
    return energy_grad


def feature_inputs(data: SortedData, feature: int) -> SortedData:
    """The inputs of one feature alone, as sorted data of n_i = count[feature] inputs."""
    keep = torch.arange(data.mu.shape[-2], device=data.mu.device) == feature  # (c,)
    inf = torch.full((), float("inf"), dtype=data.mu.dtype, device=data.mu.device)
    return SortedData(torch.where(keep[:, None], data.mu, inf), data.cum1 * keep[:, None], data.cum2 * keep[:, None],
                      data.count * keep, data.count[..., feature].to(data.n.dtype).reshape(data.n.shape))


def _reweighted_energy_grad(data: SortedData, r: int, c: int, scale, feature: int, h: float):
    """energy_grad of beta_lik n [(1 - h) L_n + h L'_{n,feature}] (scale = beta_lik n)."""
    part = feature_inputs(data, feature)

    def energy_grad(theta: torch.Tensor):
        U, g = loss_and_grad_flat(theta, r, c, data, scale=scale * (1 - h))
        Ui, gi = loss_and_grad_flat(theta, r, c, part, scale=scale * h)
        return U + Ui, g + gi

    return energy_grad


def prior(theta: torch.Tensor) -> torch.Tensor:
    """-log N(0, I) up to a constant: |theta|^2 / 2, (..., d) -> (...)."""
    return 0.5 * (theta**2).sum(-1)


def prior_grad(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """|theta|^2 / 2 and its gradient theta."""
    return prior(theta), theta


prior_grad.kernel_prior = True  # the N(0, I) prior the compiled HMC round adds itself


def ladder_target(data: SortedData, r: int, c: int, beta_lik: float, max_steps: int,
                  reweight: tuple | None = None) -> tempering.Target:
    """Replica ladders (G, R, K, d) of the posterior on data sets (G,): the tempered part
    beta_lik n L_n (exact fused loss; reweighted: energy_grad_fn) and the N(0, I) prior,
    max_steps leapfrog ticks a round."""
    return tempering.Target(energy_grad_fn(with_dims(data, 2), r, c, beta_lik, reweight), prior_grad, max_steps)


def plain_target(data: SortedData, r: int, c: int, beta_lik: float, max_steps: int,
                 reweight: tuple | None = None) -> tempering.Target:
    """Plain chains (G, C, d) of the posterior at beta = 1 on data sets (G,)."""
    return tempering.Target(energy_grad_fn(with_dims(data, 1), r, c, beta_lik, reweight), prior_grad, max_steps)


def ladder_start(seed: int, family: int, ladders: SweepLadders, d: int):
    """start(batch) of replica ladders (G, R, K, d) (a sweep.Phase's): chains from prior
    draws, keys per (seed, n, s, family), geometric temperatures from beta_min to 1."""
    R, K = ladders.replicas, ladders.n_temps

    def start(batch):
        dev, dt, G = batch.data.mu.device, batch.data.mu.dtype, len(batch.owner)
        keys = sweep.chain_keys(seed, sweep.dataset_ids(batch, family), (R, K), dev)
        betas = tempering.geometric_ladder(K, ladders.beta_min, dtype=dt).to(dev).expand(G, 1, K).clone()
        return rng.normal(keys, 0, d, dt, rng.START), keys, betas

    return start


def cold_slot(theta: torch.Tensor) -> torch.Tensor:
    """The draw a ladder keeps: its beta = 1 slot, float32: (..., K, d) -> (..., d)."""
    return theta[..., -1, :].to(torch.float32)


def _kept_draws(rec: dict, data: SortedData, r: int, c: int, beta_lik: float) -> dict:
    """One data set's beta = 1 ladder draws (T, R, d), thinned to at most MAX_KEPT['ladder']
    per ladder, as (R, T', ...): theta, labels, loss L_n and energy beta_lik n L_n + |w|^2/2.
    data: that data set alone (batch 1)."""
    theta, labels = np.concatenate(rec["draws"]), np.concatenate(rec["labels"])  # (T, R, d), (T, R)
    stride = math.ceil(theta.shape[0] / MAX_KEPT["ladder"])
    theta, labels = theta[::stride].swapaxes(0, 1), labels[::stride].T  # (R, T', d), (R, T')
    th = torch.as_tensor(theta, device=data.mu.device).to(data.mu.dtype)[None]  # (1, R, T', d)
    W, b = unflatten_params(th, r, c)
    loss = empirical_loss_sorted(W, b, with_dims(data, 2))
    energy = beta_lik * data.n.reshape(-1, 1, 1) * loss + prior(th)
    return dict(theta=theta, labels=labels, loss=loss[0].cpu().numpy(), energy=energy[0].cpu().numpy(),
                thin_stride=stride, max_kept=MAX_KEPT["ladder"])


def _plain_phase(c: int, r: int, beta_lik: float, seed: int, st: PosteriorSettings, reweight=None,
                 census=None) -> sweep.Phase:
    """Plain chains at beta = 1 from prior draws (chain occupancy), (G, C, d): their labels,
    invariant summaries (tms.bayes.posterior_point.summaries) and statistics go to
    records['plain']."""
    d = r * c + c

    def start(batch):
        keys = sweep.chain_keys(seed, sweep.dataset_ids(batch, rng.POSTERIOR_PLAIN), (st.n_chains,),
                                batch.data.mu.device)
        return rng.normal(keys, 0, d, batch.data.mu.dtype, rng.START), keys, None

    def blocked(records, blk: sweep.Block):
        draws, data = blk.out.draws, blk.batch.data
        summ = np.concatenate([summaries(part.to(data.mu.dtype), with_dims(data, 1), r, c).cpu().numpy()
                               for part in draws.split(16)])  # (T, G, C, 2c+1), parts bound memory
        plain = dict(labels=classify_draws(draws.cpu().numpy(), r, c, census), summ=summ,  # labels (T, G, C)
                     accept_rate=blk.out.accept_rate, divergences=blk.out.divergences, mean_steps=blk.out.mean_steps)
        return dict(records, plain=plain), list(range(len(blk.alive))), []

    return sweep.Phase(start, lambda data: plain_target(data, r, c, beta_lik, st.max_steps, reweight), st.n_warmup,
                       st.plain_draws, st.plain_draws, lambda th: th.to(torch.float32), blocked,
                       thin=math.ceil(st.plain_draws / MAX_KEPT["plain"]), desc="plain chains")


def _ladder_record(out: tempering.Sampled, i: int) -> dict:
    """Sums over one block of the sampling statistics of data set i (ladders (R, K))."""
    return dict(accept=(out.accept_rate[i] * out.transitions[i]).sum().item(),
                transitions=out.transitions[i].sum().item(), divergences=out.divergences[i].sum().item(),
                swap_acc=out.swap_acc[i].sum(0).cpu().numpy(), swap_prop=out.swap_prop[i].sum(0).cpu().numpy(),
                round_trips=out.round_trips[i].cpu().numpy())


def _merged(rec: dict, labels: np.ndarray, draws: np.ndarray, sums: dict) -> dict:
    """A data set's record with one more block: its labels (T, R), draws (T, R, d), sums."""
    new = dict(rec, labels=rec["labels"] + [labels], draws=rec["draws"] + [draws])
    new.update({k: rec[k] + v if k in rec else v for k, v in sums.items()})
    return new


def _ladder_phase(c: int, r: int, beta_lik: float, seed: int, st: PosteriorSettings, reweight=None,
                  census=None) -> sweep.Phase:
    """Replica exchange for every data set of a chunk, (G, R, K, d) with data (G, 1, 1).

    After warm-up (temperatures re-placed per data set), sampling runs in blocks of
    `block` rounds; a data set stops once, after at least `min_draws` rounds, every
    phase mass has a standard error below `target_se` (across its R ladders), or after
    `n_draws` rounds (the budget), and leaves the batch; a point is built as soon as its
    S data sets have stopped (records: 'recs' of the data sets sampled, 'finished' of those
    waiting for the others of their n)."""
    def warmed(records, state, info):
        recs = {g: dict(labels=[], draws=[], warmup_divergences=info.divergences[g].sum().item(),
                        betas=state.betas[g, 0].cpu().numpy(), step_size=state.step_size[g].mean(0).cpu().numpy())
                for g in range(state.betas.shape[0])}
        return dict(records, recs=recs, finished={})

    def blocked(records, blk: sweep.Block):
        labels = classify_draws(blk.out.draws.cpu().numpy(), r, c, census)  # (T, G_alive, R)
        recs, finished, leaving, points = dict(records["recs"]), dict(records["finished"]), [], []
        for i, g in enumerate(blk.alive):  # bookkeeping per data set, once per block
            rec = _merged(recs.pop(g), labels[:, i], blk.out.draws[:, i].cpu().numpy(), _ladder_record(blk.out, i))
            if blk.rounds >= st.n_draws or (blk.rounds >= st.min_draws
                                                and ladders_done(rec["labels"], st.target_se)):
                leaving.append(i)
                finished[g] = _finished(rec, blk, g, r, c, beta_lik)
                point = _complete_point(records["plain"], finished, blk.batch, blk.batch.owner[g])
                if point is not None:
                    points.append((point.n, point))
            else:
                recs[g] = rec
        return dict(records, recs=recs, finished=finished), leaving, points

    return sweep.Phase(ladder_start(seed, rng.POSTERIOR_LADDERS, st, r * c + c),
                       lambda data: ladder_target(data, r, c, beta_lik, st.max_steps, reweight), st.n_warmup,
                       st.n_draws, st.block, cold_slot, blocked, warmed=warmed, desc="replica exchange")


def _finished(rec: dict, blk: sweep.Block, g: int, r: int, c: int, beta_lik: float) -> dict:
    """A stopped data set's record: its rounds and kept draws in place of all its draws."""
    one = sweep.subset(blk.batch.data, [g])
    out = {k: v for k, v in rec.items() if k != "draws"}
    return dict(out, rounds=blk.rounds, kept=_kept_draws(rec, one, r, c, beta_lik))


def _complete_point(plain: dict, finished: dict, batch: sweep.Batch, item: int) -> PosteriorPoint | None:
    """The point of item (an n) once all its data sets are finished (taken out of `finished`)."""
    rows = [g for g, o in enumerate(batch.owner) if o == item]
    if not all(g in finished for g in rows):
        return None
    layout = dict(batch_ns=[it.n for it in batch.items], datasets_per_batch=len(batch.owner))
    return build_point(batch.items[item].n, [finished.pop(g) for g in rows], plain, slice(rows[0], rows[-1] + 1),
                       plain["summ"], layout)


def _check_args(c: int, r: int, beta_lik: float, seed: int, ns) -> list[int]:
    """phase_sweep's arguments beside its settings, checked: the n-grid as ints."""
    checks.positive_int(c, "c", minimum=2)
    checks.positive_int(r, "r")
    if r > c:
        raise ValueError(f"r must be <= c, got r = {r}, c = {c}")
    checks.positive_float(beta_lik, "beta_lik")
    checks.seed(seed, "seed")  # counter-based keys hash it: a non-negative int
    ns = [checks.whole_number(n, "n") for n in ns]
    if not ns or len(set(ns)) != len(ns):
        raise ValueError(f"ns must be a non-empty list of distinct sample sizes, got {ns}")
    return ns


def phase_sweep(c: int, ns, settings: PosteriorSettings | None = None, *, r: int = 2, beta_lik: float = 1.0,
                seed: int = 0, out_dir: str | Path | None = None, progress: bool = False,
                batch_points: int | None = None, save_every: float = 60.0, dtype: torch.dtype = torch.float64,
                device: str | torch.device = "cpu", predict: bool = True, llcs: dict[str, float] | None = None,
                reweight: tuple[int, float] | None = None, census=None, **changes) -> PhaseSweep:
    """Posterior phase mass and chain occupancy at every n of `ns` (SPEC 3).

    settings: the sampler's (tms.bayes.settings.PosteriorSettings, default its quick scale)
    with `changes` applied (field names: seeds=1, n_draws=200, ...; see _ladder_phase).
    out_dir: save each finished n there and skip n already saved (resumable); the sampler
    state of unfinished n is checkpointed there every save_every seconds and on an
    interrupt (tms.bayes.sweep), so a rerun resumes it.
    batch_points: how many n to sample in one batched call (default all); each n is saved as
    soon as its data sets are finished, whatever the batching.
    device: where the sampling runs (data, chains and keys live there; results come back to
    the CPU).
    predict: add the predicted n_c of the zoo (tms.bayes.predictions; llcs supplies lambdas
    the zoo lacks, e.g. SGLD estimates at 4-gons). reweight (i, h): sample the posterior of
    the likelihood reweighted towards feature i's inputs (energy_grad_fn; default off; recorded
    in the settings; the saved draws' energy stays beta_lik n L_n + |w|^2/2). census: a
    tms.theory.census.Census of (r, c) whose reading labels the draws (needed at r != 2; its
    identity joins the saved settings) and whose points give the predicted n_c (with llcs
    supplying lambdas it lacks). Returns a PhaseSweep (settings: the record each point saves,
    c, r, beta_lik, seed and the sampler's).
    """
    st = (settings if settings is not None else PosteriorSettings()).replace(**changes)
    ns = _check_args(c, r, beta_lik, seed, ns)
    checks.positive_float(save_every, "save_every", allow_zero=True)
    record = dict(c=c, r=r, beta_lik=float(beta_lik), seed=seed, **st.as_record())
    if reweight is not None:  # absent by default, so every existing record is unchanged
        checks.positive_int(int(reweight[0]) + 1, "reweight feature + 1", maximum=c)
        if not -1 < float(reweight[1]) < 1:
            raise ValueError(f"reweight h must lie in (-1, 1), got {reweight[1]!r}")
        record["reweight"] = [int(reweight[0]), float(reweight[1])]
    if census is not None or r != 2:  # absent at r = 2 without a census: every zoo-read record is unchanged
        record["census"] = _census_identity(census, r, c)
    items = [sweep.Item(n, [sample_inputs(n, c, data_seed(seed, n, s), dtype=dtype) for s in range(st.seeds)],
                        [data_seed(seed, n, s) for s in range(st.seeds)]) for n in ns]
    job = sweep.Job(f"posterior_c{c}", record,
                    lambda batch: [_plain_phase(c, r, beta_lik, seed, st, reweight, census),
                                   _ladder_phase(c, r, beta_lik, seed, st, reweight, census)],
                    save=save_point, load=load_point, problem=point_problem, dtype=dtype, device=device, records={})
    done = sweep.run(job, items, out_dir=out_dir, batch_points=batch_points, save_every=save_every,
                     progress=progress, desc=f"posterior c={c}")
    points = [done[n] for n in ns]
    result = PhaseSweep(**vars(aggregate(points)), points=points, settings=record)
    if predict and census is not None:
        predictions.add_census_predictions(result, census, beta_lik, llcs)
    elif predict:
        predictions.add_predictions(result, c, beta_lik, llcs)
    return result


def _census_identity(census, r: int, c: int) -> dict:
    """The census's identity (tms.theory.census.Census.identity) for the saved settings; at
    r != 2 the zoo reading does not apply, so a census is required."""
    if census is None:
        raise ValueError(f"r = {r} needs a census for its phase reading: pass census=tms.census({r}, {c})")
    if (census.r, census.c) != (r, c):
        raise ValueError(f"census is of (r, c) = ({census.r}, {census.c}), the sweep of ({r}, {c})")
    return census.identity()


@dataclass
class PhaseMass:
    """Phase mass over an n-grid: ns (N,), phases (P labels, the union over n), and (N, P)
    mass with mass_se (over data sets, or the Monte Carlo error when S = 1) and mass_mc_se,
    occupancy of the plain chains with occupancy_se."""

    ns: np.ndarray
    phases: list
    mass: np.ndarray
    mass_se: np.ndarray
    mass_mc_se: np.ndarray
    occupancy: np.ndarray
    occupancy_se: np.ndarray


@dataclass
class PhaseSweep(PhaseMass):
    """phase_sweep's result: the phase mass, the points (per n), the settings every point
    saved, the predicted transitions (tms.theory.zoo.TransitionRow, n_c scaled by beta_lik;
    tms.bayes.predictions), a sentence naming phases seen without a lambda, and why no
    transition could be predicted (None: they were)."""

    points: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    transitions: list = field(default_factory=list)
    omitted_transitions: str = ""
    transitions_error: str | None = None


def aggregate(points: list[PosteriorPoint]) -> PhaseMass:
    """Per-n results -> arrays over the n-grid and the union of phases.

    mass, mass_se, occupancy, occupancy_se: (N, P). mass_se is the standard error over data
    sets (std / sqrt(S)) when S >= 2, else the within-data-set Monte Carlo error.
    """
    phases = sorted({p for pt in points for p in pt.phases})
    N, P = len(points), len(phases)
    out = {k: np.zeros((N, P)) for k in ("mass", "mass_se", "mass_mc_se", "occupancy", "occupancy_se")}
    for i, pt in enumerate(points):
        idx = [phases.index(p) for p in pt.phases]
        ms, ses = np.asarray(pt.mass_seed), np.asarray(pt.mass_se_seed)
        oc, ocse = np.asarray(pt.occupancy_seed), np.asarray(pt.occupancy_se_seed)
        S = ms.shape[0]
        out["mass"][i, idx] = ms.mean(0)
        out["mass_mc_se"][i, idx] = np.sqrt((ses**2).sum(0)) / S
        out["mass_se"][i, idx] = ms.std(0, ddof=1) / math.sqrt(S) if S >= 2 else out["mass_mc_se"][i, idx]
        out["occupancy"][i, idx] = oc.mean(0)
        out["occupancy_se"][i, idx] = oc.std(0, ddof=1) / math.sqrt(S) if S >= 2 else np.sqrt((ocse**2).sum(0)) / S
    return PhaseMass(np.array([pt.n for pt in points]), phases, **out)


def save_summary(path: str | Path, result: PhaseSweep) -> None:
    """Save a phase_sweep result (arrays over the n-grid + settings, phases, transitions and
    per-n diagnostics as JSON) for plotting (tms.report.plots.posterior)."""
    arrays = {k: getattr(result, k) for k in ("ns", "mass", "mass_se", "mass_mc_se", "occupancy", "occupancy_se")}
    record = dict(
        settings=result.settings, phases=list(result.phases),
        transitions=[dataclasses.asdict(t) for t in result.transitions], transitions_error=result.transitions_error,
        omitted_transitions=result.omitted_transitions, diagnostics={str(p.n): p.diag for p in result.points},
    )
    io.save_result(path, arrays, record)
