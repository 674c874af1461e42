"""The torch SGD step of tms.dynamics.train (SPEC 4), batched over runs: the reference the
compiled block (tms.dynamics.train_kernel) is checked against.

Minibatch gradient (loss = batch mean of ||x - f(x)||^2, f = ReLU(g x + b), g = W^T W): with
pre = X g + b (rows x_k; g symmetric), out = ReLU(pre), delta = 2/B (out - x) [pre > 0]:
    dL/db = sum_k delta_k,   dL/dg = X^T delta =: A,   dL/dW = W (A + A^T).
"""
from __future__ import annotations

import torch


def minibatch_loss_grad(W: torch.Tensor, b: torch.Tensor, Xb: torch.Tensor):
    """Loss and analytic gradient of the minibatch mean of ||x - f(x)||^2.

    W: (R, r, c), b: (R, c), Xb: (R, B, c). Returns (L (R,), dL/dW (R, r, c), dL/db (R, c)).
    """
    Bsz = Xb.shape[-2]
    g = torch.bmm(W.transpose(1, 2), W)
    pre = torch.baddbmm(b.unsqueeze(1), Xb, g)
    out = torch.relu(pre)
    err = out - Xb
    L = (err**2).sum((-2, -1)) / Bsz
    d = torch.ops.aten.threshold_backward(err, out, 0.0) * (2.0 / Bsz)  # err where out > 0
    A = torch.bmm(Xb.transpose(1, 2), d)
    return L, torch.bmm(W, A + A.transpose(1, 2)), d.sum(1)


def sgd_step_(W, b, Xb, scale: float) -> None:
    """In place: W, b -= lr * grad, with scale = -lr * 2 / B folded into one multiply."""
    g = torch.bmm(W.transpose(1, 2), W)
    pre = torch.baddbmm(b.unsqueeze(1), Xb, g)
    out = torch.relu(pre)
    err = out - Xb
    d = torch.ops.aten.threshold_backward(err, out, 0.0)
    A = torch.bmm(Xb.transpose(1, 2), d)
    gW = torch.bmm(W, A + A.transpose(1, 2))  # not W.baddbmm_(W, ...): W would alias its input
    W.add_(gW, alpha=scale)
    b.add_(d.sum(1), alpha=scale)
