"""The regular k-gon of the TMS at r = 2, c = k (SPEC 2): the critical points (l*, b*) of the
population loss restricted to W = l U_k (unit vectors at angles 2 pi j / k), b = b 1.

(l*, b*) is found numerically from the exact loss (Newton on the 2-D restricted gradient from
a grid of starts, `kgon_roots`); by symmetric criticality (the dihedral group fixes exactly
the (l, b) subspace) it is a critical point of the full loss, which
`tms.theory.zoo.CriticalPoint.grad_norm` verifies in all r*c + c coordinates. Nothing about
which neighbours interfere is assumed.

Findings the tests pin down: regular k-gon critical points exist for every k in 3..16
(`kgon_report`), local minima of the full loss at c = k for k <= 9 and saddles for k >= 10.
The zoo built on them (families, labels, Hessians, lambda): tms.theory.zoo.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import torch

from tms.core import progress as progress_bar
from tms.core import checks
from tms.theory.loss import batched_hessian, is_smooth, population_loss

SEARCH_L, SEARCH_B = 3.0, 3.0  # kgon_roots seeds 0 < l <= 3, -3 <= b <= 1
DTYPE = torch.float64


def _unit_polygon(k: int) -> torch.Tensor:
    """Unit vectors at angles 2*pi*j/k: (2, k) float64."""
    ang = 2 * math.pi * torch.arange(k, dtype=DTYPE) / k
    return torch.stack([torch.cos(ang), torch.sin(ang)])


def _restricted(k: int, lb: torch.Tensor, hessian: bool = True):
    """Loss (...), gradient (..., 2) and Hessian (..., 2, 2) (or None) of L(l U, b 1) at
    c = k, batched over lb (..., 2) = (l, b)."""
    U = _unit_polygon(k)
    with torch.enable_grad():
        x = lb.detach().clone().requires_grad_(True)
        L = population_loss(x[..., 0, None, None] * U, x[..., 1, None] * torch.ones(k, dtype=DTYPE))
        (g,) = torch.autograd.grad(L.sum(), x, create_graph=hessian)
        if not hessian:
            return L.detach(), g.detach(), None
        rows = [torch.autograd.grad(g[..., i].sum(), x, retain_graph=True)[0] for i in range(2)]
    return L.detach(), g.detach(), torch.stack(rows, -2)


@dataclass(frozen=True)
class KgonRoot:
    """One critical point (l, b) of the restricted k-gon loss (at c = k)."""

    k: int
    l: float
    b: float
    loss_per_feature: float  # L at c = k (mean over the k polygon features)
    grad_norm: float  # restricted gradient norm at (l, b)
    last_step: float  # size of the last Newton step (convergence)
    restricted_eigs: tuple[float, float]  # eigenvalues of the 2x2 restricted Hessian
    full_negative_eigs: int  # negative eigenvalues of the full Hessian at c = k (saddle if > 0)
    smooth: bool  # is L C^2 at the point (c = k)
    interfering: int  # neighbour outputs that fire on a vertex's input for some mu in (0, 1]


@functools.lru_cache(maxsize=None)
def kgon_roots(k: int, tol: float = 1e-10) -> tuple[KgonRoot, ...]:
    """All critical points of the restricted loss L(l U_k, b 1) (c = k) in the search box
    0 < l <= 3, -3 <= b <= 1 with l^2 + b > 0 (some output fires; where none does L is
    locally constant and every point is trivially critical). Sorted by loss.

    Starts: the local minima of |grad| on a 64 x 64 grid of the box (one batched gradient
    evaluation), so minima, saddles and maxima of the restricted loss are all seeded; then
    damped Newton (exact autograd Hessian) on all starts at once until the last step and
    the restricted gradient are below `tol` / 100. Nothing about which neighbours
    interfere is assumed: the exact loss decides.
    """
    checks.positive_int(k, "k", minimum=3)
    x = _newton_roots(k, _grid_starts(k), tol)
    L, g, H = _restricted(k, x.x)
    gn = g.norm(dim=-1)
    good = x.live & (gn < tol / 100) & (x.step_norm < tol)
    roots: list[torch.Tensor] = []
    for i in torch.nonzero(good).flatten().tolist():
        if not any(float((x.x[i] - y).abs().max()) < 1e-7 for y in roots):
            roots.append(x.x[i])
    out = []
    for xr in roots:
        i = int(((x.x - xr).abs().max(-1).values).argmin())
        out.append(_root_record(k, xr, float(L[i]), float(gn[i]), float(x.step_norm[i]), H[i]))
    return tuple(sorted(out, key=lambda r: r.loss_per_feature))


def _grid_starts(k: int, n: int = 64) -> torch.Tensor:
    """(S, 2) starts (l, b): the interior local minima of |grad| of the restricted loss on an
    n x n grid of the search box, from one batched gradient evaluation."""
    lg = torch.linspace(3.0 / n, 3.0, n, dtype=DTYPE)
    bg = torch.linspace(-3.0, 1.0, n, dtype=DTYPE)
    grid = torch.stack(torch.meshgrid(lg, bg, indexing="ij"), -1)  # (n, n, 2)
    _, g0, _ = _restricted(k, grid, hessian=False)
    gn0 = g0.norm(dim=-1)
    pad = torch.nn.functional.pad(gn0[None, None], (1, 1, 1, 1), mode="replicate")[0, 0]
    neigh = torch.stack([pad[1 + di : 1 + di + n, 1 + dj : 1 + dj + n]
                         for di in (-1, 0, 1) for dj in (-1, 0, 1) if di or dj]).amin(0)
    alive = grid[..., 0] ** 2 + grid[..., 1] > 0
    interior = torch.zeros(n, n, dtype=torch.bool)
    interior[1:-1, 1:-1] = True  # a minimum of |grad| on the grid's edge is no seed
    return grid[(gn0 <= neigh) & alive & interior & (gn0 > 0)]


@dataclass
class _NewtonState:
    x: torch.Tensor  # (S, 2) current (l, b) of every start
    step_norm: torch.Tensor  # (S,) last Newton step length (distance to the root when converged)
    live: torch.Tensor  # (S,) bool: start still converging


def _newton_direction(H: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Newton step H^-1 g per start; a gradient step where H is singular."""
    ok = torch.linalg.det(H).abs() > 1e-300
    Hs = torch.where(ok[:, None, None], H, torch.eye(2, dtype=DTYPE))
    step = torch.linalg.solve(Hs, g.unsqueeze(-1)).squeeze(-1)
    return torch.where(ok[:, None], step, g)


def _backtrack(k: int, x, step, gn, live, done) -> tuple[torch.Tensor, torch.Tensor]:
    """Step length per start halving until |grad| decreases (Armijo on the gradient norm);
    returns (t, stalled): stalled starts found no decrease along the Newton direction."""
    t = torch.ones(x.shape[0], dtype=DTYPE)
    bad = torch.zeros(x.shape[0], dtype=torch.bool)
    for _ in range(20):
        _, gnew, _ = _restricted(k, x - t[:, None] * step, hessian=False)
        bad = (gnew.norm(dim=-1) > (1 - 1e-4 * t) * gn) & live & ~done
        if not bool(bad.any()):
            break
        t = torch.where(bad, t / 2, t)
    return t, bad


def _newton_roots(k: int, x: torch.Tensor, tol: float) -> _NewtonState:
    """Damped Newton on the restricted gradient from every start at once (<= 40 steps)."""
    st = _NewtonState(x, torch.full((x.shape[0],), float("inf"), dtype=DTYPE), torch.ones(x.shape[0], dtype=torch.bool))
    for it in range(40):
        _, g, H = _restricted(k, st.x)
        step = _newton_direction(H, g)
        gn = g.norm(dim=-1)
        done = gn < tol / 100
        t, stalled = _backtrack(k, st.x, step, gn, st.live, done)
        move = st.live & ~done & ~stalled
        x = torch.where(move[:, None], st.x - t[:, None] * step, st.x)
        # a converged start's step is its full Newton step there (the distance to the root)
        st.step_norm = torch.where(move, (t[:, None] * step).norm(dim=-1),
                                   torch.where(done, step.norm(dim=-1), st.step_norm))
        x[:, 0] = x[:, 0].clamp(min=1e-6)
        st.x = x
        # drop starts that stall, collapse, diverge, or go dead (l^2 + b <= 0: no output ever
        # fires, L is locally constant there and every such point is a trivial critical point)
        inside = (x[:, 0] > 1e-3) & (x[:, 0] < 1.2 * SEARCH_L) & (x[:, 1].abs() < 1.2 * SEARCH_B)
        st.live = st.live & ~stalled & inside & (x[:, 0] ** 2 + x[:, 1] > 1e-9)
        if it >= 15:  # Newton is quadratic near a root; starts still far after 15 steps are drifting
            st.live &= gn < 1e-6
        if bool((done | ~st.live).all()):
            break
    return st


def _root_record(k: int, xr: torch.Tensor, L: float, gn: float, step_norm: float, H: torch.Tensor) -> "KgonRoot":
    """The KgonRoot of one converged (l, b): smoothness, full-Hessian index, interference."""
    l, b = float(xr[0]), float(xr[1])
    W, bb = l * _unit_polygon(k), torch.full((k,), b, dtype=DTYPE)
    smooth = is_smooth(W, bb)
    ev = torch.linalg.eigvalsh(batched_hessian(population_loss, W, bb))
    neg = int((ev < -1e-8 * max(1.0, float(ev.abs().max()))).sum())
    cosines = torch.cos(2 * math.pi * torch.arange(1, k, dtype=DTYPE) / k)
    # neighbour j fires on input i for some mu <= 1 iff l^2 cos + b > 0 (b <= 0 here)
    interfering = int((l * l * cosines + b > 1e-12).sum()) if b <= 1e-12 else k - 1
    return KgonRoot(k, l, b, L, gn, step_norm, tuple(float(e) for e in torch.linalg.eigvalsh(H)),
                    neg if smooth else -1, smooth, interfering)


def solve_kgon(k: int) -> tuple[float, float]:
    """(l*, b*) of the regular k-gon critical point, float64, converged to 1e-10.

    The lowest-loss local minimum of the restricted loss among `kgon_roots(k)` (if none is
    a restricted minimum, the lowest-loss root). Raises ValueError if none exists.
    """
    roots = kgon_roots(k)
    if not roots:
        raise ValueError(f"no regular {k}-gon critical point found (k = {k})")
    mins = [r for r in roots if min(r.restricted_eigs) >= -1e-10]
    best = (mins or list(roots))[0]
    return best.l, best.b


@dataclass(frozen=True)
class KgonReportRow:
    """One restricted critical point of the k-gon (exists True), or the note that none was
    found at k (exists False, every other field None). full_saddle: a saddle of the full loss
    at c = k (None where L is not C^2 there); interfering: neighbours firing on a vertex's
    input, out of k - 1."""

    k: int
    exists: bool
    l: float | None = None
    b: float | None = None
    loss_per_feature: float | None = None
    restricted_min: bool | None = None
    full_saddle: bool | None = None
    interfering: int | None = None

    def as_record(self) -> dict:
        """JSON-ready: every field; only k and exists where no point was found."""
        return dataclasses.asdict(self) if self.exists else dict(k=self.k, exists=False)


def kgon_report(ks=range(3, 17), progress: bool = False) -> list[KgonReportRow]:
    """For each k: the restricted critical points found, with loss, stability and interference.

    Cost grows with k (about 1 s at k = 16, 2.5 s at k = 24 on one core); `progress` shows a bar.
    """
    rows = []
    for k in progress_bar.bar(list(ks), desc="k-gon search", leave=False, disable=not progress):
        roots = kgon_roots(k)
        if not roots:
            rows.append(KgonReportRow(k, exists=False))
        for r in roots:
            rows.append(KgonReportRow(k, True, l=r.l, b=r.b, loss_per_feature=r.loss_per_feature,
                                      restricted_min=min(r.restricted_eigs) >= -1e-10,
                                      full_saddle=(r.full_negative_eigs > 0) if r.smooth else None,
                                      interfering=r.interfering))
    return rows
