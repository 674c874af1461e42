"""Input validation shared by every module: one ValueError that names the argument.

DESIGN.md: bad shapes, n < 1, r > c, NaN parameters and nonsensical hyperparameters raise a
ValueError saying what was wrong and what was expected.
"""
from __future__ import annotations

import errno
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch


def tensor(x, name: str, *, min_dim: int = 0, finite: bool = True) -> torch.Tensor:
    """Check that ``x`` is a floating torch tensor with at least ``min_dim`` dims."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not torch.is_floating_point(x):
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dims, got shape {tuple(x.shape)}")
    if finite and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf; expected finite values")
    return x


def params(W, b) -> tuple[torch.Tensor, torch.Tensor]:
    """Check a (W, b) pair: W (..., r, c), b (..., c), finite, same dtype, r, c >= 1."""
    tensor(W, "W", min_dim=2)
    tensor(b, "b", min_dim=1)
    r, c = W.shape[-2:]
    if r < 1 or c < 1:
        raise ValueError(f"W must have shape (..., r, c) with r, c >= 1, got {tuple(W.shape)}")
    if b.shape[-1] != c:
        raise ValueError(
            f"b must have shape (..., c) with c = {c} matching W (..., r, c); got b {tuple(b.shape)}"
        )
    try:
        torch.broadcast_shapes(W.shape[:-2], b.shape[:-1])
    except RuntimeError:
        raise ValueError(
            f"batch dims of W {tuple(W.shape[:-2])} and b {tuple(b.shape[:-1])} do not broadcast"
        ) from None
    if W.dtype != b.dtype:
        raise ValueError(f"W and b must share a dtype, got {W.dtype} and {b.dtype}")
    return W, b


def positive_int(x, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    """An int (not a bool) in [minimum, maximum]; the message states the bound."""
    bad = isinstance(x, bool) or not isinstance(x, (int, np.integer))
    if bad or x < minimum or (maximum is not None and x > maximum):
        bound = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ValueError(f"{name} must be an integer {bound}, got {x!r}")
    return int(x)


def positive_float(x, name: str, *, allow_zero: bool = False, maximum: float | None = None) -> float:
    """A finite number > 0 (>= 0 with allow_zero), at most `maximum` if given."""
    if isinstance(x, bool):
        raise ValueError(f"{name} must be a number, got {x!r}")
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {x!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero) or (maximum is not None and v > maximum):
        bound = ">= 0" if allow_zero else "> 0"
        bound += "" if maximum is None else f" and <= {maximum:g}"
        raise ValueError(f"{name} must be a finite number {bound}, got {x!r}")
    return v


MAX_SEED = 2**63 - 1


def seed(x, name: str = "seed") -> int:
    """A seed: an integer in [0, 2^63 - 1] (negative seeds are refused, never wrapped)."""
    return positive_int(x, name, minimum=0, maximum=MAX_SEED)


def threads(x, name: str = "--threads") -> int | None:
    """A torch thread count: None (leave torch's choice) or an integer in [1, 1024]."""
    return None if x is None else positive_int(x, name, minimum=1, maximum=1024)


def generator(g, name: str = "generator") -> torch.Generator:
    if isinstance(g, int) and not isinstance(g, bool):
        gen = torch.Generator()
        gen.manual_seed(seed(g, f"{name} (an int seed)"))
        return gen
    if not isinstance(g, torch.Generator):
        raise ValueError(f"{name} must be a torch.Generator or an int seed, got {type(g).__name__}")
    return g


# ---- output paths: checked before any long work starts -------------------------------------

FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".eps", ".ps", ".tif", ".tiff", ".webp")


def _probe_dir(d, name: str) -> None:
    """ValueError unless files can be created in the directory `d` (or in the nearest
    existing folder above it, where the missing folders would be made). A probe file is
    created and removed at once: os.access alone says yes to root on a read-only mount."""
    d = Path(d)
    a = d
    while not a.exists() and a != a.parent:
        if a.is_symlink():  # a dangling link: mkdir would fail
            raise ValueError(f"{name}: {a} is a broken symbolic link")
        a = a.parent
    if not a.is_dir():
        raise ValueError(f"{name}: cannot write under {d}: {a} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=a, prefix=".tms-write-probe-")
    except OSError as err:
        why = "read-only file system" if err.errno == errno.EROFS else (err.strerror or str(err)).lower()
        raise ValueError(f"{name}: cannot write in {a} ({why})") from None
    os.close(fd)
    os.unlink(probe)


def output_file(path, name: str, *, suffixes: tuple[str, ...] | None = None):
    """A file the run will write (a figure, a log): a writable folder, not an existing folder,
    and (if `suffixes`) one of those suffixes. Returns it as a Path."""
    if path is None or str(path).strip() == "":
        raise ValueError(f"{name} must be a file path, got {path!r}")
    p = Path(path)
    if suffixes is not None and p.suffix.lower() not in suffixes:
        raise ValueError(f"{name} must end in one of {', '.join(suffixes)}, got {str(path)!r}")
    if p.is_dir():
        raise ValueError(f"{name}: {p} is a folder; expected a file path")
    if p.exists() and not _writable_file(p):
        raise ValueError(f"{name}: {p} exists and is not writable")
    _probe_dir(p.parent, name)
    return p


def _writable_file(p) -> bool:
    try:
        with open(p, "ab"):
            pass
    except OSError:
        return False
    return os.access(p, os.W_OK)


def output_stem(path, name: str):
    """A result path of tms.io (written as PATH.npz + PATH.json): its folder must be writable
    and neither file may be a folder. Returns it as a Path."""
    if path is None or str(path).strip() == "":
        raise ValueError(f"{name} must be a result path, got {path!r}")
    stem = Path(path)
    for f in (stem.with_suffix(".npz"), stem.with_suffix(".json")):  # the files tms.io writes
        if f.is_dir():
            raise ValueError(f"{name}: {f} is a folder; expected a result path (PATH.npz + PATH.json)")
    _probe_dir(stem.parent, name)
    return stem


def output_dir(path, name: str):
    """A folder the run will create or fill: writable, not an existing file. Returns a Path."""
    if path is None or str(path).strip() == "":
        raise ValueError(f"{name} must be a folder path, got {path!r}")
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"{name}: {p} is a file; expected a folder")
    _probe_dir(p, name)
    return p
