"""Input validation shared by every module: one ValueError that names the argument.

The lab's convention: bad shapes, n < 1, r > c, NaN parameters and nonsensical hyperparameters raise a
ValueError saying what was wrong and what was expected.
"""
from __future__ import annotations

import contextlib
import errno
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from tms.core import io


FLOAT_DTYPES = (torch.float32, torch.float64)  # the lab computes in these; half precision loses the loss's digits


def tensor(x, name: str, *, min_dim: int = 0, finite: bool = True) -> torch.Tensor:
    """Check that ``x`` is a float32 or float64 torch tensor holding data (not on the 'meta'
    device) with at least ``min_dim`` dims, finite unless finite=False."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be a float32 or float64 tensor, got dtype {x.dtype}"
                         + (" (half precision loses the loss's digits)" if x.is_floating_point() else ""))
    if x.device.type == "meta":
        raise ValueError(f"{name} is on the 'meta' device (shapes only, no values); expected a tensor on cpu, "
                         "cuda or mps")
    if x.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dims, got shape {tuple(x.shape)}")
    if finite and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf; expected finite values")
    return x


def params(W, b, *, finite: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Check a (W, b) pair: W (..., r, c), b (..., c), finite (unless finite=False: no device
    sync, for functions on a hot path), same dtype and device, r, c >= 1."""
    tensor(W, "W", min_dim=2, finite=finite)
    tensor(b, "b", min_dim=1, finite=finite)
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
    if W.device != b.device:
        raise ValueError(f"W and b must be on one device, got {W.device} and {b.device}")
    return W, b


def nonempty_batch(shape, name: str, what: str = "centres") -> int:
    """The number of items in the batch dims `shape` (a torch.Size or tuple), at least one:
    ValueError for an empty batch, e.g. W of shape (0, 2, 6) holds 0 centres."""
    count = math.prod(shape)
    if count < 1:
        raise ValueError(f"{name} holds 0 {what} (batch shape {tuple(shape)}); expected at least one")
    return count


def same_dtype(x: torch.Tensor, name: str, ref: torch.Tensor, ref_name: str) -> torch.Tensor:
    """x in ref's dtype, or a ValueError naming both (no silent casts between float32 and float64)."""
    if x.dtype != ref.dtype:
        raise ValueError(f"{name} ({x.dtype}) must have the dtype of {ref_name} ({ref.dtype})")
    return x


def positive_int(x, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    """An int (not a bool) in [minimum, maximum]; the message states the bound."""
    bad = isinstance(x, bool) or not isinstance(x, (int, np.integer))
    if bad or x < minimum or (maximum is not None and x > maximum):
        bound = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ValueError(f"{name} must be an integer {bound}, got {x!r}")
    return int(x)


def whole_number(x, name: str, minimum: int = 1) -> int:
    """An integer >= minimum, given as an int or an integral float (200.0; 200.5 is refused,
    never truncated)."""
    if isinstance(x, (float, np.floating)) and math.isfinite(x) and float(x).is_integer():
        x = int(x)
    return positive_int(x, name, minimum=minimum)


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
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or not 0 <= x <= MAX_SEED:
        raise ValueError(f"{name} must be a non-negative integer (0 .. 2^63 - 1), got {x!r}")
    return int(x)


def scale(x, allowed=("quick", "full"), name: str = "scale") -> str:
    """One of the lab's scales (quick: minutes on a laptop; full: the paper's settings)."""
    if x not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {x!r}")
    return x


def threads(x, name: str = "--threads") -> int | None:
    """A thread count: None (the default: every core for the compiled kernels, torch's own
    choice) or an integer in [1, 1024]."""
    return None if x is None else positive_int(x, name, minimum=1, maximum=1024)


_KERNEL_THREADS: list = [None]  # threads of the compiled kernels now (None: every core)
_RESERVED: list = [0]  # threads left to a process computing beside this one (reserve_threads)


def kernel_threads() -> int | None:
    """Threads the compiled kernels (tms.samplers.compiled) may use now (None: every core), less
    those reserved for a process computing beside this one (`reserve_threads`)."""
    k = _KERNEL_THREADS[0]
    return k if not _RESERVED[0] else max(1, (k if k is not None else _all_cores()) - _RESERVED[0])


def reserve_threads(k: int) -> None:
    """Leave k threads of the run's count to a process computing beside this one (0: none);
    any thread may call it (a lane's end releases its thread from a pool's result thread)."""
    _RESERVED[0] = k


def _all_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cores() -> int:
    """Threads a run may use now: its count (kernel_threads), else every core this process may run on."""
    k = kernel_threads()
    return k if k is not None else _all_cores()


@contextlib.contextmanager
def kernel_threads_set(k: int | None):
    """The compiled kernels use k threads inside the block (None: the enclosing block's count,
    every core at the top, so a run called inside another keeps its limit); restored after."""
    before = _KERNEL_THREADS[0]
    if k is not None:
        _KERNEL_THREADS[0] = k
    try:
        yield
    finally:
        _KERNEL_THREADS[0] = before


@contextlib.contextmanager
def torch_threads(k: int | None, torch_cap: int | None = None):
    """A run's threads inside the block: the compiled kernels use k (None: the enclosing run's,
    every core at the top); torch uses k capped at torch_cap (e.g. 1 where its work is many
    small ops: its idle OpenMP threads would spin on the cores the compiled kernels use), else
    its own choice. The caller's counts are restored. Results do not depend on either count."""
    before = torch.get_num_threads()
    want = k if torch_cap is None else torch_cap if k is None else min(k, torch_cap)
    if want is not None:
        torch.set_num_threads(want)
    try:
        with kernel_threads_set(k):
            yield
    finally:
        torch.set_num_threads(before)


def generator(g, name: str = "generator") -> torch.Generator:
    if isinstance(g, int) and not isinstance(g, bool):
        gen = torch.Generator()
        gen.manual_seed(seed(g, f"{name} (an int seed)"))
        return gen
    if not isinstance(g, torch.Generator):
        raise ValueError(f"{name} must be a torch.Generator or an int seed, got {type(g).__name__}")
    return g


def warn(message: str) -> None:
    """A one-line warning on stderr (the run goes on)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


# ---- bounds of the options that size a run (stated in every command's --help) -------------

MAX_N = 10**7  # data-set size (memory: n * c floats per data set)
MAX_STEPS = 10**7  # sampler steps per chain
MAX_CHAINS = 10**5  # chains per centre or data set
MAX_EPS = 1.0  # SGLD step size: beyond it the Langevin noise dwarfs every TMS parameter
WARN_EPS = 1e-2  # SGLD step sizes above this rarely pass the step-size check on the TMS


def sgld_hyper(eps, gamma, *, eps_name: str = "--eps", gamma_name: str = "--gamma") -> list[str]:
    """Check SGLD's step size and localisation; return warnings for legal but dubious values."""
    positive_float(eps, eps_name, maximum=MAX_EPS)
    positive_float(gamma, gamma_name, allow_zero=True)
    notes = []
    if eps > WARN_EPS:
        notes.append(f"{eps_name} {eps:g} is large for SGLD on the TMS (typical 1e-4 .. 1e-3); expect the "
                     "estimate to be flagged STEP-TOO-LARGE and meaningless")
    if gamma == 0:
        notes.append(f"{gamma_name} 0: no localisation, chains may leave the centre w*; the estimate is then not "
                     "a local learning coefficient (the flags do not catch this)")
    return notes


# ---- output paths: checked before any long work starts -------------------------------------

FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".eps", ".ps", ".tif", ".tiff", ".webp")


def _probe_dir(d, name: str) -> None:
    """ValueError unless files can be created in the directory `d` (or in the nearest
    existing folder above it, where the missing folders would be made). A probe file is
    created and removed at once: os.access alone says yes to root on a read-only mount,
    and root ignores permission bits, so only trying tells."""
    d = Path(d)
    a = d
    while not a.exists() and a != a.parent:
        if a.is_symlink():  # a dangling link: mkdir would fail
            raise ValueError(f"{name}: {a} is a broken symbolic link")
        a = a.parent
    if not a.is_dir():
        raise ValueError(f"{name}: cannot write under {d}: {a} is a file, not a folder")
    try:  # an unnamed file where the OS allows (O_TMPFILE): nothing is left even if killed here
        with tempfile.TemporaryFile(dir=a, prefix=".tms-write-probe-"):
            pass
    except OSError as err:
        why = {errno.EROFS: "read-only file system", errno.EACCES: "permission denied", errno.EPERM: "not permitted",
               errno.ENOENT: "this file system takes no new files"}.get(err.errno, (err.strerror or str(err)).lower())
        shown = a.absolute() if not a.is_absolute() else a
        raise ValueError(f"{name}: cannot write in {shown} ({why})") from None


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
    """A result path of tms.core.io (written as PATH.npz + PATH.json): its folder must be writable
    and neither file may be a folder. Returns it as a Path."""
    if path is None or str(path).strip() == "":
        raise ValueError(f"{name} must be a result path, got {path!r}")
    stem = Path(path)
    if stem.is_dir():
        raise ValueError(f"{name}: {stem} is a folder; expected a result path inside it, e.g. {stem / 'result'}")
    for f in (stem.with_suffix(".npz"), stem.with_suffix(".json")):  # the files tms.core.io writes
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


# ---- records loaded from disk: kind, keys, shapes, dtypes ----------------------------------

_KINDS = {"f": "floating-point", "i": "integer", "u": "integer", "b": "boolean"}


def _check_array(a: np.ndarray, key: str, spec: tuple, where) -> None:
    ndims, kinds = spec
    if a.dtype.kind not in kinds:
        want = " or ".join(sorted({_KINDS[k] for k in kinds}))
        raise ValueError(f"{where}: array {key} must be {want}, got dtype {a.dtype}")
    if ndims is not None and a.ndim not in ndims:
        raise ValueError(f"{where}: array {key} must have {' or '.join(map(str, ndims))} dims, got shape {a.shape}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError(f"{where}: array {key} contains NaN or inf")


def result_stem(path) -> Path:
    p = Path(str(path))
    return p.with_suffix("") if p.suffix in (".npz", ".json") else p


def result_file(path, name: str, *, what: str = "result", arrays: dict | None = None,
                optional: dict | None = None, keys: tuple = (), hint: str = ""):
    """Load a tms.core.io result the user named (PATH, PATH.npz or PATH.json) and check that it is
    intact (tms.core.io.check_result) and holds `keys` in its JSON record and `arrays` (name ->
    (allowed ndims or None, dtype kinds, e.g. "f" or "iu")), `optional` ones checked when
    present. ValueError naming the file and what is missing. Returns (arrays, record)."""
    stem = result_stem(path)
    npz, js = stem.with_suffix(".npz"), stem.with_suffix(".json")
    if not npz.exists() and not js.exists():
        raise ValueError(f"{name}: no {what} at {stem} (no file {npz} or {js}){hint}")
    problem = io.check_result(stem)
    if problem is not None:
        raise ValueError(f"{name}: {problem}")
    data, record = io.load_result(stem)
    missing = [k for k in keys if k not in record]
    if missing:
        raise ValueError(f"{name}: {js} is not a {what}: its record lacks {', '.join(map(repr, missing))}")
    need = arrays or {}
    lacking = [k for k in need if k not in data]
    if lacking:
        raise ValueError(f"{name}: {npz} is not a {what}: it lacks array(s) {', '.join(lacking)} "
                         f"(has {', '.join(sorted(data)) or 'none'})")
    for key, spec in {**(optional or {}), **need}.items():
        if key in data:
            _check_array(data[key], key, spec, f"{name}: {npz}")
    return data, record


_FLOAT, _INT = "f", "iu"
CHECKPOINT_ARRAYS = dict(W=(None, _FLOAT), b=(None, _FLOAT))
CHECKPOINT_OPTIONAL = dict(X=(None, _FLOAT), steps=((1,), _INT))


def checkpoints_result(path, name: str = "--checkpoints"):
    """Saved parameters for `tms llc`: W (..., r, c), b (..., c), optionally X (..., n, c) and
    steps (T,) matching W's first dim; shapes must agree."""
    data, rec = result_file(path, name, what="checkpoints result (W, b arrays)", arrays=CHECKPOINT_ARRAYS,
                            optional=CHECKPOINT_OPTIONAL, hint="; e.g. a `tms train --out PATH` result")
    W, b = data["W"], data["b"]
    if W.ndim < 2 or b.ndim < 1 or b.shape[-1] != W.shape[-1] or W.shape[-2] > W.shape[-1] or 0 in W.shape:
        raise ValueError(f"{name}: W must be (..., r, c) with 1 <= r <= c and b (..., c); got W {W.shape}, b {b.shape}")
    try:
        np.broadcast_shapes(W.shape[:-2], b.shape[:-1])
    except ValueError:
        raise ValueError(f"{name}: batch dims of W {W.shape} and b {b.shape} do not broadcast") from None
    if "X" in data and (data["X"].ndim < 2 or data["X"].shape[-1] != W.shape[-1] or data["X"].shape[-2] < 1):
        raise ValueError(f"{name}: X must be (..., n, c) with c = {W.shape[-1]}, got {data['X'].shape}")
    return data, rec


def device(x, name: str = "--device") -> torch.device:
    """A torch device that exists here ('cpu', 'cuda', 'cuda:1', 'mps'; None: the CPU), or a clear error."""
    try:
        dev = torch.device("cpu" if x is None else str(x))
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{name} must name a torch device such as cpu or cuda, got {x!r}") from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()}
    if not available.get(dev.type, False):
        raise ValueError(f"{name} {x!r}: no such device on this machine (cpu is always there)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"{name} {x!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev
