"""Bad input at the public API (what `tms/__init__.py` exports): each row is a call with one bad
argument, the exception it must raise (a ValueError, the lab's one convention, so the CLI
prints it as one line) and a fragment of its message. The rows cover half precision and
integer dtypes, 'meta' tensors (shapes without values), an empty batch of centres, a float
where a count belongs and a sample size that would be truncated."""
from __future__ import annotations

import pytest
import torch

import tms

SIX = tms.critical_point(6, "6")
W, B = SIX.W, SIX.b
X = tms.sample_inputs(50, 6, seed=0)
SGLD = dict(nbeta=10.0, eps=1e-3, gamma=1.0, n_chains=2, n_burnin=4, n_draws=8)
DTYPES = "must be a float32 or float64 tensor"
META = "on the 'meta' device"


def _meta(t):
    return t.to("meta")


CASES = [  # (id, call, exception, message fragment)
    ("population_loss bfloat16", lambda: tms.population_loss(W.bfloat16(), B.bfloat16()), ValueError,
     "W must be a float32 or float64 tensor, got dtype torch.bfloat16"),
    ("population_loss float16", lambda: tms.population_loss(W.half(), B.half()), ValueError, "torch.float16"),
    ("population_loss int64", lambda: tms.population_loss(W.long(), B.long()), ValueError, DTYPES),
    ("population_loss meta", lambda: tms.population_loss(_meta(W), _meta(B)), ValueError, META),
    ("population_loss list", lambda: tms.population_loss(W.tolist(), B.tolist()), ValueError,
     "W must be a torch.Tensor, got list"),
    ("population_loss_and_grad int32", lambda: tms.population_loss_and_grad(W.int(), B.int()), ValueError, DTYPES),
    ("population_loss W and b dtypes differ", lambda: tms.population_loss(W.float(), B), ValueError,
     "W and b must share a dtype"),
    ("population_loss NaN", lambda: tms.population_loss(W * float("nan"), B), ValueError, "contains NaN or inf"),
    ("forward int X", lambda: tms.forward(W, B, X.long()), ValueError, "x must be a float32 or float64 tensor"),
    ("forward meta", lambda: tms.forward(_meta(W), _meta(B), _meta(X)), ValueError, META),
    ("empirical_loss bfloat16 X", lambda: tms.empirical_loss(W, B, X.bfloat16()), ValueError,
     "X must be a float32 or float64 tensor"),
    ("empirical_loss X float32, W float64", lambda: tms.empirical_loss(W, B, X.float()), ValueError,
     "X (torch.float32) must have the dtype of W (torch.float64)"),
    ("empirical_loss empty X", lambda: tms.empirical_loss(W, B, X[:0]), ValueError, "X must hold n >= 1 rows"),
    ("empirical_loss_sorted int W", lambda: tms.empirical_loss_sorted(W.long(), B.long(), tms.sorted_data(X)),
     ValueError, DTYPES),
    ("sorted_data int", lambda: tms.sorted_data(X.long()), ValueError, DTYPES),
    ("sorted_data meta", lambda: tms.sorted_data(_meta(X)), ValueError, META),
    ("sorted_data empty", lambda: tms.sorted_data(X[:0]), ValueError, "X must hold n >= 1 rows"),
    ("classify int", lambda: tms.classify(W.long(), B.long()), ValueError, DTYPES),
    ("classify meta", lambda: tms.classify(_meta(W), _meta(B)), ValueError, META),
    ("is_smooth float16", lambda: tms.is_smooth(W.half(), B.half()), ValueError, DTYPES),
    ("gram int", lambda: tms.gram(W.long()), ValueError, DTYPES),
    ("flatten_params int", lambda: tms.flatten_params(W.long(), B.long()), ValueError, DTYPES),
    ("unflatten_params int", lambda: tms.unflatten_params(torch.zeros(18, dtype=torch.long), 2, 6), ValueError,
     "theta must be a float32 or float64 tensor"),
    ("batched_grad int", lambda: tms.batched_grad(tms.population_loss, W.long(), B.long()), ValueError, DTYPES),
    ("batched_hessian meta", lambda: tms.batched_hessian(tms.population_loss, _meta(W), _meta(B)), ValueError, META),
    ("estimate_llc 0 centres", lambda: tms.estimate_llc(W[None][:0], B[None][:0], X, **SGLD), ValueError,
     "W, b holds 0 centres (batch shape (0,)); expected at least one"),
    ("estimate_llc int", lambda: tms.estimate_llc(W.long(), B.long(), X, **SGLD), ValueError, DTYPES),
    ("estimate_llc meta", lambda: tms.estimate_llc(_meta(W), _meta(B), None, loss="population", **SGLD), ValueError,
     META),
    ("estimate_llc bfloat16", lambda: tms.estimate_llc(W.bfloat16(), B.bfloat16(), None, loss="population", **SGLD),
     ValueError, "torch.bfloat16"),
    ("estimate_llc int X", lambda: tms.estimate_llc(W, B, X.long(), **SGLD), ValueError,
     "X must be a float32 or float64 tensor"),
    ("estimate_llc_flat 0 centres", lambda: tms.estimate_llc_flat(lambda t: (t ** 2).sum(-1), torch.zeros(0, 3),
                                                                  **SGLD), ValueError, "theta0 holds 0 centres"),
    ("estimate_llc_flat int", lambda: tms.estimate_llc_flat(lambda t: (t ** 2).sum(-1),
                                                            torch.zeros(3, dtype=torch.long), **SGLD), ValueError,
     "theta0 must be a float32 or float64 tensor"),
    ("default_nbeta str", lambda: tms.default_nbeta("1000"), ValueError, "n must be a number > 1"),
    ("default_nbeta 1", lambda: tms.default_nbeta(1), ValueError, "n must be > 1"),
    ("train_sgd(2.5)", lambda: tms.train_sgd(2.5, epochs=2), ValueError, "settings must be a TrainSettings, got float"),
    ("train_sgd runs=2.5", lambda: tms.train_sgd(runs=2.5, epochs=2), ValueError, "runs must be an integer"),
    ("sample_inputs n=2.5", lambda: tms.sample_inputs(2.5, 6, seed=0), ValueError, "n must be an integer >= 1"),
    ("sample_inputs n=0", lambda: tms.sample_inputs(0, 6, seed=0), ValueError, "n must be an integer >= 1"),
    ("sample_inputs generator=", lambda: tms.sample_inputs(10, 6, generator=0), TypeError, "generator"),
    ("critical_point c=2.5", lambda: tms.critical_point(2.5, "6"), ValueError, "c must be an integer >= 3"),
    ("critical_points c='6'", lambda: tms.critical_points("6"), ValueError, "c must be an integer >= 3"),
    ("transition_table c=6.5", lambda: tms.transition_table(6.5), ValueError, "c must be an integer >= 3"),
    ("init_params r=2.5", lambda: tms.init_params(2.5, 6), ValueError, "r must be an integer >= 1"),
    ("energy_levels c=2.5", lambda: tms.energy_levels(2.5), ValueError, "c must be an integer >= 3"),
    ("kgon_roots k=2.5", lambda: tms.kgon_roots(2.5), ValueError, "k must be an integer >= 3"),
    ("zoo_llc c=2.5", lambda: tms.zoo_llc(2.5, ["6"]), ValueError, "c must be an integer >= 3"),
    ("phase_sweep n=200.5", lambda: tms.phase_sweep(6, [200.5]), ValueError,
     "n must be an integer >= 1, got 200.5"),
    ("phase_sweep ns empty", lambda: tms.phase_sweep(6, []), ValueError, "ns must be a non-empty list"),
    ("predicted_transitions c=2.5", lambda: tms.predicted_transitions(2.5), ValueError, "c must be an integer >= 3"),
    ("census r=2.5", lambda: tms.census(2.5, 7), ValueError, "r must be an integer between 2 and 6"),
    ("sample_inputs_sparse n=2.5", lambda: tms.sample_inputs_sparse(2.5, 6, 0.9, seed=0), ValueError,
     "n must be an integer >= 1"),
]


@pytest.mark.parametrize("call, error, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_argument_raises_one_line_naming_it(call, error, fragment):
    with pytest.raises(error) as info:
        call()
    text = str(info.value)
    assert fragment in text
    assert "\n" not in text  # one line, as the CLI prints it


def test_the_issues_cases_are_rows():
    ids = {c[0] for c in CASES}
    assert {"population_loss meta", "population_loss int64", "estimate_llc 0 centres", "train_sgd(2.5)",
            "population_loss bfloat16"} <= ids


def test_integral_float_sample_sizes_are_still_accepted():
    """The dtype and whole-number rules refuse what would be wrong, not what is merely spelled
    differently: n = 200.0 is the sample size 200 (the same result as n = 200)."""
    from tms.core import checks

    assert checks.whole_number(200.0, "n") == 200 and checks.whole_number(200, "n") == 200
    assert tms.population_loss(W.float(), B.float()).dtype == torch.float32
