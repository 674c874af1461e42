"""tms: phase transitions in the Toy Model of Superposition, seen through SLT.

Parameters everywhere are ``W: (..., r, c)`` and ``b: (..., c)`` with any leading
batch dims (docs/ARCHITECTURE.md). The loss is the unhalved squared error (docs/SPEC.md section 1).
"""
from tms.theory.model import forward, init_params, Params
from tms.theory.data import sample_inputs, sample_inputs_sparse
from tms.theory.loss import (
    population_loss,
    empirical_loss,
    SortedData,
    sorted_data,
    empirical_loss_sorted,
    empirical_loss_and_grad_sorted,
    population_loss_and_grad,
    loss_and_grad_flat,
    batched_grad,
    batched_hessian,
)

__all__ = [
    "forward", "init_params", "Params",
    "sample_inputs", "sample_inputs_sparse",
    "population_loss", "empirical_loss", "SortedData", "sorted_data",
    "empirical_loss_sorted", "empirical_loss_and_grad_sorted", "population_loss_and_grad",
    "loss_and_grad_flat", "batched_grad", "batched_hessian",
]
from tms.core._version import __version__  # noqa: E402
