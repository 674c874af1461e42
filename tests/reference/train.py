"""Reference SGD: one torch module and torch.optim.SGD per run, a Python loop over runs and
steps (the oracle of tms.dynamics.train.train_sgd's vectorised loop)."""
from __future__ import annotations

from typing import Sequence

import torch

from tms.dynamics.train import BLOCK_EPOCHS, _block_order, init_4gon, init_random, training_data
from tms.theory.model import forward


class _TMS(torch.nn.Module):
    def __init__(self, W: torch.Tensor, b: torch.Tensor):
        super().__init__()
        self.W = torch.nn.Parameter(W.clone())
        self.b = torch.nn.Parameter(b.clone())

    def forward(self, x):
        return forward(self.W, self.b, x)


def train_sgd_reference(
    runs: int | Sequence[int] = 1, *, seed: int = 0, n: int = 1000, batch_size: int = 20,
    lr: float = 0.005, epochs: int = 1, init: str = "4gon", radius: float = 0.9, noise: float = 0.01,
    sigma: float = 1.0, r: int = 2, c: int = 6, shared_data: bool = False,
    steps: Sequence[int] | None = None, dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: one torch module and torch.optim.SGD per run, autograd, a Python loop over
    runs and steps, the same seeds and data order as `train_sgd`. Returns the parameters
    after each of `steps` updates (default: only the last step), W (T, R, r, c), b (T, R, c).
    Slow; for tests and benchmarks."""
    run_ids = list(range(runs)) if isinstance(runs, int) else [int(i) for i in runs]
    spe = n // batch_size
    steps = [epochs * spe] if steps is None else [int(s) for s in steps]
    total = max(steps)
    if total > epochs * spe:
        raise ValueError(f"steps must be <= epochs * (n // batch_size) = {epochs * spe}")
    X = training_data(run_ids, seed, n=n, c=c, shared=shared_data, dtype=dtype)
    if init == "4gon":
        W0, b0 = init_4gon(run_ids, seed, r=r, c=c, radius=radius, noise=noise, dtype=dtype)
    else:
        W0, b0 = init_random(run_ids, seed, r=r, c=c, sigma=sigma, dtype=dtype)
    outW, outb = [], []
    for j, i in enumerate(run_ids):
        model = _TMS(W0[j], b0[j])
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.0)
        Xi = X if shared_data else X[j]
        done, blk = 0, 0
        trajW, trajb = [], []

        def keep():
            for _ in range(steps.count(done)):
                trajW.append(model.W.detach().clone())
                trajb.append(model.b.detach().clone())

        keep()
        while done < total:
            order = _block_order([i], seed, blk, min(BLOCK_EPOCHS, epochs - blk * BLOCK_EPOCHS), n, batch_size)
            for t in range(order.shape[0]):
                if done == total:
                    break
                xb = Xi[order[t, 0]]
                opt.zero_grad()
                loss = ((xb - model(xb)) ** 2).sum(-1).mean()
                loss.backward()
                opt.step()
                done += 1
                keep()
            blk += 1
        outW.append(torch.stack(trajW))
        outb.append(torch.stack(trajb))
    return torch.stack(outW, 1), torch.stack(outb, 1)
