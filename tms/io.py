"""Saving results: arrays in .npz plus a JSON record of every setting and seed.

Writes are atomic (temp file + rename) so an interrupted run never leaves half a file,
and sweeps can skip points already on disk (DESIGN.md: resumable long work).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, torch.dtype):
        return str(x)
    return x


def save_json(path: str | os.PathLike, record: dict) -> None:
    text = json.dumps(_jsonable(record), indent=2, sort_keys=True).encode()
    _atomic_write(Path(path), lambda f: f.write(text))


def load_json(path: str | os.PathLike) -> dict:
    with open(path) as f:
        return json.load(f)


def save_result(path: str | os.PathLike, arrays: dict[str, Any], record: dict) -> None:
    """Write `path`.npz (arrays) and `path`.json (settings, seeds, scalars) atomically.

    The JSON is written last, so its presence marks a finished result.
    """
    path = Path(path)
    np_arrays = {k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v))
                 for k, v in arrays.items()}
    _atomic_write(path.with_suffix(".npz"), lambda f: np.savez(f, **np_arrays))
    save_json(path.with_suffix(".json"), record)


def result_exists(path: str | os.PathLike) -> bool:
    path = Path(path)
    return path.with_suffix(".json").exists() and path.with_suffix(".npz").exists()


def load_result(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """Inverse of save_result: (arrays as numpy, record)."""
    path = Path(path)
    with np.load(path.with_suffix(".npz"), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return arrays, load_json(path.with_suffix(".json"))
