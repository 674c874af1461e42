"""The LLC of any torch model (SPEC 5): the generic front end of ``tms.llc.estimator.sample_llc``.

The chains are one batch (torch.func.vmap of the forward over a flat parameter vector of shape
(K, d), one backward for all chains); the model is called functionally (``functional_call``)
and never modified. What it handles:
- any loss ``loss_fn(prediction, target) -> scalar``, e.g. mean squared error on float
  targets or ``torch.nn.functional.cross_entropy`` on integer class labels;
- integer inputs (token ids into an nn.Embedding) as well as float inputs;
- buffers (batch-norm running statistics, fixed tensors): read from the module as they are;
- eval mode by default: the model is switched to ``eval()`` for the run (dropout off, batch
  norm on its running statistics) and its mode restored after. ``eval_mode=False`` keeps
  train mode where vmap can batch it: dropout then draws from torch's global generator
  (vmap randomness "different": not counter-based, so not layout invariant); a module that
  updates a buffer in place in train mode (batch norm) cannot run under vmap and raises
  a ValueError.
- parameters, buffers, inputs and targets must share one device, and float inputs and
  targets the parameters' dtype: any mismatch is one ValueError listing them all.
The result keys devinterp users expect are ``LLCResult.as_devinterp()`` (see tms.llc.result).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.func import functional_call, vmap

from tms.llc import estimator as llc
from tms.llc.result import LLCResult


def _check_data(data) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise ValueError("data must be a pair (inputs (n, ...), targets (n, ...))")
    x, y = data
    for t, name in ((x, "inputs"), (y, "targets")):
        if not isinstance(t, torch.Tensor) or t.dim() < 1:
            raise ValueError(f"{name} must be a torch.Tensor of shape (n, ...), got {type(t).__name__}")
    if x.shape[0] < 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"inputs and targets must share n >= 1 rows, got {tuple(x.shape)} and {tuple(y.shape)}")
    return x, y


def _check_match(params: dict, buffers: dict, x: torch.Tensor, y: torch.Tensor) -> None:
    """One ValueError for every dtype / device mismatch between model and data; then finiteness."""
    first = next(iter(params.values()))
    dtype, device = first.dtype, first.device
    bad = [f"parameter {k} is {v.dtype} on {v.device}" for k, v in params.items()
           if v.dtype != dtype or v.device != device]
    bad += [f"buffer {k} is on {v.device}" for k, v in buffers.items() if v.device != device]
    for t, name in ((x, "inputs"), (y, "targets")):
        if t.device != device or (t.is_floating_point() and t.dtype != dtype):
            bad.append(f"{name} are {t.dtype} on {t.device}")
    if bad:
        raise ValueError(f"model and data must share one dtype and device (parameters: {dtype} on {device}); "
                         f"got {'; '.join(bad)}. Convert with model.to(...) and tensor.to(...) (integer inputs "
                         "and targets keep their dtype)")
    for t, name in ((x, "inputs"), (y, "targets")):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or inf; expected finite values")


def _centre(model: torch.nn.Module, centre) -> dict[str, torch.Tensor]:
    own = {k: v.detach() for k, v in model.named_parameters()}
    if not own:
        raise ValueError("model has no parameters")
    if centre is None:
        return own
    if set(centre) != set(own):
        raise ValueError(f"centre must name exactly the model's parameters {sorted(own)}, got {sorted(centre)}")
    return {k: centre[k].detach() for k in own}


def _grad_fns(model, loss_fn, params, x, y, batch_size, eval_mode):
    """(grad_fn over theta (K, d), batch_grad_fn or None, loss at the centre, theta0 (d,))."""
    names = list(params)
    shapes, sizes = [params[k].shape for k in names], [params[k].numel() for k in names]
    theta0 = torch.cat([params[k].reshape(-1) for k in names])

    def loss_of(theta, xb, yb):
        parts = {k: t.reshape(s) for k, t, s in zip(names, theta.split(sizes), shapes)}
        return loss_fn(functional_call(model, parts, (xb,)), yb)

    # vmap the forward only, one backward through it: the chains are independent, so the
    # gradient of the summed loss is every chain's own gradient (faster than vmap(grad)).
    mode = "error" if eval_mode else "different"
    full_loss = vmap(loss_of, in_dims=(0, None, None), randomness=mode)
    batch_loss = vmap(loss_of, in_dims=(0, 0, 0), randomness=mode)
    grad_fn = llc.autograd_grad_fn(lambda theta: full_loss(theta, x, y))

    def batch_grad_fn(keys, t):
        idx = llc.minibatch_rows(keys, t, x.shape[0], batch_size)  # (K, m)
        return llc.autograd_grad_fn(lambda theta: batch_loss(theta, x[idx], y[idx]))

    try:
        with torch.no_grad():
            centre_loss = loss_of(theta0, x, y)
        grad_fn(theta0[None])  # vmap fails here, not at step 1, on a module it cannot batch
    except RuntimeError as err:
        raise ValueError(f"the model cannot run batched over chains (torch.func.vmap) in "
                         f"{'eval' if eval_mode else 'train'} mode: {str(err).splitlines()[0]}"
                         + ("" if eval_mode else "; use eval_mode=True (the default)")) from None
    return grad_fn, None if batch_size is None else batch_grad_fn, centre_loss, theta0


def estimate_llc_model(model: torch.nn.Module, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                       data: tuple[torch.Tensor, torch.Tensor], *, nbeta, eps: float, gamma: float,
                       n_chains: int, n_burnin: int, n_draws: int, batch_size: int | None = None,
                       seed: int = 0, keys: torch.Tensor | None = None,
                       centre: dict[str, torch.Tensor] | None = None, eval_mode: bool = True,
                       progress: bool = False) -> LLCResult:
    """LLC of a torch model at one centre, the chains batched with torch.func.vmap (module docstring).

    loss_fn(prediction, target) -> scalar mean loss over the rows: the L_n of SPEC 5.
    data: (inputs (n, ...), targets (n, ...)); float or integer (tokens, class labels).
    centre: {parameter name: tensor}, the localisation centre w* (default: the model's
       current parameters). eval_mode: run in eval mode (default) or keep train mode.
    Other arguments as in ``tms.llc.estimator.estimate_llc``; returns an LLCResult with C = ().
    """
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    llc.check_sgld_args(nbeta, eps, gamma, n_chains, n_burnin, n_draws, batch_size)
    x, y = _check_data(data)
    params = _centre(model, centre)
    _check_match(params, dict(model.named_buffers()), x, y)
    was_training = model.training
    model.train(not eval_mode)
    try:
        grad_fn, batch_grad_fn, centre_loss, theta0 = _grad_fns(model, loss_fn, params, x, y, batch_size, eval_mode)
        settings = dict(loss="empirical", batch_size=batch_size, n=int(x.shape[0]), model=type(model).__name__,
                        eval_mode=eval_mode)
        return llc.sample_llc(theta0, grad_fn, centre_loss, nbeta=nbeta, eps=eps, gamma=gamma, n_chains=n_chains,
                              n_burnin=n_burnin, n_draws=n_draws, seed=seed, keys=keys,
                              batch_grad_fn=batch_grad_fn, progress=progress, settings=settings)
    finally:
        model.train(was_training)
