"""The local learning coefficient estimator of Lau et al. (SPEC 5): one batched core, thin front ends.

    lambda_hat(w*) = nbeta * (E[L(w)] - L(w*)),

the expectation over the localised tempered posterior exp(-nbeta L(w) - (gamma/2)||w - w*||^2),
estimated by the SGLD chains of ``tms.samplers.sgld`` (w <- w - (eps/2)(nbeta grad L(w) +
gamma (w - w*)) + N(0, eps I)). ``nbeta`` is one explicit argument; the standard choice is
nbeta = n / log n (``default_nbeta``), i.e. beta = 1/log n.

One core (``sample_llc``: flat parameters theta (C..., d), centres C... x chains K batched,
the only Python loop over SGLD steps) and three front ends that only build the loss and its
gradient: ``estimate_llc`` (TMS W, b), ``estimate_llc_flat`` (any batched loss of a flat
vector) and ``tms.llc.modules.estimate_llc_model`` (any torch nn.Module, vmapped over chains).

Steps: every chain runs n_burnin + n_draws SGLD steps from w_0 = w*; the draws are the
losses L(w_t), t = n_burnin .. n_burnin + n_draws - 1 (L(w_t) is the loss the step at w_t
evaluates: the minibatch loss in minibatch mode, an unbiased estimate of L_n(w_t)).
Per-chain estimate: nbeta * (mean of the chain's draws - L(w*)), L(w*) always the exact full
loss (population, or L_n on the whole data set). Randomness is counter-based: chain k of
centre i has the key hash(hash(seed, i), k), so a centre's chains give the same numbers
alone or batched with other centres (pass ``keys=centre_keys(seed, shape)[i]`` alone).

The result record, its diagnostics and flags: ``tms.llc.result`` (``LLCResult``).

Default protocol (``PROTOCOL``, an ``LLCSettings``: what ``tms llc`` runs, and every zoo-point
estimate of ``tms.llc.zoo``): eps 1e-3, gamma 1, 8 chains, 4000 burn-in + 4000 draws, nbeta =
n / log n with n = 1000. The old 500 steps without burn-in is not converged at the zoo points
(the draws still rise: flagged UNCONVERGED). Measured at c = 6, exact population loss,
nbeta = 1000 / log 1000 = 144.8 (``tms llc --point P``, seed 0; tests/llc/test_llc_converge.py
pins these; reproduce with ``python benchmarks/bench_llc.py --bias``):

    point  theory rank/2   default protocol    bias    long run (16 chains, 5000 + 40000 steps)
    6          8.5         10.71 +- 0.26      +2.21    11.47 +- 0.08
    5+         8.5          9.11 +- 0.20      +0.61     9.41 +- 0.13
    5          7.0          7.98 +- 0.26      +0.98     8.40 +- 0.05

The default protocol sits within 1.5-3 of its s.e. below the long runs (a little of its
bias is the slow approach to the stationary level); most of it is that of the finite nbeta,
not of the sampler. rank/2 is the nbeta -> infinity limit; at nbeta = 145 the
localised posterior reaches the loss's cubic and quartic terms (tests/llc/test_llc_known.py
shows the approach to rank/2 at nbeta = n / log n, n = 5e4).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from tms.core import progress as progress_bar
from tms.core import checks, rng
from tms.core.settings import Settings, setting
from tms.llc.result import MIN_DRAWS, LLCResult, reduce_trace
from tms.theory.loss import (
    SortedData,
    batched_grad,
    empirical_loss,
    empirical_loss_sorted,
    flatten_params,
    loss_and_grad_flat,
    population_loss,
    row_energy,
    sorted_data,
    unflatten_params,
)
from tms.samplers import compiled, compiled_sgld, sgld

PROBE_EVERY = 10  # minibatch mode: a full-batch MALA probe every this many steps
COMPILED_BLOCK = 200_000  # chain-steps per compiled call (a progress update every ~0.1 s)


def default_nbeta(n) -> float:
    """The standard inverse temperature times n: nbeta = n / log n (beta = 1/log n, SPEC 5)."""
    try:
        if isinstance(n, (bool, str, bytes)):
            raise TypeError
        n = float(n)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"n must be a number > 1 for nbeta = n / log n, got {n!r}") from None
    if not n > 1:
        raise ValueError(f"n must be > 1 for nbeta = n / log n, got {n!r}")
    return n / math.log(n)


@dataclass(frozen=True)
class LLCSettings(Settings):
    """How an LLC estimate samples (SPEC 5): the SGLD protocol, nbeta, minibatches and the seed.
    Flags of `tms llc` (--n-draws is n_draws); PROTOCOL holds the lab's defaults."""

    n_chains: int = setting(8, "chains per centre", minimum=1, maximum=checks.MAX_CHAINS)
    n_burnin: int = setting(4000, "SGLD steps discarded first", minimum=0, maximum=checks.MAX_STEPS)
    n_draws: int = setting(4000, "SGLD steps kept after the burn-in", minimum=MIN_DRAWS, maximum=checks.MAX_STEPS)
    eps: float = setting(1e-3, "SGLD step size", positive=True, maximum=checks.MAX_EPS)
    gamma: float = setting(1.0, "localisation strength (0: none)", minimum=0.0)
    n: float = setting(1000.0, "sample size: sets nbeta = n / log n, and the size of a drawn data set",
                       minimum=2, maximum=checks.MAX_N)
    nbeta: float | None = setting(None, "override nbeta (default n / log n)", positive=True, optional=True)
    batch_size: int | None = setting(None, "minibatch size (default: full batch)", minimum=1, optional=True)
    seed: int = setting(0, "sampler seed", minimum=0, maximum=checks.MAX_SEED)

    def check(self) -> None:
        if self.n_burnin + self.n_draws > checks.MAX_STEPS:
            raise ValueError(f"n_burnin + n_draws must be <= {checks.MAX_STEPS}, got {self.n_burnin + self.n_draws}")

    def nbeta_for(self, n) -> float:
        """The nbeta of a run on a data set of size n (or the population loss at sample size n):
        the `nbeta` setting if given, else n / log n."""
        return default_nbeta(n) if self.nbeta is None else self.nbeta


PROTOCOL = LLCSettings()  # the lab's default protocol (module docstring); tms llc's defaults


# ---- the core --------------------------------------------------------------------------------


def check_sgld_args(nbeta, eps, gamma, n_chains, n_burnin, n_draws, batch_size) -> None:
    """Every front end's sampler arguments, checked before any work (a ValueError naming the argument)."""
    nb = torch.as_tensor(nbeta, dtype=torch.float64)
    if not bool(torch.isfinite(nb).all()) or bool((nb <= 0).any()):
        raise ValueError(f"nbeta must be finite and > 0 (standard: n / log n), got {nbeta!r}")
    checks.positive_float(eps, "eps")
    checks.positive_float(gamma, "gamma", allow_zero=True)
    checks.positive_int(n_chains, "n_chains")
    checks.positive_int(n_burnin, "n_burnin", minimum=0)
    checks.positive_int(n_draws, "n_draws", minimum=MIN_DRAWS)
    if batch_size is not None:
        checks.positive_int(batch_size, "batch_size")


def tms_grad_fn(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], r: int, c: int):
    """Wrap a batched TMS loss (W, b) -> (...) into theta -> (L (...), grad L (..., d)), the
    flat form the SGLD kernel takes (theta = flatten_params(W, b))."""

    def grad_fn(theta):
        L, gW, gb = batched_grad(loss_fn, *unflatten_params(theta, r, c))
        return L, flatten_params(gW, gb)

    return grad_fn


def centre_keys(seed: int, centre_shape: tuple[int, ...]) -> torch.Tensor:
    """Per-centre keys (C...) that a front end uses for ``seed``: pass
    ``keys=centre_keys(seed, shape)[i]`` to re-estimate centre i alone (same chains)."""
    return rng.item_keys(checks.seed(seed, "seed"), tuple(centre_shape))


def chain_keys(seed: int, keys: torch.Tensor | None, centre_shape, n_chains: int, device) -> torch.Tensor:
    """Chain keys (C..., K) = hash(centre key, chain index); centre keys from ``keys`` (int64,
    broadcastable to C...) or, when it is None, ``centre_keys(seed, C...)``."""
    if keys is None:
        ck = centre_keys(seed, centre_shape).to(device)
    else:
        if not isinstance(keys, torch.Tensor) or keys.dtype != torch.int64:
            raise ValueError(f"keys must be an int64 tensor of per-centre keys (see centre_keys), got {keys!r}")
        ck = keys.to(device).expand(centre_shape)
    return rng.keys_from(ck, (n_chains,), salt=rng.CHAIN_SALT)


def _run_chains(state, grad_fn, batch_grad_fn, *, nbeta, eps, gamma, n_steps, progress):
    """The step loop: loss trace and acceptance, each (..., T).

    Full batch: the acceptance of every move (free, see sgld.step). Minibatch
    (batch_grad_fn(keys, t) -> that step's grad_fn): a full-batch MALA probe every
    PROBE_EVERY steps, NaN in between."""
    if batch_grad_fn is None and compiled_sgld.applies(grad_fn, state.theta):
        out = _run_compiled(state, grad_fn, nbeta=nbeta, eps=eps, gamma=gamma, n_steps=n_steps, progress=progress)
        if out is not None:
            return out
    losses, accepts = [], []
    for t in progress_bar.bar(range(n_steps), desc="SGLD", disable=not progress, leave=False):
        if batch_grad_fn is None:
            state, info = sgld.step(state, grad_fn, nbeta=nbeta, eps=eps, gamma=gamma)
            accepts.append(info.accept_prob)
        else:
            acc = torch.full(state.key.shape, float("nan"), dtype=state.theta.dtype, device=state.theta.device)
            if t % PROBE_EVERY == PROBE_EVERY - 1:
                probe = sgld.mala_probe(state.theta, state.centre, grad_fn, state.key, t, nbeta=nbeta, eps=eps,
                                        gamma=gamma)
                acc = torch.where(state.alive, probe, acc)
            state, info = sgld.step(state, batch_grad_fn(state.key, t), nbeta=nbeta, eps=eps, gamma=gamma)
            accepts.append(acc)
        losses.append(info.loss)
    return torch.stack(losses, -1), torch.stack(accepts, -1)


def _run_compiled(state, grad_fn, *, nbeta, eps, gamma, n_steps, progress):
    """_run_chains' full-batch loop as compiled blocks of steps (tms.samplers.compiled_sgld), a
    block of about COMPILED_BLOCK chain-steps per call; None where it does not fit (torch path)."""
    block = max(50, COMPILED_BLOCK // max(1, state.key.numel()))
    losses, accepts = [], []
    with progress_bar.bar(total=n_steps, desc="SGLD", disable=not progress, leave=False) as bar:
        for t in range(0, n_steps, block):
            out = compiled_sgld.run(state, grad_fn, nbeta=nbeta, eps=eps, gamma=gamma, n_steps=min(block, n_steps - t))
            if out is None:
                return None
            state, loss, accept, _ = out
            losses.append(loss)
            accepts.append(accept)
            bar.update(loss.shape[-1])
    return torch.cat(losses, -1), torch.cat(accepts, -1)


def sample_llc(theta0: torch.Tensor, grad_fn, centre_loss: torch.Tensor, *, nbeta, eps: float, gamma: float,
               n_chains: int, n_burnin: int, n_draws: int, seed: int = 0, keys: torch.Tensor | None = None,
               batch_grad_fn=None, progress: bool = False, settings: dict | None = None) -> LLCResult:
    """The one LLC core: K chains at every centre theta0 (C..., d), n_burnin + n_draws SGLD steps.

    grad_fn(theta (C..., K, d)) -> (L (C..., K), grad L (C..., K, d)), the exact full loss;
    centre_loss: (C...,) L(w*); nbeta: float or tensor broadcastable to C...;
    batch_grad_fn: None (full batch) or (chain keys (C..., K), step t) -> that step's
    minibatch grad_fn. seed / keys: see ``chain_keys``. settings: the front end's record,
    completed with every argument here.
    """
    check_sgld_args(nbeta, eps, gamma, n_chains, n_burnin, n_draws, None)
    seed = checks.seed(seed, "seed")
    C, d = theta0.shape[:-1], theta0.shape[-1]
    nb = torch.as_tensor(nbeta, dtype=theta0.dtype, device=theta0.device)
    nb = nb.expand(C).unsqueeze(-1) if nb.dim() else nb  # (C..., 1) against chains
    thetak = theta0.unsqueeze(-2).expand(C + (n_chains, d))
    state = sgld.init(thetak, centre=thetak, generator=chain_keys(seed, keys, C, n_chains, theta0.device))
    trace, accept = _run_chains(state, grad_fn, batch_grad_fn, nbeta=nb, eps=eps, gamma=gamma,
                                n_steps=n_burnin + n_draws, progress=progress)
    nbeta_rec = nbeta.tolist() if isinstance(nbeta, torch.Tensor) else nbeta
    rec = dict(settings or {}, nbeta=nbeta_rec, eps=eps, gamma=gamma, n_chains=n_chains, n_burnin=n_burnin,
               n_draws=n_draws, seed=seed if keys is None else None, d=d)
    return reduce_trace(trace, centre_loss.detach(), accept, nb, n_burnin, rec)


# ---- front end: TMS parameters (W, b) ---------------------------------------------------------


def _is_high_sparsity(X: torch.Tensor) -> bool:
    return bool((X >= 0).all()) and bool(((X != 0).sum(-1) <= 1).all())


def _unsqueeze_data(data: SortedData) -> SortedData:
    """Insert the chain dim in front of a per-centre data set's (c, m) dims."""
    return SortedData(data.mu.unsqueeze(-3), data.cum1.unsqueeze(-3), data.cum2.unsqueeze(-3),
                      data.count.unsqueeze(-2), data.n.unsqueeze(-1))


def _tms_data(X, C, c, device, dtype):
    """The data set checked and cast; returns (X, Xc) with Xc holding a chain dim if per centre."""
    if X is None:
        raise ValueError('loss="empirical" needs a data set X (n, c) or (C..., n, c)')
    checks.tensor(X, "X", min_dim=2)
    if X.shape[-1] != c:
        raise ValueError(f"X must have shape (..., n, c) with c = {c}, got {tuple(X.shape)}")
    X = X.to(device=device, dtype=dtype)
    if X.dim() > 2:
        try:
            ok = torch.broadcast_shapes(X.shape[:-2], C) == C
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(f"a per-centre X must have batch dims broadcastable to the centres {tuple(C)}, "
                             f"got X {tuple(X.shape)}")
        return X, X.unsqueeze(-3)  # (C..., 1, n, c) against chains
    return X, X


def marked_grad_fn(grad_fn, r: int, c: int, data: SortedData | None):
    """grad_fn of the exact full loss (population where data is None), marked with its compiled
    one-row form (tms.samplers.compiled_sgld runs the steps then)."""
    kernel = row_energy(r, c, data, 1.0)
    if kernel is not None:
        grad_fn.kernel = compiled.RowEnergy(*kernel)
    return grad_fn


def _tms_losses(X, loss: str, batch_size, C, r: int, c: int, device, dtype):
    """(full loss (W, b) -> (...), grad_fn over flat theta, X, Xc) for the TMS front end."""
    if loss == "population":
        if X is not None:
            raise ValueError('X must be None for loss="population" (the exact population loss needs no data)')
        if batch_size is not None:
            raise ValueError('batch_size must be None for loss="population"')
        return population_loss, marked_grad_fn(lambda th: loss_and_grad_flat(th, r, c), r, c, None), None, None
    if loss != "empirical":
        raise ValueError(f'loss must be "empirical" or "population", got {loss!r}')
    X, Xc = _tms_data(X, C, c, device, dtype)
    if not _is_high_sparsity(X):
        full = lambda W_, b_: empirical_loss(W_, b_, Xc)  # noqa: E731
        return full, tms_grad_fn(full, r, c), X, Xc
    data = sorted_data(X)
    data = _unsqueeze_data(data) if X.dim() > 2 else data
    full = lambda W_, b_: empirical_loss_sorted(W_, b_, data)  # noqa: E731  exact O(c^2 log n), SPEC 1
    return full, marked_grad_fn(lambda th: loss_and_grad_flat(th, r, c, data), r, c, data), X, Xc


def minibatch_rows(keys: torch.Tensor, t: int, n: int, batch_size: int) -> torch.Tensor:
    """Row indices (..., m) in [0, n), drawn with replacement from each chain's counter-based
    stream 2 at step t (the same rows whatever else is in the batch)."""
    return (rng.uniform(keys, t, rng.MINIBATCH, batch_size) * n).ceil().long().clamp(1, n) - 1


def estimate_llc(W: torch.Tensor, b: torch.Tensor, X: torch.Tensor | None = None, *, nbeta, eps: float,
                 gamma: float, n_chains: int, n_burnin: int, n_draws: int, loss: str = "empirical",
                 batch_size: int | None = None, seed: int = 0, keys: torch.Tensor | None = None,
                 progress: bool = False) -> LLCResult:
    """LLC of every TMS centre (W (C..., r, c), b (C..., c)) in one batched SGLD run (SPEC 5).

    X: data set (n, c) shared by all centres, or (B..., n, c) one per centre (B... broadcastable
       to C..., e.g. one training set per run for checkpoints (T, R)); required for
       loss="empirical", must be None for loss="population" (exact L, nbeta = effective n*beta).
    nbeta: float, or tensor broadcastable to C... (e.g. n / log n per data set of an n-grid).
    n_burnin, n_draws: SGLD steps discarded, then kept (n_draws >= MIN_DRAWS).
    batch_size: None = full batch (exact O(c^2 log n) sorted loss and analytic gradient for
       high-sparsity data, direct sum otherwise); an int = minibatch of that size, drawn with
       replacement per chain and step, direct loss on the batch.
    seed: int; keys: optional int64 per-centre keys (C...) instead (see ``centre_keys``).
    Returns an LLCResult (see its docstring and the module docstring for the rules).
    """
    checks.params(W, b)
    checks.nonempty_batch(torch.broadcast_shapes(W.shape[:-2], b.shape[:-1]), "W, b", "centres")
    if X is not None:
        checks.tensor(X, "X", min_dim=2)
    check_sgld_args(nbeta, eps, gamma, n_chains, n_burnin, n_draws, batch_size)
    r, c = W.shape[-2:]
    C = torch.broadcast_shapes(W.shape[:-2], b.shape[:-1])
    W, b = W.expand(C + (r, c)), b.expand(C + (c,))
    full, grad_fn, X, Xc = _tms_losses(X, loss, batch_size, C, r, c, W.device, W.dtype)
    centre_loss = full(W.unsqueeze(-3), b.unsqueeze(-2)).squeeze(-1).detach()  # (C...)
    batch_grad_fn = None
    if batch_size is not None:
        def batch_grad_fn(keys_, t):
            idx = minibatch_rows(keys_, t, X.shape[-2], batch_size)  # (C..., K, m)
            src = Xc.expand(C + (n_chains,) + X.shape[-2:])
            Xb = src.gather(-2, idx.unsqueeze(-1).expand(idx.shape + (c,)))
            return tms_grad_fn(lambda W_, b_: empirical_loss(W_, b_, Xb), r, c)

    settings = dict(loss=loss, batch_size=batch_size, n=None if X is None else int(X.shape[-2]),
                    model="tms", r=r, c=c)
    return sample_llc(flatten_params(W, b), grad_fn, centre_loss, nbeta=nbeta, eps=eps, gamma=gamma,
                      n_chains=n_chains, n_burnin=n_burnin, n_draws=n_draws, seed=seed, keys=keys,
                      batch_grad_fn=batch_grad_fn, progress=progress, settings=settings)


# ---- front end: any batched loss of a flat parameter vector ----------------------------------


def autograd_grad_fn(loss_fn: Callable[[torch.Tensor], torch.Tensor]):
    """theta (..., d) -> (L (...), grad L (..., d)) of a batched differentiable loss, by autograd."""
    def grad_fn(theta):
        theta = theta.detach().requires_grad_(True)
        with torch.enable_grad():
            L = loss_fn(theta)
            (g,) = torch.autograd.grad(L.sum(), theta)
        return L.detach(), g

    return grad_fn


def estimate_llc_flat(loss_fn: Callable[[torch.Tensor], torch.Tensor], theta0: torch.Tensor, *, nbeta,
                      eps: float, gamma: float, n_chains: int, n_burnin: int, n_draws: int, seed: int = 0,
                      keys: torch.Tensor | None = None, progress: bool = False) -> LLCResult:
    """LLC at centres theta0 (C..., d) of a batched, differentiable loss theta (..., d) -> (...).

    The loss is deterministic (a population loss, or a full-batch L_n written as a batched
    function); its gradient comes from autograd. Other arguments as in ``estimate_llc``.
    """
    checks.tensor(theta0, "theta0", min_dim=1)
    checks.nonempty_batch(theta0.shape[:-1], "theta0", "centres")
    with torch.no_grad():
        centre_loss = loss_fn(theta0)
    return sample_llc(theta0, autograd_grad_fn(loss_fn), centre_loss, nbeta=nbeta, eps=eps, gamma=gamma,
                      n_chains=n_chains, n_burnin=n_burnin, n_draws=n_draws, seed=seed, keys=keys,
                      progress=progress, settings=dict(loss="function", batch_size=None, model="function"))


__all__ = ["default_nbeta", "estimate_llc", "estimate_llc_flat", "sample_llc", "centre_keys", "chain_keys",
           "minibatch_rows", "check_sgld_args", "PROTOCOL"]
