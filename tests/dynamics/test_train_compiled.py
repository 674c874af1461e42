"""The compiled SGD epoch block (tms.dynamics.train_compiled) against the torch step, the
reference: the same steps to rounding, the same bits alone or in a batch, at 1 or 2 threads."""

import pytest
import torch

import tms.dynamics.train as train
from tms.core import checks
from tms.dynamics import train_compiled
from tms.dynamics.sgd_step import sgd_step_


def _setup(R: int, shared: bool, n: int = 100, B: int = 10, epochs: int = 4, seed: int = 7):
    """A random start (with b != 0, so the ReLU mask varies), the training data flattened and
    one block's order: (W, b, Xflat, idx (S, R, B) rows of a run's set, offsets (R,))."""
    ids = list(range(R))
    W, b = train.init_random(ids, seed, r=2, c=6, sigma=0.7)
    b = 0.1 * torch.randn(b.shape, generator=torch.Generator().manual_seed(seed), dtype=W.dtype)
    X = train.training_data(ids, seed, n=n, c=6, shared=shared)
    idx = train._block_order(ids, seed, 0, epochs, n, B)
    off = torch.zeros(R, dtype=torch.int64) if shared else torch.arange(R) * n
    return W, b, X.reshape(-1, 6), idx, off


def _torch_steps(W, b, Xflat, idx, off, scale, ck_t):
    """The torch path's steps (train._run_block): checkpoints after steps ck_t."""
    W, b, out = W.clone(), b.clone(), []
    S, R, B = idx.shape
    rows = (idx + off.view(1, -1, 1)).reshape(S, R * B)
    for t in range(S):
        sgd_step_(W, b, Xflat.index_select(0, rows[t]).view(R, B, 6), scale)
        if t in ck_t:
            out.append((W.clone(), b.clone()))
    return W, b, out


def _compiled(W, b, Xflat, idx, n, shared, scale, ck_t):
    W, b = W.clone(), b.clone()
    data = train_compiled.prepare(Xflat, W, n, shared)
    W_ck, b_ck = train_compiled.run_block(W, b, idx, data, scale, ck_t)
    return W, b, W_ck, b_ck


@pytest.mark.parametrize("shared", [True, False])
def test_compiled_steps_equal_torch_steps_to_rounding(shared):
    W0, b0, Xflat, idx, off = _setup(5, shared)  # 4 epochs of 10 steps ... 40 steps a block
    idx = torch.cat([idx, train._block_order(range(5), 8, 0, 16, 100, 10)])  # 200 steps
    assert idx.shape == (200, 5, 10)
    scale, ck_t = -2 * 0.05 / 10, [0, 57, 58, 199]
    Wt, bt, cks = _torch_steps(W0, b0, Xflat, idx, off, scale, ck_t)
    Wc, bc, W_ck, b_ck = _compiled(W0, b0, Xflat, idx, 100, shared, scale, ck_t)
    assert (Wt - W0).abs().max() > 0.05 and (bt - b0).abs().max() > 0.01  # they moved
    tol = 1e-12 * float(W0.abs().max())
    assert (Wc - Wt).abs().max() <= tol and (bc - bt).abs().max() <= tol
    for q, (Wq, bq) in enumerate(cks):
        assert (W_ck[q] - Wq).abs().max() <= tol and (b_ck[q] - bq).abs().max() <= tol
    assert torch.equal(W_ck[-1], Wc) and torch.equal(b_ck[-1], bc)


def test_compiled_block_is_the_same_bits_alone_in_a_batch_and_at_any_thread_count():
    R = 64  # R x S = 2560 run-steps: above PARALLEL_MIN, the parallel kernel
    W0, b0, Xflat, idx, _ = _setup(R, False)
    assert R * idx.shape[0] >= train_compiled.PARALLEL_MIN
    scale, ck_t = -0.01, [3, 39]
    with checks.kernel_threads_set(1):
        one = _compiled(W0, b0, Xflat, idx, 100, False, scale, ck_t)
    with checks.kernel_threads_set(2):
        two = _compiled(W0, b0, Xflat, idx, 100, False, scale, ck_t)
    for a, c in zip(one, two):
        assert torch.equal(a, c)
    p = 37  # run 37 alone (serial kernel), its own training set as the only one
    alone = _compiled(W0[p:p + 1], b0[p:p + 1], Xflat[p * 100:(p + 1) * 100], idx[:, p:p + 1], 100, False, scale,
                      ck_t)
    assert torch.equal(alone[0][0], two[0][p]) and torch.equal(alone[1][0], two[1][p])
    assert torch.equal(alone[2][:, 0], two[2][:, p]) and torch.equal(alone[3][:, 0], two[3][:, p])


def test_compiled_applies_to_cpu_float64_only_and_use_false_forces_torch():
    W, _, Xflat, _, _ = _setup(2, True)
    assert train_compiled.prepare(Xflat, W, 100, True) is not None
    assert train_compiled.prepare(Xflat.float(), W.float(), 100, True) is None  # float32: torch
    with train_compiled.use(False):
        assert not train_compiled.enabled() and train_compiled.prepare(Xflat, W, 100, True) is None
    assert train_compiled.enabled()


# The paper's protocol for 3000 steps (a 4-gon start falling to the 4++ level, test_train's
# smoke run). The paths differ per step by rounding, ~1 ulp of |W| ~ 1 (sums in other orders);
# near a stable plateau SGD's map contracts, so the difference stays ~1e-16 (measured: 1.1e-16
# on W, b and the losses at every checkpoint). 1e-12 leaves 10^4 ulps for growth along an
# unstable direction or another BLAS's order, while a wrong step (it moves W by lr |grad|,
# ~1e-4) fails at once.
def test_a_whole_training_run_compiled_equals_torch():
    kw = dict(runs=4, seed=0, epochs=60, shared_data=False, progress=False)
    comp = train.train_sgd(**kw)
    with train_compiled.use(False):
        ref = train.train_sgd(**kw)
    assert (comp.W[-1] - comp.W[0]).abs().max() > 0.1
    assert (comp.W - ref.W).abs().max() < 1e-12 and (comp.b - ref.b).abs().max() < 1e-12
    assert (comp.pop_loss - ref.pop_loss).abs().max() < 1e-12


@pytest.mark.parametrize("compiled", [True, False])
def test_divergence_raises_on_both_paths(compiled):
    with train_compiled.use(compiled), pytest.raises(ValueError, match="SGD diverged .* in epoch block 0; lower lr"):
        train.train_sgd(runs=2, n=100, epochs=5, lr=1e3, progress=False)


def test_tms_train_threads_reach_the_compiled_block_and_change_no_number(tmp_path, monkeypatch):
    from tms.cli.main import main

    seen, orig = [], train_compiled.run_block

    def spy(*args, **kwargs):
        seen.append(checks.kernel_threads())
        return orig(*args, **kwargs)

    monkeypatch.setattr(train_compiled, "run_block", spy)
    argv = ["train", "--runs", "8", "--epochs", "60", "--n", "100", "--batch-size", "10", "--no-progress"]
    results = {}
    for threads in ([], ["--threads", "1"], ["--threads", "2"]):  # 8 runs x 500 steps a block: parallel
        seen.clear()
        out = tmp_path / f"t{len(threads) and threads[1]}"
        assert main([*argv, *threads, "--out", str(out)]) == 0
        assert set(seen) == {int(threads[1]) if threads else None}  # the default: every core
        results[out.name] = train.load_train(out)
    for res in results.values():
        assert torch.equal(res.W, results["t1"].W) and torch.equal(res.b, results["t1"].b)
