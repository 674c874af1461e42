"""The dynamical experiment (SPEC 4): plain SGD on the TMS, vectorised over many runs.

Runs are a leading dim: W (R, r, c), b (R, c). The only Python loop on the hot path is the
loop over SGD steps; each step is a dozen batched kernels with an analytic gradient.

Minibatch gradient (SPEC 4, loss = batch mean of ||x - f(x)||^2, f = ReLU(g x + b), g = W^T W):
with pre = X g + b (rows x_k; g symmetric), out = ReLU(pre), delta = 2/B (out - x) [pre > 0]:
    dL/db = sum_k delta_k,   dL/dg = X^T delta =: A,   dL/dW = W (A + A^T).

Randomness is per run and independent of the batch layout: run i of seed s draws its start
from its own stream (s, INIT, i), its training set (when not shared) from (s, DATA, i), and
the data order of epoch block k from (s, ORDER, i, k). Running run 3 alone or inside a batch
of 32 gives the same numbers, and a run can resume at any block boundary.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from tms.core import checks, io
from tms.theory.data import sample_inputs
from tms.theory.loss import empirical_loss_sorted, population_loss, sorted_data

# Stream identifiers for per-run seeds (see module docstring).
INIT, DATA, ORDER = 0, 1, 2
SHARED = 2**31 - 1  # run index used for the one shared training set
BLOCK_EPOCHS = 50  # epochs whose data order one generator draws (part of the protocol)

PAPER = dict(n=1000, batch_size=20, lr=0.005, epochs=4500, radius=0.9, noise=0.01)
# runs and epochs per scale (`tms train --scale`, tms.experiments.reproduce); "full" is the paper's protocol (SPEC 4)
SCALES = dict(quick=dict(runs=16, epochs=1500), full=dict(runs=32, epochs=4500))


class TrainResult(NamedTuple):
    """Checkpoints of R runs at T steps.

    steps: (T,) int64 step counts (0 = initialisation)
    W: (T, R, r, c), b: (T, R, c) parameters after `steps` updates
    train_loss: (T, R) exact L_n on the run's training set
    pop_loss: (T, R) exact population loss L
    X: (n, c) shared training set, or (R, n, c) one per run
    record: every setting and seed (JSON-able)
    """

    steps: torch.Tensor
    W: torch.Tensor
    b: torch.Tensor
    train_loss: torch.Tensor
    pop_loss: torch.Tensor
    X: torch.Tensor
    record: dict


# ---- seeds, starts, data, schedule -------------------------------------------------------


def stream_seed(seed: int, stream: int, run: int, block: int = 0) -> int:
    """A 63-bit torch seed for (seed, stream, run, block), independent of any batch layout."""
    ss = np.random.SeedSequence([int(seed), int(stream), int(run), int(block)])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def _gen(seed: int, stream: int, run: int, block: int = 0) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(stream_seed(seed, stream, run, block))
    return g


def _runs(runs) -> list[int]:
    if isinstance(runs, int) and not isinstance(runs, bool):
        checks.positive_int(runs, "runs")
        return list(range(runs))
    out = [int(i) for i in runs]
    if not out or min(out) < 0 or len(set(out)) != len(out):
        raise ValueError(f"runs must be a count >= 1 or distinct run indices >= 0, got {runs!r}")
    return out


def init_4gon(
    runs: Sequence[int], seed: int, *, r: int = 2, c: int = 6, radius: float = 0.9,
    noise: float = 0.01, dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SPEC 4 start near a 4-gon: columns 0..3 at radius `radius`, angles theta + j pi/2 with a
    random global rotation theta, other columns 0, N(0, noise^2) on every entry of W, b = 0.

    Returns W (R, r, c), b (R, c). Needs r >= 2 and c >= 4.
    """
    if r < 2 or c < 4:
        raise ValueError(f"the 4-gon start needs r >= 2 and c >= 4, got r = {r}, c = {c}")
    checks.positive_float(radius, "radius")
    checks.positive_float(noise, "noise", allow_zero=True)
    Ws = []
    for i in runs:  # one draw per run from the run's own stream (not a hot path)
        g = _gen(seed, INIT, i)
        theta = 2 * math.pi * torch.rand((), generator=g, dtype=dtype)
        W = torch.zeros(r, c, dtype=dtype)
        ang = theta + torch.arange(4, dtype=dtype) * (math.pi / 2)
        W[0, :4], W[1, :4] = radius * ang.cos(), radius * ang.sin()
        Ws.append(W + noise * torch.randn(r, c, generator=g, dtype=dtype))
    W = torch.stack(Ws)
    return W, torch.zeros(W.shape[0], c, dtype=dtype)


def init_random(
    runs: Sequence[int], seed: int, *, r: int = 2, c: int = 6, sigma: float = 1.0,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SPEC 4 random start: W ~ N(0, sigma^2) entrywise, b = 0. Returns W (R, r, c), b (R, c)."""
    checks.positive_float(sigma, "sigma", allow_zero=True)
    W = torch.stack([sigma * torch.randn(r, c, generator=_gen(seed, INIT, i), dtype=dtype) for i in runs])
    return W, torch.zeros(W.shape[0], c, dtype=dtype)


def training_data(
    runs: Sequence[int], seed: int, *, n: int, c: int, shared: bool = True,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """The fixed training set(s): (n, c) shared by every run, or (R, n, c) one per run."""
    if shared:
        return sample_inputs(n, c, _gen(seed, DATA, SHARED), dtype=dtype)
    return torch.stack([sample_inputs(n, c, _gen(seed, DATA, i), dtype=dtype) for i in runs])


def checkpoint_steps(total: int, n_log: int = 100, n_linear: int = 100) -> torch.Tensor:
    """Checkpoint schedule: step 0, n_log log-spaced and n_linear evenly spaced steps up to
    `total` (included), merged. Returns sorted unique int64 steps (T,)."""
    checks.positive_int(total, "total")
    log = np.round(np.logspace(0, np.log10(total), max(n_log, 0))) if n_log > 0 else np.array([])
    lin = np.round(np.linspace(0, total, max(n_linear, 0) + 1)) if n_linear > 0 else np.array([])
    s = np.unique(np.concatenate([[0, total], log, lin]).astype(np.int64))
    return torch.from_numpy(s[(s >= 0) & (s <= total)])


def _block_order(runs, seed: int, block: int, n_epochs: int, n: int, batch_size: int) -> torch.Tensor:
    """Minibatch indices of `n_epochs` epochs for every run: (n_epochs * (n // B), R, B).

    Each epoch is a fresh permutation of the n points from the run's (seed, ORDER, run, block)
    stream; the last n mod B points of a permutation are dropped."""
    spe = n // batch_size
    out = []
    for i in runs:  # per run and epoch, not per step: ~1% of the training time
        g = _gen(seed, ORDER, i, block)
        perm = torch.stack([torch.randperm(n, generator=g) for _ in range(n_epochs)])
        out.append(perm[:, : spe * batch_size].reshape(n_epochs * spe, batch_size))
    return torch.stack(out, 1)


# ---- the minibatch gradient and the step -------------------------------------------------


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


def _sgd_step_(W, b, Xb, scale: float) -> None:
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


# ---- the trainer -------------------------------------------------------------------------


def _settings(**kw) -> dict:
    return {k: (str(v) if isinstance(v, torch.dtype) else v) for k, v in kw.items()}


def train_sgd(
    runs: int | Sequence[int] = 32, *, seed: int = 0, n: int = 1000, batch_size: int = 20, lr: float = 0.005,
    epochs: int = 4500, init: str = "4gon", radius: float = 0.9, noise: float = 0.01, sigma: float = 1.0,
    r: int = 2, c: int = 6, shared_data: bool = False, steps: Sequence[int] | torch.Tensor | None = None,
    dtype: torch.dtype = torch.float64, device: torch.device | str | None = None, path: str | Path | None = None,
    save_every: float = 60.0, progress: bool = True, num_threads: int | None = 1,
) -> TrainResult:
    """Plain SGD (no momentum) on the minibatch mean of ||x - f(x)||^2, for many runs at once.

    runs: a count R (runs 0..R-1) or explicit run indices; each run's numbers depend only on
    (seed, run index), never on which other runs share the batch. Defaults are the paper's
    protocol (SPEC 4): n = 1000, batch 20, lr 0.005, 4500 epochs, 4-gon start (radius 0.9,
    noise 0.01, b = 0). init="random": W ~ N(0, sigma^2), b = 0. shared_data: one training set
    for all runs (seed's shared stream) or, by default, one per run (independent repeats of
    the experiment). steps: checkpoint steps (default `checkpoint_steps(total)`).
    path: if given, the result is saved there (tms.core.io); a finished result is loaded instead of
    retrained, and a partial one (`<path stem>_partial`) is resumed. The partial is written at
    the first epoch-block boundary after every `save_every` seconds (0: at every block) and
    when the run is interrupted (KeyboardInterrupt: Ctrl-C, or SIGTERM under `tms`).
    num_threads: torch threads during training (1 is fastest at these sizes; None leaves the
    setting alone).

    Returns TrainResult with checkpoints (T, R, ...).
    """
    run_ids = _runs(runs)
    spe, total, ck = _check_train(n, batch_size, epochs, r, c, lr, init, steps, save_every)
    record = _settings(
        runs=run_ids, seed=seed, n=n, batch_size=batch_size, lr=lr, epochs=epochs, init=init,
        radius=radius, noise=noise, sigma=sigma, r=r, c=c, shared_data=shared_data,
        dtype=dtype, block_epochs=BLOCK_EPOCHS, total_steps=total, steps_per_epoch=spe,
        optimizer="plain SGD, no momentum", loss="batch mean of ||x - f(x)||^2 (unhalved)",
    )
    if path is not None and io.result_exists(path):
        res = load_train(path)
        if not _same(res.record, record):
            raise ValueError(f"a different training result already exists at {path} (other settings or another "
                             "tms version); choose another path")
        return res
    X = training_data(run_ids, seed, n=n, c=c, shared=shared_data, dtype=dtype)
    W, b = (init_4gon(run_ids, seed, r=r, c=c, radius=radius, noise=noise, dtype=dtype) if init == "4gon" else
            init_random(run_ids, seed, r=r, c=c, sigma=sigma, dtype=dtype))
    partial = None if path is None else partial_path(path)
    state = _start_state(W, b, ck, record, partial)
    dev = torch.device(device) if device is not None else X.device
    Xd = X.to(dev)
    loop = _Loop(run_ids, seed, n, batch_size, c, epochs, spe, -2.0 * lr / batch_size, ck.tolist(), lr,
                 None if shared_data else (torch.arange(len(run_ids)) * n).view(1, -1, 1))
    with checks.torch_threads(num_threads), torch.no_grad():
        _train_blocks(state, loop, Xd.reshape(-1, c), dev, partial, record, save_every, progress)
    res = _finish(ck, state.W_ck.to(dev), state.b_ck.to(dev), Xd, shared_data, record)
    if path is not None:
        save_train(path, res)
        for suf in (".npz", ".json"):
            partial.with_suffix(suf).unlink(missing_ok=True)
    return res


def _check_train(n, batch_size, epochs, r, c, lr, init, steps, save_every) -> tuple[int, int, torch.Tensor]:
    """train_sgd's settings checked: (steps per epoch, total steps, checkpoint steps (T,))."""
    for name, v in (("n", n), ("batch_size", batch_size), ("epochs", epochs), ("r", r), ("c", c)):
        checks.positive_int(v, name)
    if batch_size > n:
        raise ValueError(f"batch_size must be <= n = {n}, got {batch_size}")
    if r > c:
        raise ValueError(f"r must be <= c, got r = {r}, c = {c}")
    checks.positive_float(lr, "lr")
    checks.positive_float(save_every, "save_every", allow_zero=True)
    if init not in ("4gon", "random"):
        raise ValueError(f"init must be '4gon' or 'random', got {init!r}")
    spe = n // batch_size
    total = epochs * spe
    ck = checkpoint_steps(total) if steps is None else torch.as_tensor(steps, dtype=torch.int64)
    if ck.dim() != 1 or len(ck) == 0 or bool((ck[1:] <= ck[:-1]).any()) or int(ck[0]) < 0 or int(ck[-1]) > total:
        raise ValueError(f"steps must be increasing integers in [0, {total}] (total steps), got {ck.tolist()}")
    return spe, total, ck


class _State:
    """The trainer's mutable state: parameters W (R, r, c), b (R, c); checkpoints W_ck (T, R,
    r, c), b_ck (T, R, c) on the CPU; `block`, the next epoch block to run; `boundary`, a copy
    of (W, b, block) at the last finished block (what a partial save holds)."""

    def __init__(self, W, b, W_ck, b_ck, block: int):
        self.W, self.b, self.W_ck, self.b_ck, self.block = W, b, W_ck, b_ck, block
        self.start = block
        self.boundary = (W.clone(), b.clone(), block)


class _Loop(NamedTuple):
    """The fixed settings of one training loop (see train_sgd); offset (1, R, 1) indexes the
    per-run training sets in the flattened data, None when the set is shared."""

    run_ids: list
    seed: int
    n: int
    batch_size: int
    c: int
    epochs: int
    spe: int
    scale: float
    ck: list
    lr: float
    offset: torch.Tensor | None


def _start_state(W, b, ck, record: dict, partial: Path | None) -> _State:
    """A fresh state at block 0 (checkpoint 0 filled in when step 0 is one), or the partial's."""
    T = len(ck)
    W_ck = torch.zeros(T, *W.shape, dtype=W.dtype)
    b_ck = torch.zeros(T, *b.shape, dtype=b.dtype)
    if partial is not None and io.result_exists(partial):
        arr, rec = io.load_result(partial)
        if _same(rec["settings"], record) and rec["steps"] == ck.tolist():
            t = {k: torch.from_numpy(arr[k]).to(W.dtype) for k in ("W", "b", "W_ck", "b_ck")}
            return _State(t["W"], t["b"], t["W_ck"], t["b_ck"], int(rec["blocks_done"]))
    if int(ck[0]) == 0:
        W_ck[0], b_ck[0] = W, b
    return _State(W, b, W_ck, b_ck, 0)


def _save_partial(partial: Path, state: _State, record: dict, ck: list) -> None:
    """The state at the last finished block boundary (checkpoints past it are refilled on resume)."""
    Wp, bp, done = state.boundary
    io.save_result(partial, {"W": Wp, "b": bp, "W_ck": state.W_ck, "b_ck": state.b_ck},
                   {"settings": record, "steps": ck, "blocks_done": done})


def _train_blocks(state: _State, lp: _Loop, Xflat, dev, partial, record, save_every: float, progress: bool) -> None:
    """Run every epoch block from state.block on, saving the partial on the interval and on
    an interrupt (KeyboardInterrupt, re-raised)."""
    n_blocks = math.ceil(lp.epochs / BLOCK_EPOCHS)
    R, total = len(lp.run_ids), lp.epochs * lp.spe
    W, b = state.W.to(dev).contiguous(), state.b.to(dev).contiguous()
    t_save = time.monotonic()
    bar = tqdm(total=total, initial=state.block * BLOCK_EPOCHS * lp.spe, disable=not progress,
               desc=f"SGD x {R} runs", unit="step", unit_scale=True, mininterval=1.0)
    try:
        for blk in range(state.block, n_blocks):
            n_steps_blk = _run_block(W, b, state, lp, Xflat, dev, blk)
            bar.update(n_steps_blk)
            state.boundary, state.block = (W.clone(), b.clone(), blk + 1), blk + 1
            if partial is not None and time.monotonic() - t_save >= save_every and blk + 1 < n_blocks:
                _save_partial(partial, state, record, lp.ck)
                t_save = time.monotonic()
    except KeyboardInterrupt:
        if partial is not None and state.boundary[2] > state.start:
            _save_partial(partial, state, record, lp.ck)
        raise
    finally:
        bar.close()


def _run_block(W, b, state: _State, lp: _Loop, Xflat, dev, blk: int) -> int:
    """The SGD steps of epoch block `blk`, in place on W, b; checkpoints stored in state.
    Returns the number of steps."""
    R, B, ck = len(lp.run_ids), lp.batch_size, lp.ck
    ep = min(BLOCK_EPOCHS, lp.epochs - blk * BLOCK_EPOCHS)
    idx = _block_order(lp.run_ids, lp.seed, blk, ep, lp.n, B)  # (S, R, B)
    if lp.offset is not None:
        idx = idx + lp.offset
    idx = idx.reshape(idx.shape[0], R * B).to(dev)
    step0 = blk * BLOCK_EPOCHS * lp.spe
    nxt = next((j for j, s in enumerate(ck) if s > step0), len(ck))
    for t in range(idx.shape[0]):
        _sgd_step_(W, b, Xflat.index_select(0, idx[t]).view(R, B, lp.c), lp.scale)
        if nxt < len(ck) and step0 + t + 1 == ck[nxt]:
            state.W_ck[nxt], state.b_ck[nxt] = W.cpu(), b.cpu()
            nxt += 1
    if not bool(torch.isfinite(W).all() and torch.isfinite(b).all()):
        raise ValueError(f"SGD diverged (non-finite parameters) in epoch block {blk}; lower lr (got {lp.lr})")
    return idx.shape[0]


def partial_path(path) -> Path:
    """Where an unfinished run keeps its state: `<stem>_partial` beside the result."""
    path = Path(path)
    return path.with_name(path.stem + "_partial")


def _same(saved: dict, record: dict) -> bool:
    """Same settings (every key of `record`) and the same package version (tms.core.io provenance)."""
    prov = saved.get(io.PROVENANCE_KEY)
    if isinstance(prov, dict) and prov.get("package_version") != io.package_version():
        return False
    return {k: saved.get(k) for k in record} == io.jsonable(record)


def _finish(ck, W_ck, b_ck, X, shared, record) -> TrainResult:
    """Exact train and population losses at every checkpoint of every run, in one batch."""
    data = sorted_data(X)  # (n, c) or (R, n, c): broadcasts with (T, R)
    train = empirical_loss_sorted(W_ck, b_ck, data)
    pop = population_loss(W_ck, b_ck)
    return TrainResult(ck, W_ck, b_ck, train, pop, X, record)


def save_train(path: str | Path, res: TrainResult) -> None:
    io.save_result(path, {"steps": res.steps, "W": res.W, "b": res.b, "train_loss": res.train_loss,
                          "pop_loss": res.pop_loss, "X": res.X}, res.record)


def load_train(path: str | Path) -> TrainResult:
    """Inverse of save_train; ValueError if there is no finished result at `path`."""
    if not io.result_exists(path):
        raise ValueError(f"no training result at {path} (expected {Path(path).with_suffix('.npz')} and .json; "
                         "run `tms train --out PATH` first)")
    arr, rec = io.load_result(path)
    t = {k: torch.from_numpy(v) for k, v in arr.items()}
    return TrainResult(t["steps"], t["W"], t["b"], t["train_loss"], t["pop_loss"], t["X"], rec)
