"""The exact Hessian of the population loss in closed form (SPEC 1), batched, no autograd.

L = (1/c) sum_ij F(g_ij, b_j) with F the (input i, output j) term of the closed form
(tms.theory.loss): F = int_lo^hi (a mu - b_j)^2 dmu + delta_ij (1/3 - m3), a = delta_ij - g_ij.
Its first derivatives hold the moments fixed (the boundary terms cancel):
F_g = 2 (b_j m2 - a m3), F_b = 2 (b_j m1 - a m2). Differentiating again, the moments give
F_gg = 2 m3, F_gb = 2 m2, F_bb = 2 m1, and a moving end of [lo, hi] adds a boundary term only
where the integrand's derivative does not vanish there: on the diagonal (delta = 1) with the
own-output threshold t = -b_j/g_jj in [0, 1] (the lower end, g_jj > 0), where
(F_gg, F_gb, F_bb) -= (2 t / g_jj) (t^2, t, 1). Through g = W^T W (dg_ij = dw_i.w_j + w_i.dw_j,
d^2 g_ij = 2 dw_i.dw_j), with S = F_gg + F_gg^T and D = F_g / c:

    d^2L/dw_k dw_l = (1/c) [delta_kl sum_j S_kj w_j w_j^T + S_kl w_l w_k^T] + (D_kl + D_lk) I_r
    d^2L/dw_k db_j = (1/c) [F_gb[k, j] w_j + delta_jk sum_i F_gb[i, k] w_i]
    d^2L/db_j db_j' = delta_jj' (1/c) sum_i F_bb[i, j]

Equal to tms.theory.loss.batched_hessian(population_loss, W, b) to rounding wherever L is C^2
(tests/theory/test_hessian.py); where it is only C^1 (tms.theory.loss.is_smooth: t = 1 on the
diagonal, g_ij = 0 = b_j) it gives the same one-sided value as autograd through the closed form.
"""
from __future__ import annotations

import torch
from einops import einsum, rearrange

from tms.core import checks
from tms.theory.loss import _population_moments, gram


def population_hessian(W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hessian of the population loss in theta = flatten_params(W, b) (module docstring).

    W: (..., r, c), b: (..., c) with the same batch shape -> H (..., d, d), d = r*c + c.
    """
    checks.params(W, b)
    if W.shape[:-2] != b.shape[:-1]:
        raise ValueError(f"W and b must share their batch shape, got {tuple(W.shape)} and {tuple(b.shape)}")
    Fg, Fgg, Fgb, Fbb = _second_derivatives(W, b)
    c = W.shape[-1]
    S = Fgg + Fgg.mT
    own = einsum(S, W, W, "... k j, ... p j, ... q j -> ... p q k")
    H_WW = einsum(S, W, W, "... k l, ... p l, ... q k -> ... p k q l")
    H_WW = H_WW + _on_diagonal(own)
    eye_r = torch.eye(W.shape[-2], dtype=W.dtype, device=W.device)
    Dsym = (Fg + Fg.mT) / c
    H_WW = H_WW / c + einsum(eye_r, Dsym, "p q, ... k l -> ... p k q l")
    eye_c = torch.eye(c, dtype=W.dtype, device=W.device)
    H_Wb = (einsum(Fgb, W, "... k j, ... p j -> ... p k j")
            + einsum(eye_c, Fgb, W, "j k, ... i k, ... p i -> ... p k j")) / c
    H_bb = torch.diag_embed(Fbb.sum(-2)) / c
    top = torch.cat([rearrange(H_WW, "... p k q l -> ... (p k) (q l)"),
                     rearrange(H_Wb, "... p k j -> ... (p k) j")], -1)
    bottom = torch.cat([rearrange(H_Wb, "... p k j -> ... j (p k)"), H_bb], -1)
    return torch.cat([top, bottom], -2)


def _on_diagonal(own: torch.Tensor) -> torch.Tensor:
    """own (..., p, q, k) -> (..., p, k, q, l) holding own[p, q, k] where l = k, else 0."""
    c = own.shape[-1]
    eye_c = torch.eye(c, dtype=own.dtype, device=own.device)
    return einsum(own, eye_c, "... p q k, k l -> ... p k q l")


def _second_derivatives(W: torch.Tensor, b: torch.Tensor):
    """F_g, F_gg, F_gb, F_bb of every (input i, output j) term (module docstring): four (..., i, j)."""
    G = gram(W)
    bj = b.unsqueeze(-2)
    m1, m2, m3 = _population_moments(G, bj)
    eye = torch.eye(G.shape[-1], dtype=G.dtype, device=G.device)
    a = eye - G
    Fg = 2 * (bj * m2 - a * m3)
    g_own = torch.diagonal(G, dim1=-2, dim2=-1)
    safe = torch.where(g_own > 0, g_own, torch.ones_like(g_own))
    t = -b / safe
    inside = (g_own > 0) & (t >= 0) & (t <= 1)  # ends included, as autograd through clamp takes them
    k = torch.where(inside, 2 * t / safe, torch.zeros_like(t))
    # the moving lower end mu = t of the own output's active interval (module docstring)
    Fgg = 2 * m3 - torch.diag_embed(k * t * t)
    Fgb = 2 * m2 - torch.diag_embed(k * t)
    Fbb = 2 * m1 - torch.diag_embed(k)
    return Fg, Fgg, Fgb, Fbb
