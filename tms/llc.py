"""The local learning coefficient estimator of Lau et al. (SPEC 5), batched, with diagnostics.

    lambda_hat(w*) = nbeta * (E[L(w)] - L(w*)),

the expectation over the localised tempered posterior exp(-nbeta L(w) - (gamma/2)||w - w*||^2),
estimated by the SGLD chains of ``tms.samplers.sgld``. ``nbeta`` is one explicit argument;
the standard choice is nbeta = n / log n (``default_nbeta``), i.e. beta = 1/log n.

Every centre (e.g. each checkpoint of each run) and every chain are one batched tensor:
centres (C...) x chains (K). The only Python loop is over SGLD steps.

Per-chain estimate: nbeta * (mean of the chain's post-burn-in losses - L(w*)), with the
draws L(w_t), t = n_burnin .. n_steps - 1 (w_0 = w*; L(w_t) is the loss the step at w_t
evaluates, i.e. the minibatch loss in minibatch mode, an unbiased estimate of L_n(w_t)).
L(w*) is always the exact full loss (population, or L_n on the whole data set).

Diagnostics (per centre) and the rules used:
- non-finite chains: a chain whose loss or parameters become NaN/inf is frozen, counted in
  ``n_nonfinite`` and excluded from the mean.
- escaped chains: a chain is *escaped* when the mean loss over the second half of its
  post-burn-in draws is below L(w*), i.e. its late estimate is negative. Inside the basin
  of a local minimum w* every draw has L >= L(w*), so such a chain sits in a lower-loss
  region (another phase). Escaped chains are excluded from the mean and counted in
  ``n_escaped``; ``frac_below`` is the fraction of all post-burn-in draws (finite chains)
  with L < L(w*).
- step size: ``acceptance`` is the mean Metropolis-adjusted (MALA) acceptance probability of
  the post-burn-in SGLD moves. ``flag_step`` is raised when the rejection rate
  1 - acceptance exceeds REJECT_PER_SQRT_D * sqrt(d) (d = number of parameters): on
  isotropic Gaussians (d = 1, 4, 18, measured) that rejection rate goes with an upward
  bias of about 10% in lambda_hat (SGLD's stationary variance is 1/(1 - eps h/4) too wide),
  and MALA rejection grows like sqrt(d) at a fixed step bias. An inflated lambda_hat is
  the usual symptom. In minibatch mode consecutive losses come from different batches,
  so instead every PROBE_EVERY-th step a fresh Langevin proposal from the chain's current
  point is scored with the exact full-batch loss (``sgld.mala_probe``, two extra full-batch
  gradients): the acceptance then says whether eps resolves the full-batch posterior (the
  minibatch noise itself is not judged by it).
If every chain of a centre is excluded, its estimate is NaN (never silently averaged).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from tms import checks
from tms.loss import (
    SortedData,
    empirical_loss,
    empirical_loss_sorted,
    loss_and_grad_flat,
    population_loss,
    sorted_data,
)
from tms.samplers import sgld

REJECT_PER_SQRT_D = 0.02  # step flagged when 1 - acceptance > this * sqrt(d) (~10% bias)


def default_nbeta(n) -> float:
    """The standard inverse temperature times n: nbeta = n / log n (beta = 1/log n, SPEC 5)."""
    n = float(n)
    if not n > 1:
        raise ValueError(f"n must be > 1 for nbeta = n / log n, got {n!r}")
    return n / math.log(n)


@dataclass
class LLCResult:
    """LLC estimates of centres C... with K chains and T = n_steps draws each.

    llc:            (C...,)      mean estimate over included chains (NaN if none)
    llc_se:         (C...,)      standard error across included chains (std / sqrt(k))
    llc_chains:     (C..., K)    per-chain estimates (NaN for non-finite chains)
    loss_trace:     (C..., K, T) L(w_t) of every draw (burn-in included, first n_burnin)
    centre_loss:    (C...,)      L(w*)
    included:       (C..., K)    bool, chains used in the mean
    escaped:        (C..., K)    bool, escaped chains (see module docstring)
    nonfinite:      (C..., K)    bool, chains that produced NaN/inf
    frac_below:     (C...,)      fraction of post-burn-in draws with L < L(w*)
    acceptance:     (C...,)      mean MALA acceptance of post-burn-in moves (minibatch: of the probes)
    settings:       dict of every argument (nbeta, eps, gamma, ...)
    """

    llc: torch.Tensor
    llc_se: torch.Tensor
    llc_chains: torch.Tensor
    loss_trace: torch.Tensor
    centre_loss: torch.Tensor
    included: torch.Tensor
    escaped: torch.Tensor
    nonfinite: torch.Tensor
    frac_below: torch.Tensor
    acceptance: torch.Tensor
    settings: dict = field(default_factory=dict)

    @property
    def n_escaped(self) -> torch.Tensor:
        return self.escaped.sum(-1)

    @property
    def frac_escaped(self) -> torch.Tensor:
        """(C...,) fraction of the chains that escaped (excluded from the mean)."""
        return self.escaped.to(self.llc.dtype).mean(-1)

    @property
    def n_nonfinite(self) -> torch.Tensor:
        return self.nonfinite.sum(-1)

    @property
    def n_included(self) -> torch.Tensor:
        return self.included.sum(-1)

    @property
    def flag_escape(self) -> torch.Tensor:
        """(C...,) some chain escaped to lower loss: the centre is not a local minimum."""
        return self.n_escaped > 0

    @property
    def accept_min(self) -> float:
        """The acceptance below which the step is flagged: 1 - REJECT_PER_SQRT_D sqrt(d)."""
        return 1.0 - REJECT_PER_SQRT_D * math.sqrt(self.settings.get("d", 1))

    @property
    def flag_step(self) -> torch.Tensor:
        """(C...,) step size too large (mean MALA acceptance below accept_min)."""
        return self.acceptance < self.accept_min

    @property
    def flag_nonfinite(self) -> torch.Tensor:
        return self.n_nonfinite > 0

    @property
    def trustworthy(self) -> torch.Tensor:
        """(C...,) no diagnostic raised and at least two chains included."""
        return ~(self.flag_escape | self.flag_step | self.flag_nonfinite) & (self.n_included >= 2)

    def arrays(self) -> dict[str, torch.Tensor]:
        """Every tensor, for tms.io.save_result."""
        return {k: getattr(self, k) for k in (
            "llc", "llc_se", "llc_chains", "loss_trace", "centre_loss", "included",
            "escaped", "nonfinite", "frac_below", "acceptance")}

    def summary(self, max_rows: int = 20, labels: list[str] | None = None) -> str:
        """Human-readable table: one line per centre (at most max_rows), then the settings."""
        s = self.settings
        lines = [
            f"LLC estimate (SPEC 5): nbeta={s.get('nbeta')}, eps={s.get('eps')}, gamma={s.get('gamma')}, "
            f"chains={s.get('n_chains')}, steps={s.get('n_steps')} (burn-in {s.get('n_burnin')}), "
            f"loss={s.get('loss')}" + (f", batch={s['batch_size']}" if s.get("batch_size") else ""),
            f"{'centre':>10} {'llc':>10} {'+-se':>8} {'L(w*)':>11} {'used':>5} {'esc':>4} "
            f"{'nan':>4} {'below':>6} {'accept':>7}  flags",
        ]
        flat = lambda x: x.reshape(-1, *x.shape[len(self.llc.shape):])  # noqa: E731
        cols = [flat(v) for v in (self.llc, self.llc_se, self.centre_loss, self.n_included, self.n_escaped,
                                  self.n_nonfinite, self.frac_below, self.acceptance, self.flag_escape,
                                  self.flag_step, self.flag_nonfinite)]
        idx = list(np.ndindex(*self.llc.shape)) if self.llc.dim() else [()]
        for row in range(min(len(idx), max_rows)):
            m, se, L0, used, esc, nan, below, acc, fe, fs, fn = (c[row].item() for c in cols)
            flags = ",".join(f for f, on in (("ESCAPED", fe), ("STEP-TOO-LARGE", fs), ("NON-FINITE", fn)) if on)
            name = labels[row] if labels else (str(tuple(idx[row])) if idx[row] else "-")
            lines.append(f"{name:>10} {m:10.4f} {se:8.4f} {L0:11.6g} {used:5d} {esc:4d} {nan:4d} "
                         f"{below:6.3f} {acc:7.3f}  {flags or 'ok'}")
        if len(idx) > max_rows:
            lines.append(f"... {len(idx) - max_rows} more centres; flagged in total: "
                         f"escape {int(self.flag_escape.sum())}, step {int(self.flag_step.sum())}, "
                         f"non-finite {int(self.flag_nonfinite.sum())}")
        lines.append("rules: a chain is escaped when its second-half mean loss < L(w*) (excluded); "
                     f"non-finite chains excluded; step flagged when acceptance < {self.accept_min:.3f}")
        return "\n".join(lines)


def _reduce(trace: torch.Tensor, centre_loss: torch.Tensor, accept: torch.Tensor, nbeta, n_burnin: int,
            settings: dict) -> LLCResult:
    """Estimates and diagnostics from the loss trace (C..., K, T) and acceptances (C..., K, T)."""
    post = trace[..., n_burnin:]
    L0 = centre_loss.unsqueeze(-1)  # (C..., 1)
    nb = torch.as_tensor(nbeta, dtype=trace.dtype, device=trace.device)
    nb = nb.unsqueeze(-1) if nb.dim() else nb
    nonfinite = ~torch.isfinite(post).all(-1)
    chains = nb * (post.mean(-1) - L0)  # (C..., K), NaN for non-finite chains
    half = post.shape[-1] // 2
    escaped = (post[..., half:].mean(-1) < L0) & ~nonfinite
    included = ~nonfinite & ~escaped
    k = included.sum(-1)
    zero = torch.zeros_like(chains)
    mean = torch.where(included, chains, zero).sum(-1) / k
    var = torch.where(included, (chains - mean.unsqueeze(-1)) ** 2, zero).sum(-1) / (k - 1)
    se = torch.sqrt(var / k)
    mean = torch.where(k > 0, mean, torch.full_like(mean, float("nan")))
    se = torch.where(k > 1, se, torch.full_like(se, float("nan")))
    fin = ~nonfinite.unsqueeze(-1)
    below = ((post < L0.unsqueeze(-1)) & fin).sum((-2, -1)) / (fin.sum((-2, -1)) * post.shape[-1]).clamp(min=1)
    a = accept[..., max(n_burnin, 1):]
    acc = torch.nanmean(a.reshape(a.shape[:-2] + (-1,)), -1) if a.shape[-1] else torch.full_like(mean, float("nan"))
    return LLCResult(mean, se, chains, trace, centre_loss, included, escaped, nonfinite,
                     below.to(trace.dtype), acc, settings)


def _check_common(nbeta, eps, gamma, n_chains, n_steps, n_burnin, batch_size):
    nb = torch.as_tensor(nbeta, dtype=torch.float64)
    if not bool(torch.isfinite(nb).all()) or bool((nb <= 0).any()):
        raise ValueError(f"nbeta must be finite and > 0 (standard: n / log n), got {nbeta!r}")
    checks.positive_float(eps, "eps")
    checks.positive_float(gamma, "gamma", allow_zero=True)
    checks.positive_int(n_chains, "n_chains")
    checks.positive_int(n_steps, "n_steps", minimum=2)
    checks.positive_int(n_burnin, "n_burnin", minimum=0)
    if n_steps - n_burnin < 2:
        raise ValueError(f"n_steps must exceed n_burnin by at least 2, got n_steps={n_steps}, n_burnin={n_burnin}")
    if batch_size is not None:
        checks.positive_int(batch_size, "batch_size")


def _centre_keys(generator, centre_shape, n_chains, device) -> torch.Tensor:
    """Chain keys (C..., K): from a seed / Generator, hash(seed, centre index, chain index);
    from an int64 tensor of per-centre keys (C...), hash(key, chain index)."""
    if isinstance(generator, torch.Tensor):
        if generator.dtype != torch.int64:
            raise ValueError(f"generator as a tensor must hold int64 per-centre keys, got {generator.dtype}")
        ck = generator.to(device).expand(centre_shape)
    else:
        ck = sgld.item_keys(sgld.seed_from(generator), tuple(centre_shape), device)
    chain = sgld._mix32(torch.arange(n_chains, device=device) + 0x2545F491)
    return sgld._mix32(ck.unsqueeze(-1) ^ chain)


def centre_keys(seed: int, centre_shape: tuple[int, ...]) -> torch.Tensor:
    """Per-centre keys (C...) that ``estimate_llc(generator=seed)`` uses: pass
    ``centre_keys(seed, shape)[i]`` as ``generator`` to re-estimate centre i alone."""
    return sgld.item_keys(sgld.seed_from(seed), tuple(centre_shape))


def _broadcasts_to(shape, target) -> bool:
    try:
        return torch.broadcast_shapes(shape, target) == target
    except RuntimeError:
        return False


def _is_high_sparsity(X: torch.Tensor) -> bool:
    return bool((X >= 0).all()) and bool(((X != 0).sum(-1) <= 1).all())


def _unsqueeze_data(data: SortedData) -> SortedData:
    """Insert the chain dim in front of a per-centre data set's (c, m) dims."""
    return SortedData(data.mu.unsqueeze(-3), data.cum1.unsqueeze(-3), data.cum2.unsqueeze(-3),
                      data.count.unsqueeze(-2), data.n.unsqueeze(-1))


PROBE_EVERY = 10  # minibatch mode: a full-batch MALA probe every this many steps


def _run_chains(state, grad_fn, batch_grad_fn, *, nbeta, eps, gamma, n_steps, progress, minibatch):
    """The step loop: returns loss trace and acceptance, each (..., T).

    Full batch / population: the acceptance of every move (free, see sgld.step). Minibatch:
    a full-batch MALA probe (sgld.mala_probe) every PROBE_EVERY steps, NaN in between.
    """
    losses, accepts = [], []
    for t in tqdm(range(n_steps), desc="SGLD", disable=not progress, leave=False):
        fn = batch_grad_fn(state, t) if minibatch else grad_fn
        if minibatch and t % PROBE_EVERY == PROBE_EVERY - 1:
            alive = state.alive
            probe = sgld.mala_probe(state.theta, state.centre, grad_fn, state.key, t, nbeta=nbeta, eps=eps,
                                    gamma=gamma)
        state, info = sgld.step(state, fn, nbeta=nbeta, eps=eps, gamma=gamma)
        losses.append(info.loss)
        if minibatch:
            nan = torch.full_like(info.loss, float("nan"))
            accepts.append(torch.where(alive, probe, nan) if t % PROBE_EVERY == PROBE_EVERY - 1 else nan)
        else:
            accepts.append(info.accept_prob)
    return torch.stack(losses, -1), torch.stack(accepts, -1)


def estimate_llc(
    W: torch.Tensor,
    b: torch.Tensor,
    X: torch.Tensor | None = None,
    *,
    nbeta,
    eps: float,
    gamma: float,
    n_chains: int,
    n_steps: int,
    n_burnin: int = 0,
    loss: str = "empirical",
    batch_size: int | None = None,
    generator: torch.Generator | int | torch.Tensor,
    progress: bool = False,
) -> LLCResult:
    """LLC of every TMS centre (W (C..., r, c), b (C..., c)) in one batched SGLD run (SPEC 5).

    X: data set (n, c) shared by all centres, or (B..., n, c) one per centre (B... broadcastable
       to C..., e.g. one training set per run for checkpoints (T, R)); required for
       loss="empirical", must be None for loss="population" (exact L, nbeta = effective n*beta).
    nbeta: float, or tensor broadcastable to C... (e.g. n / log n per data set of an n-grid).
    n_steps: SGLD steps per chain (draws), the first n_burnin discarded.
    batch_size: None = full batch (exact O(c^2 log n) sorted loss for high-sparsity data,
       direct sum otherwise); an int = minibatch of that size, drawn with replacement per
       chain and step, direct loss on the batch.
    generator: int seed or torch.Generator (chain keys hash(seed, centre index, chain
       index)), or an int64 tensor (C...) of per-centre keys (see ``centre_keys``): a
       centre's chains depend only on its key, whatever else is in the batch.
    Returns an LLCResult (see its docstring and the module docstring for the rules).
    """
    checks.params(W, b)
    _check_common(nbeta, eps, gamma, n_chains, n_steps, n_burnin, batch_size)
    if loss not in ("empirical", "population"):
        raise ValueError(f'loss must be "empirical" or "population", got {loss!r}')
    r, c = W.shape[-2:]
    C = torch.broadcast_shapes(W.shape[:-2], b.shape[:-1])
    W, b = W.expand(C + (r, c)), b.expand(C + (c,))
    device, dtype = W.device, W.dtype
    nb = torch.as_tensor(nbeta, dtype=dtype, device=device)
    if nb.dim():
        nb = nb.expand(C).unsqueeze(-1)  # (C..., 1) against chains
    if loss == "population":
        if X is not None:
            raise ValueError('X must be None for loss="population" (the exact population loss needs no data)')
        if batch_size is not None:
            raise ValueError('batch_size must be None for loss="population"')
        full = population_loss
        fused = lambda th: loss_and_grad_flat(th, r, c)  # noqa: E731  exact, no autograd
    else:
        if X is None:
            raise ValueError('loss="empirical" needs a data set X (n, c) or (C..., n, c)')
        checks.tensor(X, "X", min_dim=2)
        if X.shape[-1] != c:
            raise ValueError(f"X must have shape (..., n, c) with c = {c}, got {tuple(X.shape)}")
        X = X.to(device=device, dtype=dtype)
        per_centre = X.dim() > 2
        if per_centre and _broadcasts_to(X.shape[:-2], C) is False:
            raise ValueError(f"a per-centre X must have batch dims broadcastable to the centres {tuple(C)}, "
                             f"got X {tuple(X.shape)}")
        Xc = X.unsqueeze(-3) if per_centre else X  # (C..., 1, n, c) against chains
        if _is_high_sparsity(X):
            data = sorted_data(X)
            data = _unsqueeze_data(data) if per_centre else data
            full = lambda W_, b_: empirical_loss_sorted(W_, b_, data)  # noqa: E731
            fused = lambda th: loss_and_grad_flat(th, r, c, data)  # noqa: E731
        else:
            full = lambda W_, b_: empirical_loss(W_, b_, Xc)  # noqa: E731
            fused = None
    centre_loss = full(W.unsqueeze(-3), b.unsqueeze(-2)).squeeze(-1).detach()  # (C...)
    keys = _centre_keys(generator, C, n_chains, device)  # (C..., K)
    Wk = W.unsqueeze(-3).expand(C + (n_chains, r, c))
    bk = b.unsqueeze(-2).expand(C + (n_chains, c))
    state = sgld.init(Wk, bk, centre_W=Wk, centre_b=bk, generator=keys)
    grad_fn = fused or sgld.grad_fn_wb(full, r, c)  # the fused exact gradient where there is one
    minibatch = batch_size is not None

    def batch_grad_fn(st, t):
        # Minibatch rows drawn with replacement from the chain's own counter-based stream.
        n = X.shape[-2]
        idx = (sgld.uniform(st.key, t, 2, batch_size) * n).ceil().long().clamp(1, n) - 1  # (C..., K, m)
        src = Xc.expand(C + (n_chains,) + X.shape[-2:])
        Xb = src.gather(-2, idx.unsqueeze(-1).expand(idx.shape + (c,)))
        return sgld.grad_fn_wb(lambda W_, b_: empirical_loss(W_, b_, Xb), r, c)

    trace, accept = _run_chains(state, grad_fn, batch_grad_fn, nbeta=nb, eps=eps, gamma=gamma,
                                n_steps=n_steps, progress=progress, minibatch=minibatch)
    settings = dict(nbeta=nbeta if not isinstance(nbeta, torch.Tensor) else nbeta.tolist(), eps=eps, gamma=gamma,
                    n_chains=n_chains, n_steps=n_steps, n_burnin=n_burnin, loss=loss, batch_size=batch_size,
                    n=None if X is None else int(X.shape[-2]),
                    seed=generator if isinstance(generator, int) else None, model="tms", r=r, c=c, d=r * c + c)
    return _reduce(trace, centre_loss, accept, nb.squeeze(-1) if nb.dim() else nb, n_burnin, settings)


# ---- any batched loss of a flat parameter vector -----------------------------------------


def estimate_llc_flat(
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    theta0: torch.Tensor,
    *,
    nbeta,
    eps: float,
    gamma: float,
    n_chains: int,
    n_steps: int,
    n_burnin: int = 0,
    generator: torch.Generator | int | torch.Tensor,
    progress: bool = False,
) -> LLCResult:
    """LLC at centres theta0 (C..., d) of a batched, differentiable loss theta (..., d) -> (...).

    The loss is deterministic (a population loss, or a full-batch L_n written as a batched
    function); its gradient comes from autograd. Other arguments as in ``estimate_llc``.
    """
    _check_common(nbeta, eps, gamma, n_chains, n_steps, n_burnin, None)
    checks.tensor(theta0, "theta0", min_dim=1)
    C, d = theta0.shape[:-1], theta0.shape[-1]

    def grad_fn(theta):
        theta = theta.detach().requires_grad_(True)
        with torch.enable_grad():
            L = loss_fn(theta)
            (g,) = torch.autograd.grad(L.sum(), theta)
        return L.detach(), g

    with torch.no_grad():
        centre_loss = loss_fn(theta0).detach()
    nb = torch.as_tensor(nbeta, dtype=theta0.dtype, device=theta0.device)
    nb = nb.expand(C).unsqueeze(-1) if nb.dim() else nb
    keys = _centre_keys(generator, C, n_chains, theta0.device)
    thetak = theta0.unsqueeze(-2).expand(C + (n_chains, d))
    state = sgld.init_flat(thetak, centre=thetak, generator=keys)
    trace, accept = _run_chains(state, grad_fn, None, nbeta=nb, eps=eps, gamma=gamma, n_steps=n_steps,
                                progress=progress, minibatch=False)
    settings = dict(nbeta=nbeta if not isinstance(nbeta, torch.Tensor) else nbeta.tolist(), eps=eps, gamma=gamma,
                    n_chains=n_chains, n_steps=n_steps, n_burnin=n_burnin, loss="function", batch_size=None,
                    seed=generator if isinstance(generator, int) else None, model="function", d=d)
    return _reduce(trace, centre_loss, accept, nb.squeeze(-1) if nb.dim() else nb, n_burnin, settings)


# ---- any small torch model, through torch.func ------------------------------------------


def estimate_llc_model(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    data: tuple[torch.Tensor, torch.Tensor],
    *,
    nbeta,
    eps: float,
    gamma: float,
    n_chains: int,
    n_steps: int,
    n_burnin: int = 0,
    batch_size: int | None = None,
    generator: torch.Generator | int | torch.Tensor,
    centre: dict[str, torch.Tensor] | None = None,
    progress: bool = False,
) -> LLCResult:
    """LLC of a small torch model at one centre, the chains batched with torch.func.vmap.

    model: any nn.Module; its parameters are replaced functionally (functional_call), the
       module itself is never modified. centre: {name: tensor} (default: the model's
       current parameters) - the localisation centre w*.
    loss_fn(prediction, target) -> scalar mean loss over the rows (e.g. summed squared
       error per row, averaged), the L_n of SPEC 5.
    data: (inputs (n, ...), targets (n, ...)).
    Other arguments as in ``estimate_llc``; returns an LLCResult with C = () (one centre).
    """
    from torch.func import functional_call, grad_and_value, vmap

    _check_common(nbeta, eps, gamma, n_chains, n_steps, n_burnin, batch_size)
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise ValueError("data must be a pair (inputs (n, ...), targets (n, ...))")
    x, y = data
    checks.tensor(x, "inputs", min_dim=1)
    checks.tensor(y, "targets", min_dim=1)
    n = x.shape[0]
    if n < 1 or y.shape[0] != n:
        raise ValueError(f"inputs and targets must share n >= 1 rows, got {tuple(x.shape)} and {tuple(y.shape)}")
    params = {k: v.detach() for k, v in model.named_parameters()} if centre is None else dict(centre)
    if not params:
        raise ValueError("model has no parameters")
    names = list(params)
    shapes = [params[k].shape for k in names]
    sizes = [params[k].numel() for k in names]
    dtype, device = params[names[0]].dtype, params[names[0]].device
    theta0 = torch.cat([params[k].reshape(-1).to(dtype) for k in names])  # (d,)

    def unflat(theta):
        return {k: t.reshape(s) for k, t, s in zip(names, theta.split(sizes), shapes)}

    def loss_of(theta, xb, yb):
        return loss_fn(functional_call(model, unflat(theta), (xb,)), yb)

    gv = grad_and_value(loss_of)
    full_gv = vmap(gv, in_dims=(0, None, None))
    batch_gv = vmap(gv, in_dims=(0, 0, 0))

    def grad_fn(theta):
        g, L = full_gv(theta, x, y)
        return L.detach(), g.detach()

    def batch_grad_fn(st, t):
        idx = (sgld.uniform(st.key, t, 2, batch_size) * n).ceil().long().clamp(1, n) - 1  # (K, m)

        def fn(theta):
            g, L = batch_gv(theta, x[idx], y[idx])
            return L.detach(), g.detach()

        return fn

    with torch.no_grad():
        centre_loss = loss_of(theta0, x, y).detach()
    keys = _centre_keys(generator, (), n_chains, device)  # (K,)
    thetak = theta0.expand(n_chains, -1)
    state = sgld.init_flat(thetak, centre=thetak, generator=keys)
    trace, accept = _run_chains(state, grad_fn, batch_grad_fn, nbeta=nbeta, eps=eps, gamma=gamma,
                                n_steps=n_steps, progress=progress, minibatch=batch_size is not None)
    settings = dict(nbeta=nbeta, eps=eps, gamma=gamma, n_chains=n_chains, n_steps=n_steps, n_burnin=n_burnin,
                    loss="empirical", batch_size=batch_size, n=n, model=type(model).__name__,
                    seed=generator if isinstance(generator, int) else None, d=int(theta0.numel()))
    return _reduce(trace, centre_loss, accept, torch.as_tensor(nbeta, dtype=dtype), n_burnin, settings)


__all__ = ["default_nbeta", "estimate_llc", "estimate_llc_model", "estimate_llc_flat", "centre_keys", "LLCResult", "REJECT_PER_SQRT_D"]
