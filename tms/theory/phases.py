"""Phases: which zoo family a parameter set belongs to, and which energy level a loss sits on.

`classify(W, b)` reads the family label k^{s+, p-} (SPEC 2) off the geometry, batched:
  1. a column with norm < zero_tol is zero; a zero column with bias > plus_tol counts as
     a "+" (constant-output column), otherwise as a flat negative-bias zero column;
  2. a nonzero column whose output fires on less than a fraction (1 - off_ratio) of its own
     inputs (b_i < -off_ratio |W_i|^2) is a switched-off vertex ("-");
  3. the k nonzero columns (switched-off ones included) must form a regular k-gon: every
     angular gap between consecutive columns within angle_tol * 2 pi/k of 2 pi/k, and
     max/min column norm <= 1 + norm_tol;
  4. the label (k, s, p) must be a zoo family at this c;
  5. if 3-4 fail, a second reading treats the switched-off columns as dead zero columns
     (a negative-bias zero column is flat, so posterior samples carry such columns far
     from 0) and tests the firing columns alone as a k-gon with p = 0;
  anything else is "other".
Every step is invariant under rotations/reflections of the plane (they use norms, biases
and the multiset of angular gaps) and under feature permutations (they count).
Everything is vectorised over the batch: two sorts of c angles per item, no Python loop;
float32 inputs are classified in float32 (same labels on the benchmark; half the memory).
`classify_codes` is the same reading compiled for rows theta (tms.theory.phase_kernels), and
`wall_kernel` puts it around a compiled one-row energy: the phase wall of the local ladders
(SPEC 3) on the compiled HMC round.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from tms.core import checks
from tms.theory import zoo
from tms.theory.loss import population_loss

OTHER = "other"


def _as_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x):
        return checks.tensor(x, name, min_dim=1)  # raises the standard error
    return x  # finiteness is checked once, in checks.params


@functools.lru_cache(maxsize=None)
def _lookup(c: int) -> tuple[np.ndarray, int]:
    """Label table indexed by code = (k * (c + 1) + s) * (c + 1) + p; OTHER where not a family."""
    m = c + 1
    table = np.full(m * m * m + 1, OTHER, dtype=object)
    for k, s, p in zoo.family_members(c):
        table[(k * m + s) * m + p] = zoo.make_label(k, s, p)
    return table.astype(str), m


def classify(W, b, *, zero_tol: float = 0.3, plus_tol: float = 0.0, off_ratio: float = 0.8,
             angle_tol: float = 0.35, norm_tol: float = 0.5) -> np.ndarray:
    """Zoo label of every parameter set: W (..., 2, c), b (..., c) -> numpy str array (...).

    Accepts torch tensors or numpy arrays (any float dtype, any device); batch dims of W and
    b broadcast. "other" where no zoo family fits. Thresholds are documented in the module.
    """
    W, b = _as_tensor(W, "W"), _as_tensor(b, "b")
    if W.dtype != b.dtype:
        W, b = W.double(), b.double()
    checks.params(W, b)
    if W.shape[-2] != 2:
        raise ValueError(f"classify needs r = 2 (W of shape (..., 2, c)), got W {tuple(W.shape)}")
    c = W.shape[-1]
    B = torch.broadcast_shapes(W.shape[:-2], b.shape[:-1])
    W = W.expand(B + W.shape[-2:]).reshape(-1, 2, c)  # float32 inputs stay float32 (fast path)
    b = b.to(W.device).expand(B + (c,)).reshape(-1, c)
    x, y = W[:, 0], W[:, 1]
    norm2 = x * x + y * y  # (N, c); (an explicit sum: W.norm over dim -2 is ~10x slower here)
    norm = norm2.sqrt()
    zero = norm < zero_tol
    plus = zero & (b > plus_tol)
    off = ~zero & (b < -off_ratio * norm2)
    s = plus.sum(-1)
    ang = torch.atan2(y, x)
    table, m = _lookup(c)
    other = torch.full_like(s, m * m * m)
    # first reading: every nonzero column is a vertex (off ones are switched-off vertices)
    poly = ~zero
    k1, p1 = poly.sum(-1), off.sum(-1)
    code1 = torch.where(_regular(ang, norm, poly, angle_tol, norm_tol) & (k1 >= 3), (k1 * m + s) * m + p1, other)
    # second reading: off columns that do not sit on the polygon are dead (flat) zero columns
    poly = ~zero & ~off
    k2 = poly.sum(-1)
    code2 = torch.where(_regular(ang, norm, poly, angle_tol, norm_tol) & (k2 >= 3), (k2 * m + s) * m, other)
    known = torch.from_numpy(table != OTHER).to(code1.device)
    code = torch.where(known[code1], code1, code2).cpu().numpy()
    return table[code].reshape(tuple(B))


def _expected(kk: torch.Tensor) -> torch.Tensor:
    """2 pi / k of integer k (...) as classify computes it (torch's default float dtype)."""
    return 2 * math.pi / kk


def _regular(ang: torch.Tensor, norm: torch.Tensor, poly: torch.Tensor, angle_tol: float,
             norm_tol: float) -> torch.Tensor:
    """Do the columns in `poly` (N, c) form a regular k-gon? Sorted angles (N, c), gaps vs 2 pi/k."""
    c = ang.shape[-1]
    k = poly.sum(-1)
    ang = torch.where(poly, ang, torch.full_like(ang, math.inf)).sort(-1).values  # members first
    kk = k.clamp(min=1).unsqueeze(-1)
    expected = _expected(kk)
    if c > 1:
        gaps = ang[:, 1:] - ang[:, :-1]  # (N, c-1); valid for j < k - 1
        j = torch.arange(c - 1, device=ang.device)
        gap_dev = torch.where(j < kk - 1, (gaps - expected).abs(), torch.zeros_like(gaps)).amax(-1)
    else:
        gap_dev = torch.zeros_like(ang[:, 0])
    last = ang.gather(-1, kk - 1).squeeze(-1)
    wrap_dev = (ang[:, 0] + 2 * math.pi - last - expected.squeeze(-1)).abs()
    regular = torch.maximum(gap_dev, wrap_dev) <= angle_tol * expected.squeeze(-1)  # NaN/inf -> False
    big = torch.where(poly, norm, torch.zeros_like(norm)).amax(-1)
    small = torch.where(poly, norm, torch.full_like(norm, math.inf)).amin(-1)
    return regular & (big <= (1 + norm_tol) * small)


# ---- the compiled one-row reading and the phase wall (tms.theory.phase_kernels) ------------------


def _kernels():
    """tms.theory.phase_kernels, or None where numba is missing or fails to load."""
    try:
        from tms.theory import phase_kernels
    except Exception:  # ImportError, or a broken numba/llvmlite install: the torch path
        return None
    return phase_kernels


def label_codes(c: int) -> dict[str, int]:
    """The integer code of every label classify gives at c (its table's index; OTHER: (c + 1)^3)."""
    table, m = _lookup(c)
    return {str(lab): (i if lab != OTHER else m * m * m) for i, lab in enumerate(table)}


@functools.lru_cache(maxsize=None)
def _reading(c: int):
    """(code, buf, tables): classify's compiled one-row reading at c with its default thresholds
    (tms.theory.phase_kernels.reader), its scratch maker and its tables (known codes
    (m^3 + 1,) bool; 2 pi / k and angle_tol 2 pi / k (c + 1,) float64, as `_regular` computes
    them); None without numba."""
    k = _kernels()
    if k is None:
        return None
    t = dict(classify.__kwdefaults__)
    angle_tol = t.pop("angle_tol")
    table, _ = _lookup(c)
    expected = _expected(torch.arange(c + 1).clamp(min=1))
    tables = (np.ascontiguousarray(table != OTHER), expected.double().numpy(), (angle_tol * expected).double().numpy())
    return k.reader(c, **t), k.buffers(c), tables


def classify_codes(theta, c: int) -> np.ndarray:
    """The compiled reading of finite rows theta (N, 3 c) (float64; W row-major then b): label codes
    (N,) int64 (`label_codes`), classify's labels to rounding in atan2 (phase_kernels)."""
    code, buf, tables = _reading(c)
    rows = theta.detach().cpu().numpy() if isinstance(theta, torch.Tensor) else np.asarray(theta)
    return _kernels().codes(rows.reshape(-1, 3 * c), code, buf, tables)


@functools.lru_cache(maxsize=None)
def _walled(energy, scratch, c: int):
    code, buf, _ = _reading(c)
    return _kernels().walled(energy, scratch, code, buf)


def wall_kernel(c: int, energy, scratch, bind, labels):
    """A compiled one-row energy (energy, scratch, bind: tms.samplers.compiled.RowEnergy's
    fields) behind classify's wall (SPEC 3): (energy, scratch, bind) of E where the zoo reading
    of the row is its item's label, +inf elsewhere; labels (G,) str, one per item of the
    chains' leading batch dim. None without numba (tms.theory.phase_kernels.walled)."""
    if _reading(c) is None:
        return None
    codes = label_codes(c)
    want = np.array([codes.get(lab, -1) for lab in np.asarray(labels).tolist()], dtype=np.int64)
    wall_energy, wall_scratch = _walled(energy, scratch, c)

    def wall_bind(B: tuple):
        """bind(B)'s (data-set index, scale, data) with data = (inner data, wanted code (N,),
        the reading's tables); None where the chains do not fit (B[0] not the items)."""
        inner = bind(B)
        if inner is None or not B or len(want) not in (B[0], 1):
            return None
        rows = np.broadcast_to(want.reshape((-1,) + (1,) * (len(B) - 1)), B).reshape(-1)
        return inner[0], inner[1], (inner[2], np.ascontiguousarray(rows), _reading(c)[2])

    return wall_energy, wall_scratch, wall_bind


# ---- energy levels -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _levels(c: int) -> tuple[np.ndarray, tuple[tuple[str, ...], ...]]:
    pts = []
    for k, s, p in zoo.family_members(c):
        W, bb = zoo.kgon_params(k, c, s, p)
        pts.append((float(population_loss(W, bb)), k, s, p))
    pts.sort(key=lambda t: t[0])
    groups: list[list[tuple]] = []
    for q in pts:  # levels closer than 1e-12 coincide (e.g. 3^{s+} and 4^{s+,-})
        if groups and q[0] - groups[-1][0][0] < 1e-12:
            groups[-1].append(q)
        else:
            groups.append([q])
    groups = [sorted(g, key=lambda q: (-q[1], q[2], q[3])) for g in groups]  # larger k first
    losses = np.array([g[0][0] for g in groups])
    names = tuple(tuple(zoo.make_label(*q[1:]) for q in g) for g in groups)
    return losses, names


def energy_levels(c: int) -> list[tuple[float, tuple[str, ...]]]:
    """Distinct zoo loss levels at c, ascending: (loss, labels on that level, larger k first)."""
    losses, names = _levels(c)
    return list(zip(losses.tolist(), names))


def nearest_level(loss, c: int, return_distance: bool = False):
    """Label of the zoo energy level nearest to each loss (numpy str array, shape of loss).

    Where levels coincide the label with the largest k represents them (e.g. "4,-" for the
    level it shares with "3"); `energy_levels(c)` lists all. With return_distance=True
    returns (labels, loss - level) (signed, float64 numpy).
    """
    x = np.asarray(loss.detach().cpu().numpy() if isinstance(loss, torch.Tensor) else loss, dtype=np.float64)
    if not np.isfinite(x).all():
        raise ValueError("loss contains NaN or inf; expected finite values")
    losses, names = _levels(c)
    idx = np.abs(x[..., None] - losses).argmin(-1)
    labels = np.array([n[0] for n in names], dtype=str)[idx]
    if return_distance:
        return labels, x - losses[idx]
    return labels


def level_loss(label: str, c: int) -> float:
    """Population loss of the zoo family `label` at c (cheap: no Hessian)."""
    k, s, p = zoo.parse_label(label)
    W, bb = zoo.kgon_params(k, c, s, p)
    return float(population_loss(W, bb))


# ---- the paper's geometric reading: convex-hull vertices ----------------------------------------


def hull_vertices(W, *, zero_tol: float = 0.3) -> torch.Tensor:
    """Which columns are vertices of the convex hull of the non-negligible columns.

    W (..., 2, c) (torch or numpy, any float dtype) -> bool tensor (..., c). A column is
    non-negligible when its norm is >= zero_tol; such a column i is a hull vertex iff the
    directions from it to the other non-negligible columns leave an angular gap > pi (a
    line through W_i has all of them strictly on one side). One or two non-negligible
    columns are all vertices. Points exactly on a hull edge are not vertices (as Qhull).
    Batched: one sort of c - 1 angles per column, no Python loop (SPEC 3, the paper's reading).
    """
    W = _as_tensor(W, "W")
    checks.tensor(W, "W", min_dim=2)
    if W.shape[-2] != 2:
        raise ValueError(f"the hull reading needs r = 2 (W of shape (..., 2, c)), got W {tuple(W.shape)}")
    x, y = W[..., 0, :], W[..., 1, :]
    keep = (x * x + y * y).sqrt() >= zero_tol  # (..., c)
    c = x.shape[-1]
    ang = torch.atan2(y.unsqueeze(-2) - y.unsqueeze(-1), x.unsqueeze(-2) - x.unsqueeze(-1))  # (..., i, j): i -> j
    eye = torch.eye(c, dtype=torch.bool, device=W.device)
    valid = keep.unsqueeze(-2) & keep.unsqueeze(-1) & ~eye  # (..., i, j)
    ang = torch.where(valid, ang, torch.full_like(ang, math.inf)).sort(-1).values  # valid first
    m = valid.sum(-1)  # (..., i) other non-negligible columns
    if c > 1:
        j = torch.arange(c - 1, device=W.device)
        gaps = torch.where(j < (m - 1).unsqueeze(-1), ang[..., 1:] - ang[..., :-1], torch.zeros_like(ang[..., 1:]))
        last = ang.gather(-1, (m - 1).clamp(min=0).unsqueeze(-1)).squeeze(-1)
        wrap = ang[..., 0] + 2 * math.pi - last
        big = torch.maximum(gaps.amax(-1), torch.where(m > 0, wrap, torch.zeros_like(wrap)))
    else:
        big = torch.zeros_like(x)
    return keep & ((m == 0) | (big > math.pi))


def classify_hull(W, b, *, zero_tol: float = 0.3, plus_tol: float = 0.0) -> np.ndarray:
    """The paper's reading of every parameter set: W (..., 2, c), b (..., c) -> numpy str (...).

    Label make_label(k, s): k = number of convex-hull vertices of the columns with norm >=
    zero_tol (`hull_vertices`), s = number of negligible columns with bias > plus_tol (the
    "+" count). Unlike `classify` there is no "other": every sample gets a label, and a hull
    label "5" means five hull vertices (an interior column or a dead vertex is not counted).
    """
    W, b = _as_tensor(W, "W"), _as_tensor(b, "b")
    if W.dtype != b.dtype:
        W, b = W.double(), b.double()
    checks.params(W, b)
    B = torch.broadcast_shapes(W.shape[:-2], b.shape[:-1])
    c = W.shape[-1]
    W = W.expand(B + W.shape[-2:])
    b = b.to(W.device).expand(B + (c,))
    k = hull_vertices(W, zero_tol=zero_tol).sum(-1)
    s = (((W * W).sum(-2).sqrt() < zero_tol) & (b > plus_tol)).sum(-1)
    names = np.array([zoo.make_label(kk, ss) for kk in range(c + 1) for ss in range(c + 1)], dtype=str)
    return names[(k * (c + 1) + s).cpu().numpy()].reshape(tuple(B))
