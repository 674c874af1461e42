"""Critical points modulo O(r) x feature permutations: invariants, exact matching, orbit sizes,
regular frames and geometry labels, for any r (docs/SPEC.md section 2: every critical point is an
orbit; the census in tms.theory.census uses all of it).

The canonical pair. A parameter set (W, b) is described by (G, bt): the Gram matrix G = W^T W
(c, c) and the effective bias bt_i = max(b_i, -m_i), m_i = max(0, max_j g_ij), the threshold
below which output i never fires on any input mu e_j, mu in [0, 1] (SPEC 1's closed form). Why
it is complete:
  * O(r): W^T W = V^T V implies V = Q W with Q in O(r) (both are square roots of one Gram
    matrix), and L depends on W only through G, so G is a complete invariant modulo O(r).
  * flat biases: a dead output (b_i <= -m_i) contributes the same to L for every such b_i, so
    points that differ only there lie in one connected critical set; bt collapses them (a
    dead zero column has bt_i = 0, a switched-off vertex bt_i = -|W_i|^2 for a polygon).
  * permutations act on (G, bt) as (P G P^T, P bt): two points lie in one orbit of the
    critical set iff some permutation matches their (G, bt), which `match` decides exactly
    (a depth-first search over column assignments, pruned entry by entry, within a tolerance).
So (G, bt) modulo simultaneous permutation is a complete invariant of the critical set; the
one thing it cannot tell apart is two points of one continuum of critical points (they are
reported as distinct points; for c <= 2r, e.g., unit columns with pairwise non-positive inner
products and b = 0 form a continuum of zero-loss points).

The signature. `signature(W, b)` (..., m) is a vector of sorted and spectral invariants of
(G, bt) (sorted bt, diagonal, off-diagonal entries, row sums; eigenvalues of G, G + diag bt
and max(G, 0), divided by c): batched, continuous, exactly invariant, and 1-Lipschitz in the
matched max-entry distance of (G, bt), so its max-norm distance is a lower bound on it. It is
NOT complete (cospectral weighted graphs share it): the census uses it as a prefilter and
`match` as the decision; the phase reading (tms.theory.census.read_phase) uses it as distance.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from tms.theory.loss import gram

ZERO_TOL = 1e-6  # a column with |W_i| <= ZERO_TOL is a zero column
MATCH_TOL = 1e-6  # entries of (G, bt) closer than this are equal (critical points at |grad| < 1e-10)


# ---- invariants ---------------------------------------------------------------------------------


def firing_threshold(G: torch.Tensor) -> torch.Tensor:
    """m_i = max(0, max_j g_ij): output i fires somewhere iff b_i > -m_i. (..., c, c) -> (..., c)."""
    return G.clamp(min=0).amax(-1)


def effective_bias(W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """bt_i = max(b_i, -m_i): the bias with the flat directions of dead outputs collapsed.

    W (..., r, c), b (..., c) -> (..., c). Continuous in (W, b); L(W, bt) = L(W, b).
    """
    return torch.maximum(b, -firing_threshold(gram(W)))


def signature(W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Invariants of (G, bt) under O(r) and feature permutations: (..., r, c), (..., c) -> (..., m),
    m = 7c + c(c-1)/2. Each part moves by at most the matched max-entry distance of (G, bt)
    (sorting is 1-Lipschitz, Weyl's inequality bounds the eigenvalues by c times it)."""
    c = W.shape[-1]
    B = torch.broadcast_shapes(W.shape[:-2], b.shape[:-1])
    W, b = W.expand(B + W.shape[-2:]), b.expand(B + (c,))
    G = gram(W)
    bt = torch.maximum(b, -firing_threshold(G))
    iu = torch.triu_indices(c, c, 1, device=G.device)
    spectra = [torch.linalg.eigvalsh(M) / c for M in (G, G + torch.diag_embed(bt), G.clamp(min=0))]
    parts = [bt, torch.diagonal(G, dim1=-2, dim2=-1), G[..., iu[0], iu[1]], G.sum(-1) / c,
             G.clamp(min=0).sum(-1) / c]
    return torch.cat([p.sort(-1).values for p in parts] + spectra, -1)


def signature_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Max-norm distance of signatures: a (..., m), b (..., m) -> (...) (broadcasting)."""
    return (a - b).abs().amax(-1)


def canonical_pair(W: torch.Tensor, b: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(G, bt) of one point as float64 numpy: W (r, c), b (c,) -> (c, c), (c,)."""
    W, b = W.detach().double().cpu(), b.detach().double().cpu()
    return gram(W).numpy(), effective_bias(W, b).numpy()


# ---- exact matching and automorphisms -------------------------------------------------------------


def _matches(G1: np.ndarray, v1: np.ndarray, G2: np.ndarray, v2: np.ndarray, tol: float):
    """Every permutation p with |G1[i, j] - G2[p_i, p_j]| <= tol and |v1[i] - v2[p_i]| <= tol
    (v: vertex labels (c,) or (c, q)), by depth-first search, most constrained column first."""
    c = G1.shape[0]
    v1, v2 = v1.reshape(c, -1), v2.reshape(c, -1)
    rows1, rows2 = np.sort(G1, 1), np.sort(G2, 1)
    ok = ((np.abs(v1[:, None] - v2[None]) <= tol).all(-1)
          & (np.abs(rows1[:, None] - rows2[None]) <= tol).all(-1)
          & (np.abs(np.diag(G1)[:, None] - np.diag(G2)[None]) <= tol))
    order = np.argsort(ok.sum(1), kind="stable")
    perm, used = np.full(c, -1), np.zeros(c, bool)

    def extend(depth):
        if depth == c:
            yield perm.copy()
            return
        i, placed = order[depth], order[:depth]
        for j in np.flatnonzero(ok[i] & ~used):
            if np.all(np.abs(G1[i, placed] - G2[j, perm[placed]]) <= tol):
                perm[i], used[j] = j, True
                yield from extend(depth + 1)
                perm[i], used[j] = -1, False

    return extend(0)


def match(G1, b1, G2, b2, tol: float = MATCH_TOL) -> np.ndarray | None:
    """A permutation p with (G1, b1) = (G2[p][:, p], b2[p]) within tol (max entry), else None.

    G (c, c), b (c,) numpy: the canonical pairs of two points (`canonical_pair`). Exact up to
    tol: the search visits every assignment the entries allow."""
    if G1.shape != G2.shape:
        return None
    return next(_matches(np.asarray(G1), np.asarray(b1), np.asarray(G2), np.asarray(b2), tol), None)


def twin_classes(G: np.ndarray, bt: np.ndarray, tol: float = MATCH_TOL) -> list[list[int]]:
    """Classes of columns i ~ j whose transposition maps (G, bt) to itself (equal bias, equal
    g_ii, equal entries towards every other column; e.g. all dead zero columns, an isolated
    antipodal pair). ~ is an equivalence: (ik) = (ij)(jk)(ij). Classes in column order."""
    c, classes = len(bt), []
    for i in range(c):
        for cls in classes:
            j = cls[0]
            rest = [k for k in range(c) if k not in (i, j)]
            if (abs(bt[i] - bt[j]) <= tol and abs(G[i, i] - G[j, j]) <= tol
                    and np.all(np.abs(G[i, rest] - G[j, rest]) <= tol)):
                cls.append(i)
                break
        else:
            classes.append([i])
    return classes


def symmetry(G: np.ndarray, bt: np.ndarray, tol: float = MATCH_TOL) -> tuple[int, list[list[int]]]:
    """(order of the group Aut of feature permutations fixing (G, bt), its orbits on the columns).

    The twins of a class permute freely (prod |class|!, a normal subgroup); the rest is the
    automorphisms of the quotient (one column per class, labelled by bias, class size and the
    entry within the class, all equal), enumerated by `_matches`."""
    classes = twin_classes(G, bt, tol)
    reps = [cls[0] for cls in classes]
    inner = [G[cls[0], cls[1]] if len(cls) > 1 else 0.0 for cls in classes]
    labels = np.stack([bt[reps], np.array([len(cls) for cls in classes], float), np.array(inner)], -1)
    Gq = G[np.ix_(reps, reps)]
    root = list(range(len(reps)))

    def find(i):
        while root[i] != i:
            i = root[i]
        return i

    quotient = 0
    for perm in _matches(Gq, labels, Gq, labels, tol):
        quotient += 1
        for i, j in enumerate(perm):
            root[find(i)] = find(int(j))
    orbits: dict[int, list[int]] = {}
    for q, cls in enumerate(classes):
        orbits.setdefault(find(q), []).extend(cls)
    order = quotient * math.prod(math.factorial(len(cls)) for cls in classes)
    return order, sorted(sorted(o) for o in orbits.values())


def orbit_multiplicity(G: np.ndarray, bt: np.ndarray, tol: float = MATCH_TOL) -> int:
    """Distinct copies of the critical set that the c! feature permutations produce modulo O(r):
    c! / |Aut(G, bt)| (equals tms.theory.zoo.orbit_multiplicity on zoo points)."""
    return math.factorial(len(bt)) // symmetry(G, bt, tol)[0]


# ---- regular frames -----------------------------------------------------------------------------


def polygon(k: int, r: int) -> torch.Tensor:
    """Regular k-gon of unit vectors in the plane of the first two axes: (r, k) float64."""
    ang = 2 * math.pi * torch.arange(k, dtype=torch.float64) / k
    U = torch.zeros(r, k, dtype=torch.float64)
    U[0], U[1] = torch.cos(ang), torch.sin(ang)
    return U


def simplex(k: int, r: int) -> torch.Tensor:
    """Regular simplex of k <= r + 1 unit vectors (pairwise cosine -1/(k-1)): (r, k)."""
    E = torch.eye(k, dtype=torch.float64) - 1.0 / k  # centred basis vectors of R^k, rank k - 1
    Q = torch.linalg.svd(E).U[:, : k - 1]  # orthonormal basis of their span
    U = torch.zeros(r, k, dtype=torch.float64)
    U[: k - 1] = Q.T @ E
    return U / U.norm(dim=0)


def cross(j: int, r: int) -> torch.Tensor:
    """j antipodal pairs on orthogonal axes (+e_1, -e_1, +e_2, ...): (r, 2j), j <= r."""
    U = torch.zeros(r, 2 * j, dtype=torch.float64)
    for a in range(j):
        U[a, 2 * a], U[a, 2 * a + 1] = 1.0, -1.0
    return U


def antiprism(m: int, h: float, r: int) -> torch.Tensor:
    """Two regular m-gons at heights +h, -h (unit vectors), the lower one turned by pi/m: (r, 2m), r >= 3."""
    ang = 2 * math.pi * torch.arange(2 * m, dtype=torch.float64) / (2 * m)  # alternate rings
    U = torch.zeros(r, 2 * m, dtype=torch.float64)
    rho = math.sqrt(max(1.0 - h * h, 0.0))
    U[0], U[1] = rho * torch.cos(ang), rho * torch.sin(ang)
    U[2] = h * (1 - 2 * (torch.arange(2 * m) % 2)).to(torch.float64)
    return U


def bipyramid(m: int, r: int) -> torch.Tensor:
    """Regular m-gon in the plane of the first two axes plus the poles +e_3, -e_3: (r, m + 2), r >= 3."""
    U = torch.zeros(r, m + 2, dtype=torch.float64)
    U[:, :m] = polygon(m, r)
    U[2, m], U[2, m + 1] = 1.0, -1.0
    return U


def frames(r: int, kmax: int) -> list[tuple[str, torch.Tensor]]:
    """(name, unit vectors (r, k)) of the regular frames with 2 <= k <= kmax in R^r: polygons
    ('k'), the simplex, antipodal pairs ('cross2j'), antiprisms and bipyramids (r >= 3)."""
    out = [(str(k), polygon(k, r)) for k in range(2, kmax + 1)]
    if 4 <= r + 1 <= kmax:
        out.append((f"simplex{r + 1}", simplex(r + 1, r)))
    out += [(f"cross{2 * j}", cross(j, r)) for j in range(3, r + 1) if 2 * j <= kmax]
    if r >= 3:
        for m in range(2, kmax // 2 + 1):
            out += [(f"antiprism{2 * m}", antiprism(m, h, r)) for h in (0.35, 0.6)]
        out += [(f"bipyramid{m + 2}", bipyramid(m, r)) for m in range(3, kmax - 1)]
    return out


# ---- labels -------------------------------------------------------------------------------------


def _same_cosines(C: np.ndarray, U: torch.Tensor, tol: float) -> np.ndarray | None:
    Cr = (U.T @ U).numpy()
    z = np.zeros(len(C))
    return match(C, z, Cr, z, tol) if Cr.shape == C.shape else None


def _antiprism_name(C: np.ndarray, tol: float) -> str | None:
    """'antiprism2m' if C is the cosine matrix of an antiprism: its frame operator has
    eigenvalues m(1 - h^2) (twice, the rings' plane) and 2m h^2 (the axis), so each of the three
    nonzero eigenvalues of C proposes an h."""
    k = len(C)
    if k % 2 or k < 4:
        return None
    for e in np.linalg.eigvalsh(C)[-3:]:
        h2 = e / k
        if 0 < h2 < 1 and _same_cosines(C, antiprism(k // 2, math.sqrt(h2), 3), tol) is not None:
            return f"antiprism{k}"
    return None


def frame_name(W: torch.Tensor, tol: float = 1e-5) -> str | None:
    """Name of the regular frame the columns of W (r, k) (all nonzero) form, else None:
    'k' (regular k-gon in a plane, equal lengths: the zoo's name), 'simplexK', 'crossK',
    'antiprismK' (equal lengths) or 'bipyramidK' (equal ring lengths, equal pole lengths)."""
    k = W.shape[-1]
    norms = W.norm(dim=0)
    U = W / norms
    C = (U.T @ U).numpy()
    equal = float(norms.max() - norms.min()) <= tol * float(norms.max())
    if equal:
        cands = [(str(k), polygon(k, 2)), (f"simplex{k}", simplex(k, k - 1) if k >= 4 else None),
                 (f"cross{k}", cross(k // 2, k // 2) if k % 2 == 0 and k >= 6 else None)]
        for name, ref in cands:
            if ref is not None and _same_cosines(C, ref, tol) is not None:
                return name
        name = _antiprism_name(C, tol) if W.shape[0] >= 3 else None
        if name:
            return name
    if k >= 5:
        p = _same_cosines(C, bipyramid(k - 2, 3), tol)
        if p is not None:
            ring, poles = norms[np.argsort(p)[: k - 2]], norms[np.argsort(p)[k - 2:]]
            if all(float(x.max() - x.min()) <= tol * float(x.max()) for x in (ring, poles)):
                return f"bipyramid{k}"
    return None


def gram_name(W: torch.Tensor, orbits: list[int], tol: float = 1e-5) -> str:
    """'k[rR:...]': k columns spanning R dimensions and the sizes of their orbits under the
    point's symmetry group (`symmetry`), largest first, 'NxS' for N orbits of size S: the Gram
    signature of an unrecognised geometry, e.g. '7[r3:2x3+1]' (an axis and two triangles)."""
    rank = int(torch.linalg.matrix_rank(W, atol=tol)) if W.shape[-1] else 0
    sizes = sorted(set(orbits), reverse=True)
    parts = [f"{orbits.count(n)}x{n}" if orbits.count(n) > 1 else str(n) for n in sizes]
    return f"{W.shape[-1]}[r{rank}:" + "+".join(parts) + "]"


def geometry_label(W: torch.Tensor, b: torch.Tensor) -> str:
    """Label of one canonical point W (r, c), b (c,), in the zoo's grammar: the geometry of the
    nonzero columns (`frame_name`, else `gram_name`; '0' when there are none), then '+' per
    zero column with positive bias, then ',' and '-' per nonzero column whose output never
    fires (switched-off). Dead zero columns are implicit (c minus the rest). Every point gets
    a label; two different points can share one (tms.theory.census_points numbers them)."""
    W, b = W.detach().double().cpu(), b.detach().double().cpu()
    nonzero = W.norm(dim=0) > ZERO_TOL
    k = int(nonzero.sum())
    dead = b <= -firing_threshold(gram(W))
    s, p = int((~nonzero & (b > 0)).sum()), int((nonzero & dead).sum())
    Wk = W[:, nonzero]
    if k == 0:
        return "0" + "+" * s
    orbits = symmetry(*canonical_pair(W, b))[1]
    sizes = [sum(bool(nonzero[i]) for i in o) for o in orbits]
    base = frame_name(Wk) or gram_name(Wk, [n for n in sizes if n])
    return base + "+" * s + ("," + "-" * p if p else "")
