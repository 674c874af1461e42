"""A numerical census of the critical points of the population loss for any (r, c).

Starts (`census_starts`, one row each of theta = flatten_params(W, b), float64):
  zoo     every r = 2 zoo point (tms.theory.zoo) embedded in R^r (extra rows zero);
  frame   regular frames of unit vectors (tms.theory.canonical.frames: polygons, simplex, antipodal
          pairs, antiprisms, bipyramids) with k <= c columns, bias 0 or -0.1, and 0, 1 or c - k
          of the other columns carrying the '+' bias 1/(2c), the rest zero with bias -1;
  prior   W, b ~ N(0, s^2) for every s in settings.scales;
  gd      prior draws run down the population loss by plain gradient descent.
Every random start is a counter-based function of (seed, family, scale, item) (tms.core.rng,
stream START), so a start converges to the same point whatever batch it shares.

Convergence (`solve_critical`): Levenberg-Marquardt on grad L = 0, i.e. least squares on the
gradient with the exact Hessian H as its Jacobian: (H^T H + mu I) step = -H^T g, mu adapted
per start. It goes to saddles as well as minima. Batched over starts (no loop over them); the
Hessian is the closed form's (tms.theory.hessian: equal to the double-backward Hessian of the
closed form, `batched_hessian`, to rounding; 7 times faster than the reverse-mode Jacobian of
the analytic gradient it replaced at the census's 256 starts a chunk: benchmarks/bench_hessian.py).
A point is kept when its gradient, re-evaluated by autograd of the closed form, is below
GRAD_TOL after `canonicalise`: zero columns (|W_i| <= ZERO_TOL) are set to 0, the flat bias
of a dead output (b_i <= -m_i, tms.theory.canonical) is set to the zoo's value (-1 for a zero
column, -m_i, the least-norm point of its flat set, otherwise) and held fixed while the point
is polished again. Points are then deduplicated modulo O(r) x feature permutations (canonical
pair (G, bt), tms.theory.canonical) and described (`CensusPoint`, tms.theory.census_points).

Phase reading (`read_phase`, `Census.read`): the nearest census point in signature distance
(tms.theory.canonical.signature: invariant under O(r), permutations and the flat biases, a lower
bound on the matched max-entry distance of (G, bt)), 'other' beyond READ_THRESHOLD = 0.1. At r = 2
it agrees with the zoo reading (tms.theory.phases.classify) on zoo points with small noise
(tests/theory/test_census.py). Posterior draws (`Census.read_posterior`) are read among the local
minima only (kinds 'min', 'min?': the phases; a draw is never labelled a saddle) with the wider
POSTERIOR_THRESHOLD = 1.0: at r = 3, c = 7 and n = 300..3000 the beta = 1 draws lie at signature
distance 0.15..1 from the nearest census point (posterior spread of order lambda / n in L), so the
reading is a Voronoi partition of the draws among the census minima.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tms.core import progress as progress_bar
from tms.core import checks, io, rng
from tms.core.settings import Settings, setting
from tms.theory import canonical, phases, zoo
from tms.theory.census_points import CensusPoint, describe, points_from_arrays, points_to_arrays
from tms.theory.hessian import population_hessian
from tms.theory.loss import batched_grad, flatten_params, population_loss, population_loss_and_grad, unflatten_params

GRAD_TOL = 1e-10  # a kept point's full gradient norm (autograd of the closed form) is below this
STOP_TOL = 1e-13  # Levenberg-Marquardt stops a start below this gradient norm
MU_START, MU_MAX, MAX_STEP = 1e-3, 1e10, 1.0  # LM damping: initial, give-up; step length cap
ZERO_BIAS = -1.0  # bias of a canonical dead zero column (the zoo's zero_bias)
FAMILIES = ("zoo", "frame", "prior", "gd")
READ_THRESHOLD = 0.1  # read_phase: signature distance beyond which a point is 'other'
POSTERIOR_THRESHOLD = 1.0  # Census.read_posterior: the same for posterior draws (broad at r = 3, n ~ 10^3)
PHASE_KINDS = ("min", "min?")  # the census points that are phases (local minima); saddles are not
CHUNK = 256  # starts converged (and saved, with out=) together
MAX_R, MAX_C = 6, 10  # the automorphism searches and the frames are validated up to here


@dataclass(frozen=True)
class CensusSettings(Settings):
    """What the census starts from and how long it polishes (see the module docstring)."""

    n_prior: int = setting(64, "prior-draw starts W, b ~ N(0, s^2) per scale s", minimum=0, maximum=10**6)
    scales: tuple[float, ...] = setting((0.3, 0.6, 1.0), "scales s of the prior-draw starts", positive=True)
    n_gd: int = setting(16, "starts run down the population loss by gradient descent first", minimum=0,
                        maximum=10**5)
    gd_steps: int = setting(2000, "gradient-descent steps of each gd start", minimum=1, maximum=10**6)
    gd_lr: float = setting(0.05, "gradient-descent step size of the gd starts", positive=True, maximum=1.0)
    frames: bool = setting(True, "start from regular frames (polygon, simplex, cross, antiprism, bipyramid)")
    zoo: bool = setting(True, "start from every r = 2 zoo point embedded in R^r")
    max_iter: int = setting(200, "Levenberg-Marquardt iterations per start", minimum=1, maximum=10**5)
    seed: int = setting(0, "seed of the random starts", minimum=0)

    def check(self):
        if not self.scales:
            raise ValueError("scales must hold at least one prior scale")
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))  # '--scales 1,2' saves as floats


QUICK = CensusSettings()
FULL = CensusSettings(n_prior=512, n_gd=128, max_iter=400)


# ---- starts -------------------------------------------------------------------------------------


@dataclass
class Starts:
    """theta (N, r*c + c) float64 starting points and family (N,) int (index into FAMILIES)."""

    theta: torch.Tensor
    family: torch.Tensor


def _embedded_zoo(r: int, c: int) -> torch.Tensor:
    pts = zoo.critical_points(c)
    W = torch.zeros(len(pts), r, c, dtype=torch.float64)
    W[:, :2] = torch.stack([q.W for q in pts])
    return flatten_params(W, torch.stack([q.b for q in pts]))


def _frame_starts(r: int, c: int) -> torch.Tensor:
    rows = []
    for _, U in canonical.frames(r, c):
        k = U.shape[1]
        for bias in (0.0, -0.1):
            for s in sorted({0, min(1, c - k), c - k}):
                W = torch.zeros(r, c, dtype=torch.float64)
                W[:, :k] = U
                b = torch.full((c,), ZERO_BIAS, dtype=torch.float64)
                b[:k], b[k: k + s] = bias, zoo.plus_bias(c)
                rows.append(flatten_params(W, b))
    return torch.stack(rows) if rows else torch.zeros(0, r * c + c, dtype=torch.float64)


def _prior_draws(n: int, r: int, c: int, seed: int, family: int, scales: tuple) -> torch.Tensor:
    """n draws per scale: item i of scale j is s_j * N(0, I) from key(seed, family, j), counter 0."""
    d = r * c + c
    out = [s * rng.normal(rng.keys_from(torch.tensor(rng.key(seed, family, j)), (n,)), 0, d, stream=rng.START)
           for j, s in enumerate(scales)]
    return torch.cat(out) if out else torch.zeros(0, d, dtype=torch.float64)


def gradient_descent(theta: torch.Tensor, r: int, c: int, steps: int, lr: float) -> torch.Tensor:
    """Plain gradient descent on the population loss, batched: theta (N, d) -> (N, d)."""
    for _ in range(steps):
        theta = theta - lr * _grad(theta, r, c)
    return theta


def census_starts(r: int, c: int, settings: CensusSettings) -> Starts:
    """Every start of the census, families in the order of FAMILIES (see the module docstring)."""
    d = r * c + c
    parts = [_embedded_zoo(r, c) if settings.zoo else torch.zeros(0, d, dtype=torch.float64),
             _frame_starts(r, c) if settings.frames else torch.zeros(0, d, dtype=torch.float64),
             _prior_draws(settings.n_prior, r, c, settings.seed, rng.CENSUS_PRIOR, settings.scales)]
    n_gd = settings.n_gd // len(settings.scales) + (settings.n_gd % len(settings.scales) > 0)
    gd = _prior_draws(n_gd, r, c, settings.seed, rng.CENSUS_GD, settings.scales)[: settings.n_gd]
    parts.append(gradient_descent(gd, r, c, settings.gd_steps, settings.gd_lr) if len(gd) else gd)
    family = torch.cat([torch.full((len(p),), i, dtype=torch.int64) for i, p in enumerate(parts)])
    return Starts(torch.cat(parts), family)


# ---- Levenberg-Marquardt on the gradient -------------------------------------------------------------


def _grad(theta: torch.Tensor, r: int, c: int) -> torch.Tensor:
    W, b = unflatten_params(theta, r, c)
    _, gW, gb = population_loss_and_grad(W, b, compiled=False)
    return flatten_params(gW, gb)


def _normal_equations(theta, g, frozen, r: int, c: int):
    """(H^T H (A, d, d), H^T g (A, d, 1)) of the damped Gauss-Newton step at theta (A, d), with
    H the exact Hessian; frozen (A, d) coordinates' rows and columns are the identity's."""
    H = population_hessian(*unflatten_params(theta, r, c))
    fz = frozen.to(H.dtype)
    H = H * (1 - fz).unsqueeze(-1) * (1 - fz).unsqueeze(-2) + torch.diag_embed(fz)
    return H.mT @ H, H.mT @ g.unsqueeze(-1)


def _lm_step(theta, HtH, Htg, mu):
    """One damped Gauss-Newton step per start: (H^T H + mu I) step = -H^T g, its length capped."""
    A = HtH + mu[:, None, None] * torch.eye(HtH.shape[-1], dtype=HtH.dtype)
    step = -torch.linalg.solve(A, Htg).squeeze(-1)
    step = torch.where(torch.isfinite(step).all(-1, keepdim=True), step, torch.zeros_like(step))
    return theta + step / step.norm(dim=-1, keepdim=True).clamp(min=MAX_STEP) * MAX_STEP


def solve_critical(theta: torch.Tensor, r: int, c: int, *, max_iter: int = 200,
                   frozen: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Levenberg-Marquardt on grad L = 0 from every start: theta (N, d) -> (theta (N, d),
    |grad| (N,)). Each start has its own damping and stops on its own (|grad| < STOP_TOL or
    damping above MU_MAX), so its result does not depend on the batch. frozen (N, d) bool:
    coordinates held fixed (their gradient entries are ignored). A start whose step was
    rejected keeps its normal equations (theta and g unchanged): only mu changes."""
    theta = theta.detach().clone()
    frozen = torch.zeros_like(theta, dtype=torch.bool) if frozen is None else frozen
    g = torch.where(frozen, 0.0, _grad(theta, r, c))
    mu = torch.full(theta.shape[:1], MU_START, dtype=theta.dtype)
    n, d = theta.shape
    HtH, Htg = theta.new_empty(n, d, d), theta.new_empty(n, d, 1)
    stale = torch.ones(n, dtype=torch.bool)
    active = torch.nonzero(g.norm(dim=-1) > STOP_TOL).flatten()
    for _ in range(max_iter):
        if not len(active):
            break
        redo = active[stale[active]]
        if len(redo):
            HtH[redo], Htg[redo] = _normal_equations(theta[redo], g[redo], frozen[redo], r, c)
            stale[redo] = False
        new = _lm_step(theta[active], HtH[active], Htg[active], mu[active])
        g_new = torch.where(frozen[active], 0.0, _grad(new, r, c))
        better = g_new.norm(dim=-1) < g[active].norm(dim=-1)
        theta[active] = torch.where(better[:, None], new, theta[active])
        g[active] = torch.where(better[:, None], g_new, g[active])
        mu[active] = torch.where(better, mu[active] / 3, mu[active] * 4)
        stale[active[better]] = True
        active = active[(g[active].norm(dim=-1) > STOP_TOL) & (mu[active] < MU_MAX)]
    return theta, g.norm(dim=-1)


def canonicalise(theta: torch.Tensor, r: int, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero columns to 0 and the flat biases of dead outputs to their canonical value (module
    docstring): theta (N, d) -> (theta (N, d), frozen (N, d) bool: the flat bias coordinates)."""
    W, b = unflatten_params(theta, r, c)
    zero = W.norm(dim=-2) <= canonical.ZERO_TOL
    W = torch.where(zero.unsqueeze(-2), 0.0, W)
    m = canonical.firing_threshold(W.mT @ W)
    dead = b <= -m
    b = torch.where(dead, torch.where(zero, torch.full_like(b, ZERO_BIAS), -m), b)
    frozen = torch.cat([torch.zeros_like(W.flatten(-2), dtype=torch.bool), dead], -1)
    return flatten_params(W, b), frozen


def converge(theta: torch.Tensor, r: int, c: int, max_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """solve_critical, canonicalise, polish with the flat biases held, canonicalise again; returns
    (theta (N, d), |grad| (N,) by autograd of the closed form at the canonical points)."""
    theta, _ = solve_critical(theta, r, c, max_iter=max_iter)
    theta, frozen = canonicalise(theta, r, c)
    theta, _ = solve_critical(theta, r, c, max_iter=max(20, max_iter // 10), frozen=frozen)
    theta, _ = canonicalise(theta, r, c)
    _, gW, gb = batched_grad(population_loss, *unflatten_params(theta, r, c))
    return theta, flatten_params(gW, gb).norm(dim=-1)


# ---- deduplication and the census ----------------------------------------------------------------


def deduplicate(theta: torch.Tensor, r: int, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Classes modulo O(r) x feature permutations: theta (N, d) -> (representatives (P,) indices
    into theta, the first of each class; class (N,) int64). Signatures prefilter, `match` decides."""
    W, b = unflatten_params(theta, r, c)
    sig = canonical.signature(W, b)
    pairs = [canonical.canonical_pair(W[i], b[i]) for i in range(len(theta))]
    reps: list[int] = []
    cls = torch.empty(len(theta), dtype=torch.int64)
    for i in range(len(theta)):
        near = []
        if reps:
            dist = canonical.signature_distance(sig[i], sig[reps])
            near = torch.nonzero(dist <= canonical.MATCH_TOL).flatten().tolist()
        hit = next((k for k in near if canonical.match(*pairs[i], *pairs[reps[k]]) is not None), None)
        if hit is None:
            reps.append(i)
            hit = len(reps) - 1
        cls[i] = hit
    return torch.tensor(reps, dtype=torch.int64), cls


@dataclass
class Census:
    """The census of (r, c): points sorted by loss (`CensusPoint`), the settings, how many starts
    ran (n_starts) and how many reached a critical point (n_critical). `read(W, b)` reads phases."""

    r: int
    c: int
    settings: CensusSettings
    points: list[CensusPoint]
    n_starts: int
    n_critical: int

    def signatures(self) -> torch.Tensor:
        """(P, m) canonical signatures of the points (tms.theory.canonical.signature)."""
        return canonical.signature(torch.stack([q.W for q in self.points]), torch.stack([q.b for q in self.points]))

    def read(self, W, b, threshold: float = READ_THRESHOLD, kinds: tuple[str, ...] | None = None) -> np.ndarray:
        """read_phase(W, b, self, threshold=threshold, kinds=kinds)."""
        return read_phase(W, b, self, threshold=threshold, kinds=kinds)

    def read_posterior(self, W, b) -> np.ndarray:
        """The posterior's reading: the nearest local minimum (kinds PHASE_KINDS), 'other' beyond
        POSTERIOR_THRESHOLD (module docstring)."""
        return read_phase(W, b, self, threshold=POSTERIOR_THRESHOLD, kinds=PHASE_KINDS)

    def identity(self) -> dict:
        return dict(r=self.r, c=self.c, census=self.settings.as_record())

    def save(self, path) -> None:
        """PATH.npz + PATH.json (tms.core.io): every point's numbers as arrays, labels and notes,
        the settings (under 'settings' with r and c: what io.reuse_problem compares), counts."""
        arrays, text = points_to_arrays(self.points, FAMILIES)
        io.save_result(path, arrays, dict(settings=self.identity(), families=list(FAMILIES), n_starts=self.n_starts,
                                          n_critical=self.n_critical, **text))

    @classmethod
    def load(cls, path) -> "Census":
        arrays, rec = io.load_result(path)
        ident = rec["settings"]
        points = points_from_arrays(arrays, rec, tuple(rec["families"]))
        return cls(ident["r"], ident["c"], CensusSettings.from_record(ident["census"]), points, rec["n_starts"],
                   rec["n_critical"])


def _converge_chunks(starts: Starts, r: int, c: int, settings: CensusSettings, out, progress: bool):
    """converge() over chunks of CHUNK starts, checks.cores() chunks at once (threads: torch's ops
    release the GIL; a chunk's numbers do not depend on its thread); with out, each chunk is
    saved at out_starts/chunkNNNN and reused on a rerun (io.reuse_problem): the census resumes."""
    n = len(starts.theta)

    def chunk(j: int):
        lo = j * CHUNK
        block = starts.theta[lo: lo + CHUNK]
        ident = dict(r=r, c=c, census=settings.as_record(), first=lo, count=len(block))
        path = None if out is None else Path(f"{out}_starts") / f"chunk{j:04d}"
        if path is not None and io.reuse_problem(path, ident) is None:
            arrays, _ = io.load_result(path)
            return torch.from_numpy(arrays["theta"]), torch.from_numpy(arrays["grad_norm"])
        theta, gnorm = converge(block, r, c, settings.max_iter)
        if path is not None:
            io.save_result(path, dict(theta=theta, grad_norm=gnorm), dict(settings=ident))
        return theta, gnorm

    count = -(-n // CHUNK)
    with ThreadPoolExecutor(max_workers=max(1, min(checks.cores(), count))) as pool:
        done = progress_bar.bar(pool.map(chunk, range(count)), total=count, desc=f"census r={r} c={c} ({n} starts)",
                                leave=False, disable=not progress)
        thetas, norms = zip(*done)
    return torch.cat(thetas), torch.cat(norms)


def census(r: int, c: int, settings: CensusSettings = QUICK, *, out=None, progress: bool = False,
           **changes) -> Census:
    """The census of the critical points of the population loss at (r, c) (module docstring).

    settings (with `changes` applied, e.g. n_prior=256): the starts and the polish. out: a result
    stem; the census is saved there (and reused when it exists with the same settings and
    package version), each chunk of converged starts beside it (a rerun resumes). progress: a bar.
    """
    settings = settings.replace(**changes) if changes else settings
    r = checks.positive_int(r, "r", minimum=2, maximum=MAX_R)
    c = checks.positive_int(c, "c", minimum=3, maximum=MAX_C)
    ident = dict(r=r, c=c, census=settings.as_record())
    if out is not None and io.reuse_problem(out, ident) is None:
        progress_bar.reused(f"census r={r} c={c} (same settings)", out)
        return Census.load(out)
    starts = census_starts(r, c, settings)
    theta, gnorm = _converge_chunks(starts, r, c, settings, out, progress)
    kept = torch.nonzero(gnorm < GRAD_TOL).flatten()
    reps, cls = deduplicate(theta[kept], r, c)
    W, b = unflatten_params(theta[kept][reps], r, c)
    loss = population_loss(W, b)
    order = sorted(range(len(reps)), key=lambda k: (round(float(loss[k]), 12), k))  # ties: first found first
    points = describe(W[order], b[order])
    for q, k in zip(points, order):
        fam = starts.family[kept][cls == k]
        q.found = len(fam)
        q.found_by = {f: int((fam == i).sum()) for i, f in enumerate(FAMILIES)}
    result = Census(r, c, settings, points, len(starts.theta), len(kept))
    if out is not None:
        result.save(out)
    return result


def read_phase(W, b, census: Census, *, threshold: float = READ_THRESHOLD,
               kinds: tuple[str, ...] | None = None) -> np.ndarray:
    """Phase reading for any r: the label of the census point nearest to each (W, b) in signature
    distance (tms.theory.canonical: invariant under O(r) and feature permutations, blind to the
    flat biases), 'other' beyond `threshold`; kinds: only points of these kinds are candidates
    (None: all). W (..., r, c), b (..., c) -> numpy str array (...), batched over every draw."""
    W, b = checks.params(torch.as_tensor(W).double(), torch.as_tensor(b).double())
    if W.shape[-2:] != (census.r, census.c):
        raise ValueError(f"W must be (..., {census.r}, {census.c}) for this census, got {tuple(W.shape)}")
    B = torch.broadcast_shapes(W.shape[:-2], b.shape[:-1])
    sig = canonical.signature(W, b)
    sig = sig.reshape(-1, sig.shape[-1])
    keep = [i for i, q in enumerate(census.points) if kinds is None or q.kind in kinds]
    if not keep:
        return np.full(tuple(B), phases.OTHER)
    dist = torch.cdist(sig, census.signatures()[keep], p=float("inf"))  # (N, P')
    best, idx = dist.min(-1)
    names = np.array([census.points[i].label for i in keep] + [phases.OTHER], dtype=str)
    idx = torch.where(best <= threshold, idx, len(keep))
    return names[idx.numpy()].reshape(tuple(B))
