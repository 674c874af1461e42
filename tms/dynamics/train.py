"""The dynamical experiment (SPEC 4): plain SGD on the TMS, vectorised over many runs.

Runs are a leading dim: W (R, r, c), b (R, c). Steps go in epoch blocks: on the CPU in
float64 a block is one compiled call for every run (tms.dynamics.train_compiled), elsewhere a
Python loop over its steps, each a dozen batched torch kernels with an analytic gradient
(tms.dynamics.sgd_step, the reference). The two agree to rounding.

Randomness is per run and independent of the batch layout: run i of seed s draws its start
from its own stream (s, INIT, i), its training set (when not shared) from (s, DATA, i), and
the data order of epoch block k from (s, ORDER, i, k). Running run 3 alone or inside a batch
of 32 gives the same numbers, and a run can resume at any block boundary.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch

from tms.core import progress as progress_bar
from tms.core import checks, io
from tms.core.settings import Settings, setting
from tms.dynamics import train_compiled
from tms.dynamics.sgd_step import minibatch_loss_grad, sgd_step_  # noqa: F401  (minibatch_loss_grad: re-exported)
from tms.theory.data import sample_inputs
from tms.theory.loss import empirical_loss_sorted, population_loss, sorted_data

# Stream identifiers for per-run seeds (see module docstring).
INIT, DATA, ORDER = 0, 1, 2
SHARED = 2**31 - 1  # run index used for the one shared training set
BLOCK_EPOCHS = 50  # epochs whose data order one generator draws (part of the protocol)
MAX_RUNS, MAX_EPOCHS, MAX_C = 10**4, 10**6, 100
MAX_TOTAL_STEPS = 10**8  # epochs * (n // batch_size): about a day for 32 runs on one core


@dataclass(frozen=True)
class TrainSettings(Settings):
    """Every setting of an SGD experiment (SPEC 4); the defaults are the paper's protocol:
    32 runs, n = 1000 (one training set per run), batch 20, lr 0.005, 4500 epochs (225,000
    steps), a start near a 4-gon (radius 0.9, noise 0.01, b = 0), float64, checkpoints at
    step 0, 100 log-spaced and 100 evenly spaced steps. tms.experiments.train has the scale
    presets (`tms train --scale`)."""

    runs: int = setting(32, "independent SGD runs, trained at once", minimum=1, maximum=MAX_RUNS)
    seed: int = setting(0, "seed of every run's start, training set and data order", minimum=0,
                        maximum=checks.MAX_SEED)
    n: int = setting(1000, "training set size", minimum=1, maximum=checks.MAX_N)
    batch_size: int = setting(20, "minibatch size (at most n)", minimum=1)
    lr: float = setting(0.005, "learning rate of plain SGD (no momentum)", positive=True)
    epochs: int = setting(4500, "epochs per run", minimum=1, maximum=MAX_EPOCHS)
    init: str = setting("4gon", "start near a 4-gon, or W ~ N(0, sigma^2)", choices=("4gon", "random"))
    radius: float = setting(0.9, "4-gon start: column length", positive=True)
    noise: float = setting(0.01, "4-gon start: std of the noise on every W entry", minimum=0)
    sigma: float = setting(1.0, "random start: std of the W entries", minimum=0)
    r: int = setting(2, "hidden dims", minimum=1)
    c: int = setting(6, "features", minimum=1, maximum=MAX_C)
    shared_data: bool = setting(False, "one training set for all runs (else one per run)")
    dtype: str = setting("float64", "floating-point type of parameters and data", choices=("float64", "float32"))
    log_checkpoints: int = setting(100, "checkpoints spread evenly in log(step)", minimum=0, maximum=10**5)
    linear_checkpoints: int = setting(100, "checkpoints spread evenly in step", minimum=0, maximum=10**5)
    steps: tuple[int, ...] | None = setting(None, "explicit checkpoint steps, increasing, in [0, total steps] "
                                            "(None: step 0 and the log- and evenly spaced ones)",
                                            minimum=0, optional=True, flag=False)

    def check(self) -> None:
        if self.batch_size > self.n:
            raise ValueError(f"batch_size must be <= n = {self.n}, got {self.batch_size}")
        if self.r > self.c:
            raise ValueError(f"r must be <= c, got r = {self.r}, c = {self.c}")
        if self.init == "4gon" and (self.r < 2 or self.c < 4):
            raise ValueError(f"init 4gon needs r >= 2 and c >= 4, got r = {self.r}, c = {self.c} (use init random)")
        if self.total_steps > MAX_TOTAL_STEPS:
            raise ValueError(f"epochs {self.epochs} x {self.steps_per_epoch} steps per epoch exceeds "
                             f"{MAX_TOTAL_STEPS:.0e} SGD steps; lower epochs or raise batch_size")
        st = self.steps
        if st is not None and (not st or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) for s in st)
                               or any(b <= a for a, b in zip(st, st[1:])) or st[-1] > self.total_steps):
            raise ValueError(f"steps must be increasing integers in [0, {self.total_steps}] (total steps), "
                             f"got {list(st)[:8]}")

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.batch_size

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch.float64 if self.dtype == "float64" else torch.float32

    def checkpoints(self) -> torch.Tensor:
        """The checkpoint steps (T,) int64: `steps`, or `checkpoint_steps` of the total."""
        if self.steps is not None:
            return torch.tensor(self.steps, dtype=torch.int64)
        return checkpoint_steps(self.total_steps, self.log_checkpoints, self.linear_checkpoints)


@dataclass
class TrainResult:
    """Checkpoints of R runs at T steps.

    steps: (T,) int64 step counts (0 = initialisation)
    W: (T, R, r, c), b: (T, R, c) parameters after `steps` updates
    train_loss: (T, R) exact L_n on the run's training set
    pop_loss: (T, R) exact population loss L
    X: (n, c) shared training set, or (R, n, c) one per run
    record: what the saved .json holds: "settings" (TrainSettings.as_record()), "runs" (the R
      run indices), total_steps, steps_per_epoch, block_epochs, optimizer, loss
    """

    steps: torch.Tensor
    W: torch.Tensor
    b: torch.Tensor
    train_loss: torch.Tensor
    pop_loss: torch.Tensor
    X: torch.Tensor
    record: dict

    @property
    def settings(self) -> TrainSettings:
        return TrainSettings.from_record(self.record["settings"])

    @property
    def run_ids(self) -> list[int]:
        return [int(i) for i in self.record["runs"]]


# ---- seeds, starts, data, schedule -------------------------------------------------------


def stream_seed(seed: int, stream: int, run: int, block: int = 0) -> int:
    """A 63-bit torch seed for (seed, stream, run, block), independent of any batch layout."""
    ss = np.random.SeedSequence([int(seed), int(stream), int(run), int(block)])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def _gen(seed: int, stream: int, run: int, block: int = 0) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(stream_seed(seed, stream, run, block))
    return g


def resolve_settings(settings: TrainSettings | None, changes: dict) -> TrainSettings:
    """`settings` (default TrainSettings()) with `changes` (field names) applied, validated."""
    if settings is not None and not isinstance(settings, TrainSettings):
        raise ValueError(f"settings must be a TrainSettings, got {type(settings).__name__} {settings!r} "
                         "(a run count is runs=..., run indices run_ids=...)")
    return (settings or TrainSettings()).replace(**changes)


def run_indices(settings: TrainSettings, run_ids: Sequence[int] | None = None) -> list[int]:
    """The runs to train: `run_ids` (distinct, each in 0 .. settings.runs - 1: a block of the
    experiment's runs), by default all of them."""
    if run_ids is None:
        return list(range(settings.runs))
    ids = list(run_ids)
    if (not ids or any(isinstance(i, bool) or not isinstance(i, (int, np.integer)) for i in ids)
            or min(ids) < 0 or max(ids) >= settings.runs or len(set(ids)) != len(ids)):
        raise ValueError(f"run_ids must be distinct run indices in 0..{settings.runs - 1} (settings.runs = "
                         f"{settings.runs}), got {run_ids!r}")
    return [int(i) for i in ids]


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


# ---- the trainer -------------------------------------------------------------------------


def train_sgd(
    settings: TrainSettings | None = None, *, run_ids: Sequence[int] | None = None, path: str | Path | None = None,
    device: torch.device | str | None = None, save_every: float = 60.0, threads: int | None = None,
    progress: bool = True, **changes,
) -> TrainResult:
    """Plain SGD (no momentum) on the minibatch mean of ||x - f(x)||^2, for many runs at once.

    settings: a TrainSettings (default TrainSettings(), the paper's protocol, SPEC 4) with
    `changes` applied (its field names: runs=4, epochs=40, init="random", ...). Each run's
    numbers depend only on (seed, run index), never on which other runs share the batch;
    run_ids: train only these of the experiment's runs (default all, 0 .. runs - 1).
    path: if given, the result is saved there (tms.core.io); a finished result with the same
    settings is loaded instead of retrained (a different one is a ValueError), and a partial
    one (`<path stem>_partial`) is resumed; both through tms.core.io.reuse_problem. The
    partial is written at the first epoch-block boundary after every `save_every` seconds (0:
    at every block) and when the run is interrupted (KeyboardInterrupt: Ctrl-C, or SIGTERM
    under `tms`). threads: of the compiled block (tms.dynamics.train_compiled), None: the
    enclosing run's (tms.core.checks.kernel_threads; every core by default); torch uses one
    (its tensors are small); no number depends on it. device: where the steps run (default:
    the CPU; float64 on the CPU runs compiled, anything else on torch).

    Returns TrainResult with checkpoints (T, R, ...).
    """
    settings = resolve_settings(settings, changes)
    ids = run_indices(settings, run_ids)
    checks.positive_float(save_every, "save_every", allow_zero=True)
    threads = checks.threads(threads, "threads")
    record = io.jsonable(_record(settings, ids))
    if path is not None and io.result_exists(path):
        problem = io.reuse_problem(path, record, key=None)
        if problem is not None:
            raise ValueError(f"a different training result already exists at {path} ({problem}); "
                             "choose another path")
        progress_bar.reused(f"training result ({settings.runs} runs x {settings.epochs} epochs, same settings)", path)
        return load_train(path, "path")
    s, dtype = settings, settings.torch_dtype
    X = training_data(ids, s.seed, n=s.n, c=s.c, shared=s.shared_data, dtype=dtype)
    W, b = (init_4gon(ids, s.seed, r=s.r, c=s.c, radius=s.radius, noise=s.noise, dtype=dtype) if s.init == "4gon"
            else init_random(ids, s.seed, r=s.r, c=s.c, sigma=s.sigma, dtype=dtype))
    ck = s.checkpoints()
    partial = None if path is None else partial_path(path)
    state = _start_state(W, b, ck, record, partial)
    dev = torch.device(device) if device is not None else X.device
    Xd = X.to(dev)
    Xflat = Xd.reshape(-1, s.c)
    loop = _Loop(ids, s.seed, s.n, s.batch_size, s.c, s.epochs, s.steps_per_epoch, -2.0 * s.lr / s.batch_size,
                 ck.tolist(), s.lr, None if s.shared_data else (torch.arange(len(ids)) * s.n).view(1, -1, 1),
                 train_compiled.prepare(Xflat, W, s.n, s.shared_data))
    k = checks.kernel_threads() if threads is None else threads  # None: the enclosing run's count
    with checks.torch_threads(k, torch_cap=1), torch.no_grad():
        _train_blocks(state, loop, Xflat, dev, partial, record, save_every, progress)
    res = _finish(ck, state.W_ck.to(dev), state.b_ck.to(dev), Xd, s.shared_data, record)
    if path is not None:
        save_train(path, res)
        for suf in (".npz", ".json"):
            partial.with_suffix(suf).unlink(missing_ok=True)
    return res


def _record(settings: TrainSettings, run_ids: list[int]) -> dict:
    """What a training result's .json holds besides provenance (see TrainResult.record)."""
    return dict(settings=settings, runs=run_ids, total_steps=settings.total_steps,
                steps_per_epoch=settings.steps_per_epoch, block_epochs=BLOCK_EPOCHS,
                optimizer="plain SGD, no momentum", loss="batch mean of ||x - f(x)||^2 (unhalved)")


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
    per-run training sets in the flattened data, None when the set is shared; compiled: the
    data of the compiled block, None on the torch path."""

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
    compiled: train_compiled.Data | None


def _start_state(W, b, ck, record: dict, partial: Path | None) -> _State:
    """A fresh state at block 0 (checkpoint 0 filled in when step 0 is one), or the partial's
    when it was saved by a run of this record (tms.core.io.reuse_problem)."""
    T = len(ck)
    W_ck = torch.zeros(T, *W.shape, dtype=W.dtype)
    b_ck = torch.zeros(T, *b.shape, dtype=b.dtype)
    if partial is not None and io.reuse_problem(partial, record, key="train") is None:
        arr, rec = io.load_result(partial)
        t = {k: torch.from_numpy(arr[k]).to(W.dtype) for k in ("W", "b", "W_ck", "b_ck")}
        return _State(t["W"], t["b"], t["W_ck"], t["b_ck"], int(rec["blocks_done"]))
    if int(ck[0]) == 0:
        W_ck[0], b_ck[0] = W, b
    return _State(W, b, W_ck, b_ck, 0)


def _save_partial(partial: Path, state: _State, record: dict) -> None:
    """The state at the last finished block boundary (checkpoints past it are refilled on resume)."""
    Wp, bp, done = state.boundary
    io.save_result(partial, {"W": Wp, "b": bp, "W_ck": state.W_ck, "b_ck": state.b_ck},
                   {"train": record, "blocks_done": done})


def _train_blocks(state: _State, lp: _Loop, Xflat, dev, partial, record, save_every: float, progress: bool) -> None:
    """Run every epoch block from state.block on, saving the partial on the interval and on
    an interrupt (KeyboardInterrupt, re-raised)."""
    n_blocks = math.ceil(lp.epochs / BLOCK_EPOCHS)
    R, total = len(lp.run_ids), lp.epochs * lp.spe
    W, b = state.W.to(dev).contiguous(), state.b.to(dev).contiguous()
    t_save = time.monotonic()
    bar = progress_bar.bar(total=total, initial=state.block * BLOCK_EPOCHS * lp.spe, disable=not progress,
               desc=f"SGD x {R} runs", unit="step", unit_scale=True, mininterval=1.0)
    try:
        for blk in range(state.block, n_blocks):
            n_steps_blk = _run_block(W, b, state, lp, Xflat, dev, blk)
            bar.update(n_steps_blk)
            state.boundary, state.block = (W.clone(), b.clone(), blk + 1), blk + 1
            if partial is not None and time.monotonic() - t_save >= save_every and blk + 1 < n_blocks:
                _save_partial(partial, state, record)
                t_save = time.monotonic()
    except KeyboardInterrupt:
        if partial is not None and state.boundary[2] > state.start:
            _save_partial(partial, state, record)
        raise
    finally:
        bar.close()


def _run_block(W, b, state: _State, lp: _Loop, Xflat, dev, blk: int) -> int:
    """The SGD steps of epoch block `blk`, in place on W, b; checkpoints stored in state.
    Returns the number of steps."""
    R, B, ck = len(lp.run_ids), lp.batch_size, lp.ck
    ep = min(BLOCK_EPOCHS, lp.epochs - blk * BLOCK_EPOCHS)
    idx = _block_order(lp.run_ids, lp.seed, blk, ep, lp.n, B)  # (S, R, B)
    if lp.compiled is not None:
        return _run_block_compiled(W, b, state, lp, idx, blk)
    if lp.offset is not None:
        idx = idx + lp.offset
    idx = idx.reshape(idx.shape[0], R * B).to(dev)
    step0 = blk * BLOCK_EPOCHS * lp.spe
    nxt = next((j for j, s in enumerate(ck) if s > step0), len(ck))
    for t in range(idx.shape[0]):
        sgd_step_(W, b, Xflat.index_select(0, idx[t]).view(R, B, lp.c), lp.scale)
        if nxt < len(ck) and step0 + t + 1 == ck[nxt]:
            state.W_ck[nxt], state.b_ck[nxt] = W.cpu(), b.cpu()
            nxt += 1
    _check_finite(W, b, lp, blk)
    return idx.shape[0]


def _run_block_compiled(W, b, state: _State, lp: _Loop, idx, blk: int) -> int:
    """_run_block's steps in one compiled call (tms.dynamics.train_compiled)."""
    step0, S = blk * BLOCK_EPOCHS * lp.spe, idx.shape[0]
    hits = [j for j, s in enumerate(lp.ck) if step0 < s <= step0 + S]
    W_ck, b_ck = train_compiled.run_block(W, b, idx, lp.compiled, lp.scale, [lp.ck[j] - step0 - 1 for j in hits])
    if hits:
        state.W_ck[hits[0]:hits[-1] + 1], state.b_ck[hits[0]:hits[-1] + 1] = W_ck, b_ck
    _check_finite(W, b, lp, blk)
    return S


def _check_finite(W, b, lp: _Loop, blk: int) -> None:
    if not bool(torch.isfinite(W).all() and torch.isfinite(b).all()):
        raise ValueError(f"SGD diverged (non-finite parameters) in epoch block {blk}; lower lr (got {lp.lr})")


def partial_path(path) -> Path:
    """Where an unfinished run keeps its state: `<stem>_partial` beside the result."""
    path = Path(path)
    return path.with_name(path.stem + "_partial")


def _finish(ck, W_ck, b_ck, X, shared, record) -> TrainResult:
    """Exact train and population losses at every checkpoint of every run, in one batch."""
    data = sorted_data(X)  # (n, c) or (R, n, c): broadcasts with (T, R)
    train = empirical_loss_sorted(W_ck, b_ck, data)
    pop = population_loss(W_ck, b_ck)
    return TrainResult(ck, W_ck, b_ck, train, pop, X, record)


def save_train(path: str | Path, res: TrainResult) -> None:
    io.save_result(path, {"steps": res.steps, "W": res.W, "b": res.b, "train_loss": res.train_loss,
                          "pop_loss": res.pop_loss, "X": res.X}, res.record)


_FLOAT, _INT = "f", "iu"
TRAIN_ARRAYS = dict(steps=((1,), _INT), W=((4,), _FLOAT), b=((3,), _FLOAT), train_loss=((2,), _FLOAT),
                    pop_loss=((2,), _FLOAT), X=((2, 3), _FLOAT))


def load_train(path: str | Path, name: str = "--input") -> TrainResult:
    """Inverse of save_train, checked: the files intact, arrays steps (T,), W (T, R, r, c),
    b (T, R, c), train_loss and pop_loss (T, R), X (n, c) or (R, n, c) agreeing with each other
    and with the saved settings. ValueError naming `name` and the file otherwise."""
    arr, rec = checks.result_file(path, name, what="training result", arrays=TRAIN_ARRAYS, keys=("settings", "runs"),
                                  hint="; run `tms train --out PATH` first")
    where = checks.result_stem(path).with_suffix(".json")
    saved = rec["settings"]
    missing = [f for f in TrainSettings.__dataclass_fields__ if not isinstance(saved, dict) or f not in saved]
    try:
        if missing:
            raise ValueError(f"its settings lack {', '.join(missing)}")
        settings = TrainSettings.from_record(saved)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{name}: {where} holds no valid training settings: {err}") from None
    _check_shapes(arr, settings, rec["runs"], f"{name}: {where.with_suffix('.npz')}")
    t = {k: torch.from_numpy(v) for k, v in arr.items()}
    return TrainResult(t["steps"], t["W"], t["b"], t["train_loss"], t["pop_loss"], t["X"], rec)


def _check_shapes(arr: dict, settings: TrainSettings, runs, where: str) -> None:
    """A training result's arrays agree with each other and with its settings and run list."""
    T, R, r, c = arr["W"].shape
    want = dict(steps=(T,), b=(T, R, c), train_loss=(T, R), pop_loss=(T, R))
    for key, shape in want.items():
        if arr[key].shape != shape:
            raise ValueError(f"{where}: array {key} has shape {arr[key].shape}, expected {shape} to match W "
                             f"{arr['W'].shape}")
    X = arr["X"]
    if X.shape[-1] != c or (X.ndim == 3 and X.shape[0] != R) or X.shape[-2] != settings.n:
        raise ValueError(f"{where}: array X has shape {X.shape}, expected ({settings.n}, {c}) or ({R}, "
                         f"{settings.n}, {c})")
    if T < 1 or (np.diff(arr["steps"]) <= 0).any() or arr["steps"][0] < 0:
        raise ValueError(f"{where}: steps must be increasing integers >= 0, got {arr['steps'].tolist()[:8]}")
    if (settings.c, settings.r) != (c, r) or not isinstance(runs, list) or len(runs) != R:
        raise ValueError(f"{where}: W has shape {arr['W'].shape} but the settings say c = {settings.c}, "
                         f"r = {settings.r} and the record lists runs {runs!r}")
