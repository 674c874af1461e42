"""A sweep chunk's state as a result (tms.core.io): every array in the .npz, the shape of the
state (nested dicts, lists, the samplers' NamedTuples, numbers, strings) as JSON beside them.

    arrays, layout = flatten(state)      # state -> ({"a0": array, ...}, JSON-ready layout)
    state = unflatten(layout, arrays, device)

Tensors keep their dtype and come back on `device`; numpy arrays and numpy scalars stay
numpy; Python numbers, strings, None and bools pass through the JSON unchanged (floats
round-trip exactly). A NamedTuple must be one of NAMED, so loading builds only known types.
"""
from __future__ import annotations

import numpy as np
import torch

from tms.samplers import rounds, tempering

NAMED = {cls.__name__: cls for cls in (tempering.SamplerState, tempering.Warmup, tempering.Sampled, rounds.Chains,
                                        rounds.DualAverage)}


def flatten(state) -> tuple[dict[str, np.ndarray], object]:
    """(arrays, layout) of a state (see the module docstring)."""
    arrays: dict[str, np.ndarray] = {}
    return arrays, _flatten(state, arrays)


def _array(x, arrays: dict, kind: str) -> dict:
    name = f"a{len(arrays)}"
    arrays[name] = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return {kind: name}


def _flatten(x, arrays: dict):
    if isinstance(x, torch.Tensor):
        return _array(x, arrays, "tensor")
    if isinstance(x, np.ndarray):
        return _array(x, arrays, "ndarray")
    if isinstance(x, np.generic):
        return _array(x, arrays, "scalar")
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        if type(x).__name__ not in NAMED:
            raise TypeError(f"checkpoint: unknown NamedTuple {type(x).__name__}")
        return {"named": type(x).__name__, "items": [_flatten(v, arrays) for v in x]}
    if isinstance(x, (list, tuple)):
        return {"list" if isinstance(x, list) else "tuple": [_flatten(v, arrays) for v in x]}
    if isinstance(x, dict):
        return {"dict": [[k, _flatten(v, arrays)] for k, v in x.items()]}
    if x is None or isinstance(x, (bool, int, float, str)):
        return {"value": x}
    raise TypeError(f"checkpoint: cannot save a {type(x).__name__}")


def unflatten(layout: dict, arrays: dict[str, np.ndarray], device=None):
    """The state saved by flatten, its tensors on `device`."""
    if "named" in layout:
        return NAMED[layout["named"]](*(unflatten(item, arrays, device) for item in layout["items"]))
    (kind, v), = layout.items()
    if kind == "tensor":
        return torch.from_numpy(np.array(arrays[v])).to(device)
    if kind == "ndarray":
        return np.array(arrays[v])
    if kind == "scalar":
        return arrays[v][()]
    if kind in ("list", "tuple"):
        items = [unflatten(item, arrays, device) for item in v]
        return items if kind == "list" else tuple(items)
    if kind == "dict":
        return {k: unflatten(item, arrays, device) for k, item in v}
    return v
