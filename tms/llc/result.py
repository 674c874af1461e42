"""The LLC result record (SPEC 5): the estimates, the diagnostics computed from the SGLD loss
traces, the flags they raise, and the text and InferenceData views of it.

``reduce_trace`` turns the loss traces of ``tms.llc.estimator.sample_llc`` into an ``LLCResult``.

Result keys compatible with devinterp (``LLCResult.as_devinterp()``), as users port code:
    llc/mean   the estimate: mean of the included chains' estimates (all chains, unless
               the diagnostics below excluded some)
    llc/std    the standard deviation across those chains (ddof = 1), not the standard
               error (``LLCResult.llc_se`` = llc/std / sqrt(chains))
    llc/means  every chain's estimate (chains,), NaN for non-finite chains
    loss/trace the kept draws (chains, draws), burn-in excluded
With a batch of centres each value gains the leading centre dims C.... The draws also leave
as ArviZ InferenceData (``LLCResult.to_inference_data``: posterior ``loss`` and ``llc``,
dims chain, draw, centre...; ``tms llc --out PATH`` writes PATH.nc).

Diagnostics (per centre); each raised flag is printed in its row, counted in the summary and
makes ``trustworthy`` False:
- NON-FINITE: a chain whose loss or parameters became NaN/inf is frozen, counted in
  ``n_nonfinite`` and excluded from the mean.
- ESCAPED: a chain whose mean loss over the second half of its draws is below L(w*) (its
  late estimate is negative) sits in a lower-loss region: inside the basin of a local minimum
  every draw has L >= L(w*). Excluded from the mean; ``frac_below`` is the fraction of all
  draws (finite chains) with L < L(w*).
- STEP-TOO-LARGE: ``acceptance`` is the mean Metropolis-adjusted (MALA) acceptance of the
  kept SGLD moves; flagged when 1 - acceptance > REJECT_PER_SQRT_D * sqrt(d). On isotropic
  Gaussians (d = 1, 4, 18, measured) that rejection rate goes with an upward bias of about
  10% in lambda_hat, and MALA rejection grows like sqrt(d) at a fixed step bias. Minibatch
  mode: every tms.llc.estimator.PROBE_EVERY-th step a fresh Langevin proposal is scored with the exact
  full-batch loss (``sgld.mala_probe``) instead.
- UNCONVERGED: the draws still drift or the chains disagree. Trend: per chain, the
  difference of the second- and first-half means of its draws over its s.e. sqrt(v1/ESS1 +
  v2/ESS2) from each half's ESS (tms.samplers.diagnostics.ess), ``trend_z`` (C..., K). Per centre,
  ``trend`` is the t statistic across the k included chains of (mean of the last 50% - mean
  of the first 10% of the draws) (Geweke's windows; independent chains, k - 1 degrees of
  freedom, so no ESS estimate is needed, which at ESS ~ 5 per half is too noisy to trust);
  with one chain, its z. Flagged when the two-sided p-value ``trend_p`` < P_TREND. Mixing:
  ``rhat`` is the rank-normalised split R-hat (tms.samplers.diagnostics.rhat, = ArviZ's) of the draws
  across chains (one chain: its two halves), NaN when a chain was excluded; flagged when rhat > RHAT_GROSS. At eps = 1e-3
  the loss's autocorrelation time at the zoo points is ~10^3 steps, so even converged
  default runs have rhat 1.02-1.3 (measured); RHAT_GROSS marks gross disagreement only, not
  the 1.01 convergence test of tms.samplers.diagnostics.RHAT_MAX.
  Suggestion printed: more steps (a longer burn-in first), then a smaller eps if the drift
  stays. Limit (measured at the zoo points, 16 x 3 centres): a chain with no burn-in is flagged
  at 94-100% of centres with 100 draws, 62-81% with 500, but burn-in 100 + 400 draws, still ~2.5 below the
  converged value at the 6-gon, is not: a mode that has not started moving within the draws
  leaves no trend in them. The default protocol (tms.llc.estimator.PROTOCOL) is long enough for the zoo points.
- FEW-CHAINS: fewer than two included chains, so there is no standard error.
- UNDIAGNOSED: a diagnostic that should exist is NaN or inf (acceptance; the trend p-value;
  R-hat when every chain is included): e.g. draws that never moved (a step far too small
  for float arithmetic: w + eps grad == w) give constant traces whose R-hat and trend are
  0 / 0. Missing diagnostics are never a pass.
If every chain of a centre is excluded, its estimate is NaN (never silently averaged).
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from tms.core import checks, io
from tms.samplers import diagnostics

REJECT_PER_SQRT_D = 0.02  # step flagged when 1 - acceptance > this * sqrt(d) (~10% bias)
P_TREND = 1e-3  # trend p-value below this: the draws still drift
# rank-normalised split R-hat of the draws above this: the chains grossly disagree. Not the
# convergence test of tms.samplers.diagnostics.RHAT_MAX (1.01): converged default runs here sit at
# 1.02-1.3, the loss's autocorrelation time being ~10^3 SGLD steps (module docstring)
RHAT_GROSS = 1.3
MIN_DRAWS = 8  # two halves of at least 4 draws for the trend test and R-hat

ADVICE = {
    "NON-FINITE": "chains diverged: lower eps",
    "ESCAPED": "chains fell to lower loss: the centre is not a local minimum (or raise gamma)",
    "STEP-TOO-LARGE": "lower eps",
    "UNCONVERGED": "raise n_burnin and n_draws (x4); if the drift stays, lower eps",
    "FEW-CHAINS": "use n_chains >= 2 for a standard error",
    "UNDIAGNOSED": "the diagnostics are undefined (NaN): the draws did not move or are too few; raise eps or n_draws",
}


@dataclass(frozen=True)
class LLCFlags:
    """The diagnostics' flags of every centre, each (C...,) bool (module docstring); a raised
    flag makes the centre's estimate untrustworthy."""

    nonfinite: torch.Tensor  # some chain produced NaN/inf (excluded)
    escaped: torch.Tensor  # some chain fell below L(w*): the centre is not a local minimum
    step_too_large: torch.Tensor  # mean MALA acceptance below LLCResult.accept_min
    unconverged: torch.Tensor  # the draws drift (trend_p < P_TREND) or rhat > RHAT_GROSS
    few_chains: torch.Tensor  # fewer than two included chains: no standard error
    undiagnosed: torch.Tensor  # a diagnostic that should exist is NaN or inf
    NAMES: ClassVar[dict[str, str]] = {"nonfinite": "NON-FINITE", "escaped": "ESCAPED",
                                       "step_too_large": "STEP-TOO-LARGE", "unconverged": "UNCONVERGED",
                                       "few_chains": "FEW-CHAINS",
                                       "undiagnosed": "UNDIAGNOSED"}  # field -> the name printed

    def named(self) -> list[tuple[str, torch.Tensor]]:
        """(printed name, (C...,) bool) of every flag, in the order the summary prints them."""
        return [(name, getattr(self, f)) for f, name in self.NAMES.items()]

    @property
    def any_raised(self) -> torch.Tensor:
        """(C...,) some flag raised."""
        return torch.stack([on for _, on in self.named()]).any(0)

    def raised(self, centre: int) -> list[str]:
        """The printed names of the flags raised at centre `centre` (an index into the
        flattened centres C...)."""
        return [name for name, on in self.named() if bool(on.reshape(-1)[centre])]


@dataclass
class LLCResult:
    """LLC estimates of centres C... with K chains and T = n_burnin + n_draws steps each.

    llc:            (C...,)      mean estimate over included chains (NaN if none)
    llc_se:         (C...,)      standard error across included chains (std / sqrt(k))
    llc_chains:     (C..., K)    per-chain estimates (NaN for non-finite chains)
    loss_trace:     (C..., K, T) L(w_t) of every step (burn-in included, first n_burnin)
    centre_loss:    (C...,)      L(w*)
    included:       (C..., K)    bool, chains used in the mean
    escaped:        (C..., K)    bool, escaped chains (see module docstring)
    nonfinite:      (C..., K)    bool, chains that produced NaN/inf
    frac_below:     (C...,)      fraction of draws with L < L(w*)
    acceptance:     (C...,)      mean MALA acceptance of kept moves (minibatch: of the probes)
    trend_z:        (C..., K)    per-chain second- minus first-half mean of the draws, in s.e.
    trend:          (C...,)      the centre's trend statistic (t across included chains; 1 chain: z)
    trend_p:        (C...,)      its two-sided p-value
    rhat:           (C...,)      rank-normalised split R-hat of the draws across chains
    settings:       dict of every argument (nbeta, eps, gamma, n_burnin, n_draws, seed, ...)
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
    trend_z: torch.Tensor
    trend: torch.Tensor
    trend_p: torch.Tensor
    rhat: torch.Tensor
    settings: dict = field(default_factory=dict)
    ARRAYS: ClassVar[tuple[str, ...]] = (  # every tensor field: what `save` writes
        "llc", "llc_se", "llc_chains", "loss_trace", "centre_loss", "included", "escaped", "nonfinite",
        "frac_below", "acceptance", "trend_z", "trend", "trend_p", "rhat")

    @property
    def draws(self) -> torch.Tensor:
        """(C..., K, n_draws) the kept losses."""
        return self.loss_trace[..., self.settings["n_burnin"]:]

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
    def accept_min(self) -> float:
        """The acceptance below which the step is flagged: 1 - REJECT_PER_SQRT_D sqrt(d)."""
        return 1.0 - REJECT_PER_SQRT_D * math.sqrt(self.settings.get("d", 1))

    @property
    def flag_escape(self) -> torch.Tensor:
        """(C...,) some chain escaped to lower loss: the centre is not a local minimum."""
        return self.n_escaped > 0

    @property
    def flag_step(self) -> torch.Tensor:
        """(C...,) step size too large (mean MALA acceptance below accept_min)."""
        return self.acceptance < self.accept_min

    @property
    def flag_nonfinite(self) -> torch.Tensor:
        return self.n_nonfinite > 0

    @property
    def flag_unconverged(self) -> torch.Tensor:
        """(C...,) the draws drift (trend_p < P_TREND) or the chains disagree (rhat > RHAT_GROSS)."""
        return (self.trend_p < P_TREND) | (self.rhat > RHAT_GROSS)

    @property
    def flag_undiagnosed(self) -> torch.Tensor:
        """(C...,) a diagnostic that should exist is not finite: the acceptance, the trend
        p-value of a centre with included chains, or R-hat when every chain is included (it
        is NaN by design when some chain was excluded, which raises its own flag)."""
        has_chains = self.n_included > 0
        return (~torch.isfinite(self.acceptance) | (has_chains & ~torch.isfinite(self.trend_p))
                | (self.included.all(-1) & ~torch.isfinite(self.rhat)))

    @property
    def flags(self) -> LLCFlags:
        """Every flag (C...,); the rows, the counts and ``trustworthy`` all read this."""
        return LLCFlags(nonfinite=self.flag_nonfinite, escaped=self.flag_escape, step_too_large=self.flag_step,
                        unconverged=self.flag_unconverged, few_chains=self.n_included < 2,
                        undiagnosed=self.flag_undiagnosed)

    @property
    def trustworthy(self) -> torch.Tensor:
        """(C...,) no flag raised."""
        return ~self.flags.any_raised

    def advice(self) -> list[str]:
        """One line per raised flag: how many centres, and what to change."""
        return [f"{name}: {int(on.sum())} of {on.numel()} centres; {ADVICE[name]}"
                for name, on in self.flags.named() if bool(on.any())]

    def as_devinterp(self) -> dict:
        """devinterp's result keys (module docstring): llc/mean, llc/std, llc/means, loss/trace."""
        std = self.llc_se * self.n_included.clamp(min=1).sqrt()
        out = {"llc/mean": self.llc, "llc/std": std, "llc/means": self.llc_chains, "loss/trace": self.draws}
        out = {k: v.detach().cpu().numpy() for k, v in out.items()}
        if self.llc.dim() == 0:
            out["llc/mean"], out["llc/std"] = float(out["llc/mean"]), float(out["llc/std"])
        return out

    def to_inference_data(self, max_draws: int = 1000):
        """The kept draws as ArviZ InferenceData (``.to_netcdf(path)``, ``arviz.from_netcdf``).

        posterior: ``loss`` (chain, draw, centre dims...) and ``llc`` = nbeta (L - L(w*)) per
        draw (its mean over draws is llc/means), thinned to at most max_draws evenly spaced
        draws per chain (the attrs say the stride); attrs: every setting as JSON."""
        import arviz  # here only: its import costs ~1 s (tests/test_architecture.py LAZY)

        checks.positive_int(max_draws, "max_draws", minimum=4)
        draws = self.draws
        stride = -(-draws.shape[-1] // max_draws)
        loss = draws[..., ::stride].detach().cpu().double().numpy()
        nb = np.asarray(self.settings["nbeta"], dtype=np.float64)
        nb = nb.reshape(nb.shape + (1, 1)) if nb.ndim else nb
        lam = nb * (loss - self.centre_loss.detach().cpu().double().numpy()[..., None, None])
        move = lambda x: np.moveaxis(x, (-2, -1), (0, 1))  # noqa: E731  (C..., K, T) -> (K, T, C...)
        centre = [f"centre_{i}" for i in range(self.llc.dim())]
        idata = arviz.from_dict(posterior={"loss": move(loss), "llc": move(lam)}, dims={"loss": centre, "llc": centre})
        idata.posterior.attrs.update(settings=json.dumps(self.settings), thin_stride=stride)
        return idata

    def save(self, path, **record) -> None:
        """PATH.npz + PATH.json (tms.core.io): every tensor of ARRAYS, and `record` with the
        result's settings under "settings"; `LLCResult.load(path)` reads it back."""
        io.save_result(path, {k: getattr(self, k) for k in self.ARRAYS}, dict(record, settings=self.settings))

    @classmethod
    def load(cls, path) -> "LLCResult":
        """The LLCResult saved at PATH by `save` (tensors on the CPU)."""
        arrays, record = io.load_result(path)
        return cls(**{k: torch.from_numpy(arrays[k]) for k in cls.ARRAYS}, settings=record["settings"])

    def summary(self, max_rows: int = 20, labels: list[str] | None = None) -> str:
        """Human-readable table: one line per centre (at most max_rows), flag counts, advice."""
        return "\n".join([_header(self.settings)] + _rows(self, max_rows, labels) + _footer(self))


def _header(s: dict) -> str:
    return (f"LLC estimate (SPEC 5): nbeta={s.get('nbeta')}, eps={s.get('eps')}, gamma={s.get('gamma')}, "
            f"chains={s.get('n_chains')}, burn-in {s.get('n_burnin')} + draws {s.get('n_draws')} steps, "
            f"loss={s.get('loss')}" + (f", batch={s['batch_size']}" if s.get("batch_size") else "") + "\n"
            f"{'centre':>10} {'llc':>10} {'+-se':>8} {'L(w*)':>11} {'used':>5} {'esc':>4} {'nan':>4} "
            f"{'below':>6} {'accept':>7} {'trend':>6} {'rhat':>6}  flags")


def _rows(res: LLCResult, max_rows: int, labels) -> list[str]:
    nd = res.llc.dim()
    flat = lambda x: x.reshape(-1)  # noqa: E731
    cols = [flat(v) for v in (res.llc, res.llc_se, res.centre_loss, res.n_included, res.n_escaped,
                              res.n_nonfinite, res.frac_below, res.acceptance, res.trend, res.rhat)]
    flags = [(name, flat(on)) for name, on in res.flags.named()]
    idx = list(np.ndindex(*res.llc.shape)) if nd else [()]
    lines = []
    for row in range(min(len(idx), max_rows)):
        m, se, L0, used, esc, nan, below, acc, tr, rh = (c[row].item() for c in cols)
        raised = ",".join(name for name, on in flags if on[row])
        name = labels[row] if labels else (str(tuple(idx[row])) if idx[row] else "-")
        lines.append(f"{name:>10} {m:10.4f} {se:8.4f} {L0:11.6g} {used:5d} {esc:4d} {nan:4d} "
                     f"{below:6.3f} {acc:7.3f} {tr:6.2f} {rh:6.3f}  {raised or 'ok'}")
    if len(idx) > max_rows:
        lines.append(f"... {len(idx) - max_rows} more centres")
    return lines


def _footer(res: LLCResult) -> list[str]:
    counts = ", ".join(f"{name} {int(on.sum())}" for name, on in res.flags.named())
    bad = int((~res.trustworthy).sum())
    return [f"flagged: {bad} of {res.llc.numel()} centres ({counts})"] + res.advice() + [
        "rules: escaped = second-half mean loss < L(w*) (excluded); non-finite chains excluded; "
        f"step flagged when acceptance < {res.accept_min:.3f}; unconverged when trend p < {P_TREND:g} "
        f"or rhat > {RHAT_GROSS:g}"]


# ---- reduction of the traces ---------------------------------------------------------------


def _estimates(post: torch.Tensor, L0: torch.Tensor, nb) -> dict:
    """Per-chain estimates, exclusions, mean and s.e. from the draws post (C..., K, T')."""
    nonfinite = ~torch.isfinite(post).all(-1)
    chains = nb * (post.mean(-1) - L0)  # (C..., K), NaN for non-finite chains
    escaped = (post[..., post.shape[-1] // 2:].mean(-1) < L0) & ~nonfinite
    included = ~nonfinite & ~escaped
    k = included.sum(-1)
    zero = torch.zeros_like(chains)
    mean = torch.where(included, chains, zero).sum(-1) / k
    var = torch.where(included, (chains - mean.unsqueeze(-1)) ** 2, zero).sum(-1) / (k - 1)
    nan = torch.full_like(mean, float("nan"))
    fin = ~nonfinite.unsqueeze(-1)
    # count / count in the draws' dtype, not torch's default dtype (same numbers in any process)
    below = ((post < L0.unsqueeze(-1)) & fin).sum((-2, -1)).to(post.dtype) / (
        fin.sum((-2, -1)) * post.shape[-1]).clamp(min=1)
    return dict(llc=torch.where(k > 0, mean, nan), llc_se=torch.where(k > 1, torch.sqrt(var / k), nan),
                llc_chains=chains, included=included, escaped=escaped, nonfinite=nonfinite,
                frac_below=below.to(post.dtype))


def _half_trend(post: np.ndarray) -> np.ndarray:
    """(C..., K, T') -> (C..., K): (second-half mean - first-half mean) / its s.e. from each half's ESS."""
    h = post.shape[-1] // 2
    a, b = post[..., :h], post[..., post.shape[-1] - h:]
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        var = [x.var(-1, ddof=1) / diagnostics.ess(x[..., None, :], split=False) for x in (a, b)]
        return (b.mean(-1) - a.mean(-1)) / np.sqrt(var[0] + var[1])


def _trace_rhat(post: np.ndarray) -> np.ndarray:
    """Rank-normalised split R-hat (tms.samplers.diagnostics.rhat, equal to ArviZ's) of draws
    (C..., K, T') across chains -> (C...,). One chain: its two halves stand in for two chains."""
    if post.shape[-2] == 1:
        h = post.shape[-1] // 2
        post = np.concatenate([post[..., :h], post[..., post.shape[-1] - h:]], -2)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return diagnostics.rhat(post)


def _trend(post: torch.Tensor, z: torch.Tensor, inc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The centre's trend statistic and two-sided p-value (C...,): with k >= 2 included chains
    the t statistic of the chains' differences last-50% mean - first-10% mean (independent
    chains: k - 1 dof, no ESS needed); with one chain its own half-difference z (normal)."""
    from scipy import stats  # here only: scipy.stats costs ~0.5 s to import (tests/test_architecture.py LAZY)

    T = post.shape[-1]
    diff = post[..., T // 2:].mean(-1) - post[..., : max(T // 10, 1)].mean(-1)  # (C..., K) Geweke windows
    k = inc.sum(-1)
    zero = torch.zeros_like(diff)
    mean = torch.where(inc, diff, zero).sum(-1) / k.clamp(min=1)
    var = torch.where(inc, (diff - mean.unsqueeze(-1)) ** 2, zero).sum(-1) / (k - 1).clamp(min=1)
    t = mean / torch.sqrt(var / k.clamp(min=1))
    one = torch.where(inc, z, zero).sum(-1)
    stat = torch.where(k >= 2, t, torch.where(k == 1, one, torch.full_like(t, float("nan"))))
    s, kk = stat.detach().cpu().numpy(), k.cpu().numpy()
    with np.errstate(invalid="ignore"):
        p = np.where(kk >= 2, 2 * stats.t.sf(np.abs(s), np.maximum(kk - 1, 1)), 2 * stats.norm.sf(np.abs(s)))
    return stat, torch.as_tensor(p, dtype=post.dtype, device=post.device)


def _convergence(post: torch.Tensor, included: torch.Tensor) -> dict:
    """trend_z (C..., K), trend and trend_p (C...,), rhat (C...,) of the draws (module docstring)."""
    p = post.detach().cpu().numpy().astype(np.float64)
    z = torch.as_tensor(_half_trend(p), dtype=post.dtype, device=post.device)
    trend, trend_p = _trend(post, z, included & torch.isfinite(z))
    rhat = torch.full(post.shape[:-2], float("nan"), dtype=post.dtype, device=post.device)
    every = included.all(-1)
    if bool(every.any()):
        r = torch.as_tensor(_trace_rhat(np.where(np.isfinite(p), p, 0.0)), dtype=post.dtype, device=post.device)
        rhat = torch.where(every, r, rhat)
    return dict(trend_z=z, trend=trend, trend_p=trend_p, rhat=rhat)


def reduce_trace(trace, centre_loss, accept, nb, n_burnin: int, settings: dict) -> LLCResult:
    """LLCResult from the loss trace (C..., K, T), acceptances (C..., K, T), nbeta (C..., 1) or ()."""
    post = trace[..., n_burnin:]
    est = _estimates(post, centre_loss.unsqueeze(-1), nb)
    a = accept[..., max(n_burnin, 1):]
    acc = torch.nanmean(a.reshape(a.shape[:-2] + (-1,)), -1)
    return LLCResult(loss_trace=trace, centre_loss=centre_loss, acceptance=acc, settings=settings,
                     **est, **_convergence(post, est["included"]))
