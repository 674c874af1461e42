"""Exact losses of the TMS under the high-sparsity distribution (SPEC 1).

The loss is the unhalved squared error, summed over the c outputs.

Closed form. On input mu*e_i output j is ReLU(mu*g_ij + b_j) with g = W^T W (symmetric).
It is active on an interval [lo, hi] of [0, 1] fixed by sign(g_ij) and t = -b_j/g_ij; there
the error ((delta_ij - g_ij) mu - b_j)^2 is a quadratic in mu, off it the error is
delta_ij mu^2. Integrating over mu ~ U[0, 1] and averaging over i ~ U{1..c}:

    L = (1/c) sum_ij [ a^2 m3 - 2 a b_j m2 + b_j^2 m1 + delta_ij (1/3 - m3) ],
    a = delta_ij - g_ij,  m_p = (hi^p - lo^p) / p.

At the threshold the active and inactive integrands agree (the output is 0 there), so the
boundary terms of the derivative cancel and autograd through lo/hi is exact: L is C^1.

Sorted empirical loss. The same decomposition over a data set: for class i and output j the
active inputs are those with mu on one side of t, so the sums of 1, mu, mu^2 over them are
two prefix sums of the sorted class-i magnitudes. One evaluation costs O(c^2 log n).

Fused loss and gradient (the samplers' hot path). Both losses are
L = (1/N) sum_ij [a^2 S2 - 2 a b_j S1 + b_j^2 S0 + delta_ij (tot2 - S2)] with S0, S1, S2
locally constant (sums over the active inputs, or m1, m2, m3 with N = c, tot2 = 1/3), so
dL/dg_ij = (2/N)(b_j S1 - a S2), dL/db_j = (2/N) sum_i (b_j S0 - a S1) and, g = W^T W,
dL/dW = W (D + D^T) with D = dL/dg. `empirical_loss_and_grad_sorted`,
`population_loss_and_grad` and `loss_and_grad_flat` return them without autograd, through
a compiled CPU kernel (tms.theory.loss_kernels, numba) where it can run and an eager torch path
elsewhere (`use_compiled`; TMS_NO_COMPILE=1 or tms.theory.loss.COMPILE = False switch it off).
"""
from __future__ import annotations

import os
from typing import Callable, NamedTuple

import torch
from einops import einsum, rearrange

from tms.core import checks
from tms.theory.model import forward


_KERNELS = None  # tms.theory.loss_kernels once imported, False when it cannot be (no numba)
# The switch for the fused functions' default path: TMS_NO_COMPILE=1 at import, or set
# tms.theory.loss.COMPILE = False at run time, sends them to the eager torch path.
COMPILE = os.environ.get("TMS_NO_COMPILE", "0") != "1"


def _kernels():
    """The compiled kernels module, or None where numba is missing or fails to load."""
    global _KERNELS
    if _KERNELS is None:
        try:
            from tms.theory import loss_kernels

            _KERNELS = loss_kernels
        except Exception:  # ImportError, or a broken numba/llvmlite install: eager path
            _KERNELS = False
    return _KERNELS or None


def row_energy(r: int, c: int, data: SortedData | None, scale):
    """(energy, scratch, bind[, lanes]) for a compiled sampler (tms.samplers.compiled.RowEnergy):
    the fused one-row energy scale L_n on `data` (tms.theory.loss_kernels.row_energy) with its
    group form (tms.theory.loss_lanes), or scale L of the population loss where data is None,
    and bind(B) -> (data-set index, scale, data arrays) for chains of batch B; None without numba."""
    kernels = _kernels()
    if kernels is None or not COMPILE:
        return None
    if data is None:
        energy, scratch = kernels.population_row_energy(r, c)
        return energy, scratch, lambda B: kernels.population_binding(scale, B)
    from tms.theory import loss_lanes

    energy, scratch = kernels.row_energy(r, c)
    return energy, scratch, lambda B: kernels.row_binding(data, scale, B), (*loss_lanes.lanes_energy(r, c),
                                                                            loss_lanes.LANES)


def use_compiled(compiled: bool | None, W: torch.Tensor) -> bool:
    """Whether the fused loss-and-gradient functions run the compiled CPU kernel (numba).

    compiled=None (default): yes for a CPU float32/float64 tensor W when numba loads and
    `COMPILE` is true (TMS_NO_COMPILE=1 in the environment at import makes it false);
    otherwise the eager torch path (any device). False: the eager path. True: the kernel,
    ValueError where it cannot serve W. Both paths give the same numbers to rounding.
    """
    if not isinstance(W, torch.Tensor):
        return False  # the eager path's checks say what is wrong
    ok = W.device.type == "cpu" and W.dtype in (torch.float32, torch.float64)
    if compiled is None:
        return ok and COMPILE and _kernels() is not None
    if compiled and not (ok and _kernels() is not None):
        raise ValueError(f"compiled=True needs numba and a CPU float32/float64 tensor, got "
                         f"{W.dtype} on {W.device}" + ("" if _kernels() else " (numba unavailable)"))
    return bool(compiled)


def gram(W: torch.Tensor) -> torch.Tensor:
    """g = W^T W: (..., r, c) -> (..., c, c)."""
    checks.tensor(W, "W", min_dim=2, finite=False)
    return einsum(W, W, "... r i, ... r j -> ... i j")


def _threshold(G: torch.Tensor, bj: torch.Tensor) -> torch.Tensor:
    """t_ij = -b_j / g_ij, with a harmless value where g_ij = 0 (never used there)."""
    safe = torch.where(G == 0, torch.ones_like(G), G)
    return -bj / safe


def _population_moments(G: torch.Tensor, bj: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """m_p = (hi^p - lo^p) / p, p = 1, 2, 3, of the active interval [lo, hi] of output j on
    class-i inputs (SPEC 1). G (..., i, j), bj (..., 1, j) -> three tensors (..., i, j)."""
    t = _threshold(G, bj).clamp(0.0, 1.0)
    zero, one = torch.zeros_like(t), torch.ones_like(t)
    pos, neg = G > 0, G < 0
    # g > 0: active for mu > t; g < 0: active for mu < t; g = 0: active iff b > 0.
    lo = torch.where(pos, t, zero)
    hi = torch.where(pos, one, torch.where(neg, t, torch.where(bj > 0, one, zero)))
    return hi - lo, (hi**2 - lo**2) / 2, (hi**3 - lo**3) / 3


def _quadratic_err(G: torch.Tensor, bj: torch.Tensor, S0, S1, S2, tot2) -> torch.Tensor:
    """sum_ij [a^2 S2 - 2 a b_j S1 + b_j^2 S0 + delta_ij (tot2 - S2)], a = delta - G (SPEC 1).

    S0, S1, S2: the active sums of 1, mu, mu^2 (or the moments m1, m2, m3); tot2 the sum of
    mu^2 over the whole class. (..., i, j) -> (...).
    """
    delta = torch.eye(G.shape[-1], dtype=G.dtype, device=G.device)
    a = delta - G
    err = a**2 * S2 - 2 * a * bj * S1 + bj**2 * S0 + delta * (tot2 - S2)
    return err.sum((-2, -1))


def _quadratic_grad(W: torch.Tensor, G: torch.Tensor, bj: torch.Tensor, S0, S1, S2, scale):
    """Gradient of scale * _quadratic_err with the S's held fixed (they are locally constant).

    dL/dG_ij = 2 scale (b_j S1 - a S2), dL/db_j = 2 scale sum_i (b_j S0 - a S1), and with
    G = W^T W, dL/dW = W (D + D^T), D = dL/dG. scale: number or (..., 1, 1).
    Returns gW (B..., r, c), gb (B..., c), B the broadcast batch shape.
    """
    delta = torch.eye(G.shape[-1], dtype=G.dtype, device=G.device)
    a = delta - G
    D = (2 * scale) * (bj * S1 - a * S2)
    gb = ((2 * scale) * (bj * S0 - a * S1)).sum(-2)
    return W @ (D + D.mT), gb


def population_loss(W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact E||x - f(x)||^2 under the high-sparsity distribution.

    W: (..., r, c), b: (..., c) -> (...). Differentiable (exact gradients), batched.
    """
    checks.params(W, b)
    G = gram(W)  # (..., i, j): input class i, output j
    bj = b.unsqueeze(-2)  # (..., 1, j)
    m1, m2, m3 = _population_moments(G, bj)
    return _quadratic_err(G, bj, m1, m2, m3, 1.0 / 3.0) / W.shape[-1]


def population_loss_and_grad(W: torch.Tensor, b: torch.Tensor, *, compiled: bool | None = None):
    """Population loss and its analytic gradient in one pass, no autograd (SPEC 1).

    W: (..., r, c), b: (..., c) -> (L (B...), dL/dW (B..., r, c), dL/db (B..., c)), B the
    broadcast batch shape: per-item gradients (equal to `batched_grad(population_loss, ...)`
    when W and b carry the full batch shape). L is C^1 (boundary terms cancel), so holding
    m1, m2, m3 fixed gives the exact gradient. compiled: see `use_compiled`.
    """
    if use_compiled(compiled, W):
        return _kernels().fused(W, b, None)
    checks.params(W, b)
    G = gram(W)
    bj = b.unsqueeze(-2)
    m1, m2, m3 = _population_moments(G, bj)
    c = W.shape[-1]
    gW, gb = _quadratic_grad(W, G, bj, m1, m2, m3, 1.0 / c)
    return _quadratic_err(G, bj, m1, m2, m3, 1.0 / 3.0) / c, gW, gb


def empirical_loss(W: torch.Tensor, b: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Direct (1/n) sum_k ||x_k - f(x_k)||^2 with target y = x.

    W: (..., r, c), b: (..., c), X: (..., n, c) or (n, c) -> (...). Works for any inputs.
    """
    checks.params(W, b)
    checks.tensor(X, "X", min_dim=2)
    checks.same_dtype(X, "X", W, "W")
    if X.shape[-2] < 1:
        raise ValueError(f"X must hold n >= 1 rows, got shape {tuple(X.shape)}")
    out = forward(W, b, X)
    return ((X - out) ** 2).sum(-1).mean(-1)


class SortedData(NamedTuple):
    """A high-sparsity data set sorted per input class, for the O(c^2 log n) exact loss.

    mu:   (..., c, m) class-i magnitudes ascending, padded with +inf (m = largest class)
    cum1: (..., c, m+1) prefix sums of mu over the sorted class (cum1[..., 0] = 0)
    cum2: (..., c, m+1) prefix sums of mu^2
    count: (..., c) class sizes;  n: (...,) data-set sizes (float)
    """

    mu: torch.Tensor
    cum1: torch.Tensor
    cum2: torch.Tensor
    count: torch.Tensor
    n: torch.Tensor

    @property
    def batch_shape(self) -> torch.Size:
        return self.mu.shape[:-2]


def sorted_data(X: torch.Tensor) -> SortedData:
    """Sort a high-sparsity data set X (..., n, c) (one nonzero per row, mu >= 0) by class."""
    checks.tensor(X, "X", min_dim=2)
    n, c = X.shape[-2:]
    if n < 1:
        raise ValueError(f"X must hold n >= 1 rows, got shape {tuple(X.shape)}")
    if bool((X < 0).any()) or bool(((X != 0).sum(-1) > 1).any()):
        raise ValueError("X must be high-sparsity data: each row mu*e_i with mu >= 0 (one nonzero)")
    mu = X.sum(-1)  # (..., n)
    cls = (X != 0).to(torch.int64).argmax(-1)  # all-zero rows go to class 0: any class is exact
    onehot = cls.unsqueeze(-2) == torch.arange(c, device=X.device).unsqueeze(-1)  # (..., c, n)
    inf = torch.full((), float("inf"), dtype=X.dtype, device=X.device)
    vals = torch.where(onehot, mu.unsqueeze(-2), inf).sort(-1).values
    count = onehot.sum(-1)
    return _prefix(vals[..., : int(count.max())], count, torch.full(X.shape[:-2], float(n), dtype=X.dtype))


def _prefix(vals: torch.Tensor, count: torch.Tensor, n: torch.Tensor) -> SortedData:
    finite = torch.isfinite(vals)
    v = torch.where(finite, vals, torch.zeros_like(vals))
    pad = torch.zeros(vals.shape[:-1] + (1,), dtype=vals.dtype, device=vals.device)
    cum1 = torch.cat([pad, v.cumsum(-1)], -1)
    cum2 = torch.cat([pad, (v * v).cumsum(-1)], -1)
    return SortedData(vals.contiguous(), cum1, cum2, count, n.to(vals.device))


def stack_sorted(datas: list[SortedData]) -> SortedData:
    """Stack data sets of possibly different sizes into one leading dim (e.g. an n-grid)."""
    if not datas:
        raise ValueError("stack_sorted needs at least one data set")
    m = max(d.mu.shape[-1] for d in datas)
    vals = torch.stack(
        [torch.nn.functional.pad(d.mu, (0, m - d.mu.shape[-1]), value=float("inf")) for d in datas]
    )
    return _prefix(vals, torch.stack([d.count for d in datas]), torch.stack([d.n for d in datas]))


def _class_sums(data: SortedData, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """For thresholds t (P..., i, j): number, sum mu, sum mu^2 of class-i inputs with mu < t.

    Returns three tensors of the broadcast batch shape (B..., i, j).
    """
    c = t.shape[-1]
    D = data.batch_shape
    if len(D) == 0:
        # One shared data set: flatten all parameter sets into the searched values.
        flat = rearrange(t, "... i j -> i (... j)").contiguous()
        idx = torch.searchsorted(data.mu, flat)
        s1, s2 = data.cum1.gather(-1, idx), data.cum2.gather(-1, idx)
        back = lambda z: rearrange(z, "i (p j) -> p i j", j=c).reshape(t.shape)  # noqa: E731
        return back(idx.to(t.dtype)), back(s1), back(s2)
    B = torch.broadcast_shapes(D, t.shape[:-2])
    m = data.mu.shape[-1]
    nb = len(B)
    Dp = (1,) * (nb - len(D)) + tuple(D)
    fold = [k for k in range(nb) if Dp[k] == 1 and B[k] != 1]
    if fold:
        # Parameter dims that the data broadcast over (e.g. chains) join the searched values,
        # so the sorted data are never copied per parameter set.
        keep = [k for k in range(nb) if k not in fold]
        ks, fs = [B[k] for k in keep], [B[k] for k in fold]
        perm = keep + [nb] + fold + [nb + 1]  # (keep..., i, fold..., j)
        tt = t.expand(B + (c, c)).permute(perm).reshape(ks + [c, -1]).contiguous()
        idx = torch.searchsorted(data.mu.reshape(ks + [c, m]), tt)
        s1 = data.cum1.reshape(ks + [c, m + 1]).gather(-1, idx)
        s2 = data.cum2.reshape(ks + [c, m + 1]).gather(-1, idx)
        inv = [perm.index(k) for k in range(nb + 2)]
        back = lambda z: z.reshape(ks + [c] + fs + [c]).permute(inv)  # noqa: E731
        return back(idx.to(t.dtype)), back(s1), back(s2)
    mu = data.mu.expand(B + (c, m)).contiguous()
    tt = t.expand(B + (c, c)).contiguous()
    idx = torch.searchsorted(mu, tt)
    s1 = data.cum1.expand(B + (c, m + 1)).gather(-1, idx)
    s2 = data.cum2.expand(B + (c, m + 1)).gather(-1, idx)
    return idx.to(t.dtype), s1, s2


def _check_sorted_data(data, c: int) -> None:
    if not isinstance(data, SortedData):
        raise ValueError(f"data must be a SortedData (see sorted_data), got {type(data).__name__}")
    if data.mu.shape[-2] != c:
        raise ValueError(f"data has c = {data.mu.shape[-2]} classes but W has c = {c}")


def _check_sorted(W: torch.Tensor, b: torch.Tensor, data) -> None:
    checks.params(W, b)
    _check_sorted_data(data, W.shape[-1])


def _active_sums(G: torch.Tensor, bj: torch.Tensor, data: SortedData) -> tuple[torch.Tensor, ...]:
    """Sums of 1, mu, mu^2 over the class-i inputs on which output j is active (SPEC 1).

    G (P..., i, j), bj (P..., 1, j) -> S0, S1, S2 (B..., i, j), and tot2 (D..., i, 1).
    """
    t = _threshold(G, bj)
    below0, below1, below2 = _class_sums(data, t)  # inputs with mu < t
    tot0 = data.count.to(G.dtype).unsqueeze(-1)  # (D..., i, 1)
    tot1, tot2 = data.cum1[..., -1:], data.cum2[..., -1:]
    pos, neg = G > 0, G < 0
    on = (bj > 0).to(G.dtype)

    def active(total, below):
        # g > 0: mu >= t active; g < 0: mu < t active; g = 0: all iff b > 0.
        return torch.where(pos, total - below, torch.where(neg, below, total * on))

    return active(tot0, below0), active(tot1, below1), active(tot2, below2), tot2


def empirical_loss_sorted(W: torch.Tensor, b: torch.Tensor, data: SortedData) -> torch.Tensor:
    """Exact L_n from sorted data in O(c^2 log n); equals `empirical_loss` on the same set.

    W: (..., r, c), b: (..., c); data batch dims broadcast with the parameter batch dims.
    Gradients are exact almost everywhere (the active sums are locally constant).
    """
    _check_sorted(W, b, data)
    G = gram(W)
    bj = b.unsqueeze(-2)
    S0, S1, S2, tot2 = _active_sums(G, bj, data)
    return _quadratic_err(G, bj, S0, S1, S2, tot2) / data.n


def empirical_loss_and_grad_sorted(W: torch.Tensor, b: torch.Tensor, data: SortedData, *,
                                   compiled: bool | None = None):
    """Exact L_n and its analytic gradient in one O(c^2 log n) pass, no autograd (SPEC 1).

    W: (..., r, c), b: (..., c); data batch dims D broadcast with the parameter batch dims
    (data shared by chains are never copied per chain). Returns L (B...), dL/dW (B..., r, c),
    dL/db (B..., c), B the broadcast batch shape: per-item gradients, equal to autograd of
    `empirical_loss_sorted` (S0, S1, S2 are locally constant; at a threshold exactly on a
    data point with g > 0 that point counts as active). compiled: see `use_compiled`.
    """
    if use_compiled(compiled, W):
        return _kernels().fused(W, b, data)
    _check_sorted(W, b, data)
    G = gram(W)
    bj = b.unsqueeze(-2)
    S0, S1, S2, tot2 = _active_sums(G, bj, data)
    inv_n = (1.0 / data.n)[..., None, None]
    gW, gb = _quadratic_grad(W, G, bj, S0, S1, S2, inv_n)
    return _quadratic_err(G, bj, S0, S1, S2, tot2) / data.n, gW, gb


def loss_and_grad_flat(theta: torch.Tensor, r: int, c: int, data: SortedData | None = None, *,
                       scale=1.0, prior: float = 0.0, compiled: bool | None = None):
    """Fused exact energy and gradient in the flat layout of `flatten_params` (SPEC 1, 3).

    theta (..., r*c + c) -> (U (B...), dU/dtheta (B..., d)) with U = scale * L +
    prior * |theta|^2 / 2, L the sorted empirical loss on data (batch dims broadcasting with
    theta's) or, with data=None, the population loss. scale: a number or a tensor
    broadcasting to B (e.g. beta * data.n per data set: the posterior energy with prior=1).
    The samplers' hot path: on the compiled path one kernel call, no unflatten/flatten.
    """
    if use_compiled(compiled, theta):
        return _kernels().fused_flat(theta, r, c, data, scale, prior)
    W, b = unflatten_params(theta, r, c)
    if data is None:
        L, gW, gb = population_loss_and_grad(W, b, compiled=False)
    else:
        L, gW, gb = empirical_loss_and_grad_sorted(W, b, data, compiled=False)
    g = flatten_params(gW, gb)
    if not (isinstance(scale, (int, float)) and scale == 1 and prior == 0):
        scale = torch.as_tensor(scale, dtype=L.dtype, device=L.device)
        L, g = scale * L + 0.5 * prior * (theta**2).sum(-1), scale.unsqueeze(-1) * g + prior * theta
    return L, g


# ---- gradients and Hessians over batched parameters -------------------------------------

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def flatten_params(W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(W (..., r, c), b (..., c)) -> theta (..., r*c + c), W row-major then b."""
    checks.params(W, b, finite=False)
    B = torch.broadcast_shapes(W.shape[:-2], b.shape[:-1])
    Wf = rearrange(W, "... r c -> ... (r c)").expand(B + (-1,))
    return torch.cat([Wf, b.expand(B + (-1,))], -1)


def unflatten_params(theta: torch.Tensor, r: int, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """theta (..., r*c + c) -> (W (..., r, c), b (..., c))."""
    checks.tensor(theta, "theta", min_dim=1, finite=False)
    if theta.shape[-1] != r * c + c:
        raise ValueError(f"theta must have last dim r*c + c = {r * c + c}, got {theta.shape[-1]}")
    W = rearrange(theta[..., : r * c], "... (r c) -> ... r c", r=r)
    return W, theta[..., r * c :]


def batched_grad(loss_fn: LossFn, W: torch.Tensor, b: torch.Tensor):
    """Loss and its gradient for every parameter set at once.

    loss_fn maps batched (W, b) to per-item losses (...). Returns (L, dL/dW, dL/db).
    """
    checks.params(W, b, finite=False)
    W = W.detach().requires_grad_(True)
    b = b.detach().requires_grad_(True)
    with torch.enable_grad():
        L = loss_fn(W, b)
        gW, gb = torch.autograd.grad(L.sum(), (W, b))
    return L.detach(), gW, gb


def batched_hessian(loss_fn: LossFn, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hessian of loss_fn in theta = flatten_params(W, b): (..., d, d), d = r*c + c.

    Exact where the loss is C^2 (autograd twice through the closed form); the items are
    independent, so one vector-Jacobian product per coordinate serves the whole batch.
    """
    r, c = W.shape[-2:]
    theta = flatten_params(W, b).detach().clone().requires_grad_(True)
    d = theta.shape[-1]
    with torch.enable_grad():
        L = loss_fn(*unflatten_params(theta, r, c))
        (g,) = torch.autograd.grad(L.sum(), theta, create_graph=True)
        eye = torch.eye(d, dtype=theta.dtype, device=theta.device)
        basis = eye.reshape((d,) + (1,) * (g.dim() - 1) + (d,)).expand((d,) + g.shape)
        (H,) = torch.autograd.grad(g, theta, grad_outputs=basis, is_grads_batched=True)
    return rearrange(H, "k ... d -> ... k d")


def is_smooth(W: torch.Tensor, b: torch.Tensor, eps: float = 1e-9) -> torch.Tensor | bool:
    """Is L C^2 at (W, b)? Batched: W (..., r, c), b (..., c) -> bool tensor (...) (bool if unbatched).

    Each (input i, output j) term of the closed form is a smooth function of (g_ij, b_j)
    except (i) at g_ij = 0 = b_j, where the output switches between never and always
    active (only C^1), and (ii) on the diagonal at b_j = -g_jj < 0, where the own-output
    threshold crosses mu = 1 and the active error does not vanish to second order (C^1).
    Threshold crossings of 0, and of 1 off the diagonal, are C^2 (the term changes by
    O(dist^3)); tests/theory/test_zoo.py checks this rule against finite differences.
    """
    checks.params(W, b)
    G = gram(W)
    bj = b.unsqueeze(-2).expand(G.shape)
    corner = (G.abs() <= eps) & (bj.abs() <= eps)
    diag_G = torch.diagonal(G, dim1=-2, dim2=-1)
    edge = (diag_G > eps) & ((b + diag_G).abs() <= eps)
    out = ~(corner.flatten(-2).any(-1) | edge.any(-1))
    return bool(out) if out.dim() == 0 else out
