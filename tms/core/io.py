"""Saving results: arrays in .npz plus a JSON record of every setting and seed.

Writes are atomic (temp file, fsync, rename) so a run killed at any moment, even by
SIGKILL, leaves the previous file or the new one, never half a file; temp files a killed
write left behind are removed by the next write of the same file. A result is a pair
PATH.npz + PATH.json: the .npz is written first and holds the SHA-256 of the .json text
beside it (array FORMAT_KEY), the .json last, so a pair from two different writes (a kill
between the two renames) or a damaged file is detected (`check_result`), reported as not
finished by `result_exists`, and recomputed rather than trusted. Sweeps skip points already
on disk (resumable long work).

Provenance: every record save_result writes carries a "provenance" entry (package version,
git commit where there is one, torch version and threads, device). Comparisons of a saved
record with fresh settings (`same_settings`, `identity`) ignore it except the package
version. Every result written by this process is listed in `written()` (what an interrupted
command reports as kept).
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import json
import os
import subprocess
import tempfile
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from tms.core._version import __version__


FORMAT = 2  # 1: no checksum (still read); 2: the .npz holds the .json's SHA-256
FORMAT_KEY = "__tms_io__"  # reserved array name of the format record in every .npz
PROVENANCE_KEY = "provenance"  # record entry save_result adds (see module docstring)

_DEVICE: contextvars.ContextVar[str | None] = contextvars.ContextVar("tms_io_device", default=None)
_KIND: contextvars.ContextVar[str | None] = contextvars.ContextVar("tms_io_kind", default=None)
_WRITTEN: list[Path] = []  # result stems written by this process, in order


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the checkout the package runs from, or None (no git, not a checkout)."""
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                              capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    text = proc.stdout.strip()
    return text if proc.returncode == 0 and len(text) == 40 else None


def package_version() -> str:
    return __version__


@contextlib.contextmanager
def recording_device(device):
    """Within the block, records saved without an explicit device name this one."""
    token = _DEVICE.set(None if device is None else str(device))
    try:
        yield
    finally:
        _DEVICE.reset(token)


@contextlib.contextmanager
def recording_kind(kind: str):
    """Within the block, records saved name `kind` (the command that made them: "train",
    "llc", ...) in their provenance, so a later command can tell what a path holds
    (`record_kind`, `output_problem`)."""
    token = _KIND.set(str(kind))
    try:
        yield
    finally:
        _KIND.reset(token)


def provenance(device=None, arrays: dict | None = None) -> dict:
    """What made a result: package version, git commit (None without git), torch version and
    threads (those in force when it is saved), device (given; else the one set by
    `recording_device`; else that of the first tensor in `arrays`; else cpu), and the kind
    set by `recording_kind` (absent outside one)."""
    if device is None:
        device = _DEVICE.get()
    if device is None:
        device = next((str(v.device) for v in (arrays or {}).values() if isinstance(v, torch.Tensor)), "cpu")
    prov = dict(package_version=package_version(), git_commit=git_commit(), torch_version=torch.__version__,
                torch_threads=torch.get_num_threads(), device=str(device))
    if _KIND.get() is not None:
        prov["kind"] = _KIND.get()
    return prov


def identity(record: Any) -> Any:
    """`record` as JSON without provenance entries (at any depth), for comparisons: only the
    package version of a provenance entry is kept (as "package_version")."""
    if isinstance(record, dict):
        out = {k: identity(v) for k, v in record.items() if k != PROVENANCE_KEY}
        prov = record.get(PROVENANCE_KEY)
        if isinstance(prov, dict):
            out["package_version"] = prov.get("package_version")
        return out
    if isinstance(record, list):
        return [identity(v) for v in record]
    return jsonable(record)


def same_settings(saved: Any, settings: Any) -> bool:
    """Was `saved` (a loaded record or its settings) made with `settings` and this package
    version? Provenance other than the version is ignored."""
    prov = saved.get(PROVENANCE_KEY) if isinstance(saved, dict) else None
    if isinstance(prov, dict) and prov.get("package_version") != package_version():
        return False
    strip = identity(saved)
    if isinstance(strip, dict):
        strip.pop("package_version", None)
    fresh = identity(jsonable(settings))
    if isinstance(fresh, dict):
        fresh.pop("package_version", None)
    return strip == fresh


def written() -> list[Path]:
    """Result stems (path without suffix) save_result wrote in this process, oldest first."""
    return list(_WRITTEN)


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def remove_temp_files(path: str | os.PathLike) -> None:
    """Remove temp files that interrupted writes of `path` left beside it."""
    path = Path(path)
    for tmp in path.parent.glob(f"{_temp_prefix(path)}*.tmp"):
        tmp.unlink(missing_ok=True)


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_temp_files(path)  # one writer per file: leftovers are from a killed write
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def jsonable(x: Any) -> Any:
    """x as JSON values: tensors and arrays as lists, settings objects as their record."""
    if hasattr(x, "as_record"):  # a tms.core.settings.Settings
        return x.as_record()
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, torch.dtype):
        return str(x)
    return x


def _json_bytes(record: dict) -> bytes:
    return json.dumps(jsonable(record), indent=2, sort_keys=True).encode()


def save_json(path: str | os.PathLike, record: dict) -> None:
    text = _json_bytes(record)
    _atomic_write(Path(path), lambda f: f.write(text))


def load_json(path: str | os.PathLike) -> dict:
    """The JSON in `path`; ValueError naming the file if it is missing or not valid JSON."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        raise ValueError(f"no file {path}") from None
    except IsADirectoryError:
        raise ValueError(f"{path} is a folder, not a JSON file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON (truncated or damaged?): {err}") from None


def save_result(path: str | os.PathLike, arrays: dict[str, Any], record: dict, *, device=None) -> None:
    """Write `path`.npz (arrays) and `path`.json (settings, seeds, scalars) atomically.

    The JSON is written last, so its presence marks a finished result; the .npz carries the
    JSON's checksum, so a pair torn by a kill between the two writes is detected. The record
    gets a "provenance" entry (see `provenance`; device as there).
    """
    path = Path(path)
    if FORMAT_KEY in arrays:
        raise ValueError(f"array name {FORMAT_KEY!r} is reserved by tms.core.io")
    record = {**record, PROVENANCE_KEY: provenance(device, arrays)}
    np_arrays = {k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v))
                 for k, v in arrays.items()}
    text = _json_bytes(record)
    meta = json.dumps(dict(format=FORMAT, json_sha256=hashlib.sha256(text).hexdigest()))
    np_arrays[FORMAT_KEY] = np.array(meta)
    _atomic_write(path.with_suffix(".npz"), lambda f: np.savez(f, **np_arrays))
    _atomic_write(path.with_suffix(".json"), lambda f: f.write(text))
    _WRITTEN.append(path)


def json_digest(path: str | os.PathLike) -> str | None:
    """SHA-256 of `path`.json (the checksum its .npz carries), or None if unreadable."""
    try:
        return hashlib.sha256(Path(path).with_suffix(".json").read_bytes()).hexdigest()
    except OSError:
        return None


def check_result(path: str | os.PathLike) -> str | None:
    """None if `path`.npz and `path`.json are one finished, intact result; else what is wrong."""
    path = Path(path)
    npz, js = path.with_suffix(".npz"), path.with_suffix(".json")
    for f in (npz, js):
        if not f.is_file():
            return f"no file {f}"
    try:
        text = js.read_bytes()
        if not isinstance(json.loads(text), dict):
            return f"{js} holds no JSON object (not a tms record)"
    except (OSError, ValueError) as err:  # JSONDecodeError, UnicodeDecodeError are ValueErrors
        return f"{js} is truncated or damaged ({type(err).__name__}: {err})"
    try:
        with zipfile.ZipFile(npz) as z:
            bad = z.testzip()  # reads every member and checks its CRC
        if bad is not None:
            return f"{npz} is damaged (member {bad} fails its checksum)"
        with np.load(npz, allow_pickle=False) as z:
            meta = json.loads(str(z[FORMAT_KEY])) if FORMAT_KEY in z.files else None
    except Exception as err:  # noqa: BLE001 - BadZipFile, EOFError, zlib/struct errors: any is damage
        return f"{npz} is truncated or damaged ({type(err).__name__}: {err})"
    if meta is None:
        return None  # format 1: written before checksums, nothing more to check
    return _check_meta(meta, text, npz, js)


def _check_meta(meta, text: bytes, npz: Path, js: Path) -> str | None:
    if not isinstance(meta, dict) or not isinstance(meta.get("format"), int):
        return f"{npz} has a damaged format record ({FORMAT_KEY})"
    if meta["format"] > FORMAT:
        return f"{npz} was written by a newer tms (format {meta.get('format')}; this one reads <= {FORMAT})"
    if meta.get("json_sha256") != hashlib.sha256(text).hexdigest():
        return f"{npz} and {js} are from different writes (an interrupted save); the result must be recomputed"
    return None


def result_exists(path: str | os.PathLike) -> bool:
    """Is there a finished, intact result at `path` (see check_result)?"""
    return check_result(path) is None


def remove_result(path: str | os.PathLike) -> None:
    """Delete the result at `path` (its .json first, so a kill in between leaves no finished
    result) and forget that this process wrote it (an interrupted command does not name it)."""
    path = Path(path)
    for suffix in (".json", ".npz"):
        path.with_suffix(suffix).unlink(missing_ok=True)
    _WRITTEN[:] = [p for p in _WRITTEN if Path(p) != path]


def load_result(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """Inverse of save_result: (arrays as numpy, record). ValueError naming the file if the
    result is missing, truncated, damaged or torn (see check_result)."""
    path = Path(path)
    problem = check_result(path)
    if problem is not None:
        raise ValueError(problem)
    with np.load(path.with_suffix(".npz"), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != FORMAT_KEY}
    return arrays, load_json(path.with_suffix(".json"))


def reuse_problem(path: str | os.PathLike, settings: Any, key: str | None = "settings") -> str | None:
    """The one rule for reusing a saved result: None when the result at `path` may be reused
    for `settings`, else why not (one line). Reusable means: intact files (check_result), made
    by this package version (its provenance), and the same settings: record[key] (the whole
    record when key is None) equals `settings` (a Settings object, a dict, any JSON value)
    once provenance is ignored. Every sweep, stage and cache calls this."""
    problem = check_result(path)
    if problem is not None:
        return problem
    rec = load_json(Path(path).with_suffix(".json"))
    prov = rec.get(PROVENANCE_KEY)
    version = prov.get("package_version") if isinstance(prov, dict) else None
    if version != package_version():
        return f"{Path(path).with_suffix('.json')} was made by tms {version}, this is {package_version()}"
    saved = rec if key is None else rec.get(key)
    if not same_settings(saved, settings):
        return f"{Path(path).with_suffix('.json')} holds a result with other settings"
    return None



def _stem(path: str | os.PathLike) -> Path:
    """`path` without a result suffix (.npz / .json), absolute, for comparing result paths."""
    p = Path(path)
    return (p.with_suffix("") if p.suffix in (".npz", ".json") else p).resolve()


def saved_record(path: str | os.PathLike) -> dict | None:
    """The JSON record at `path`.json when there is one that parses to an object, else None."""
    js = _stem(path).with_suffix(".json")
    try:
        rec = json.loads(js.read_bytes())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def record_kind(record: dict) -> str | None:
    """The kind a record names in its provenance (see `recording_kind`), or None."""
    prov = record.get(PROVENANCE_KEY)
    return prov.get("kind") if isinstance(prov, dict) else None


def settings_changes(saved: Any, settings: dict, prefix: str = "") -> list[str]:
    """'name: saved -> given' for every entry of `settings` (a dict, or a Settings object) whose
    value differs from `saved`'s (a dict; entries it has beyond `settings` are ignored); nested
    records are compared entry by entry ('settings.n_chains: 2 -> 3')."""
    given = identity(jsonable(settings))
    saved = saved if isinstance(saved, dict) else {}
    out = []
    for name, value in given.items():
        if name not in saved:
            out.append(f"{prefix}{name}: (none) -> {_short(value)}")
            continue
        old = identity(saved[name])
        if isinstance(old, dict) and isinstance(value, dict):
            out += settings_changes(old, value, f"{prefix}{name}.")
        elif old != value:
            out.append(f"{prefix}{name}: {_short(old)} -> {_short(value)}")
    return out


def _short(value: Any, width: int = 40) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= width else text[: width - 3] + "..."


class OutputProblem(NamedTuple):
    """Why a result may not be written at a path (one line), and whether --force may override it."""

    why: str
    overridable: bool


def _entry(record: dict, key: str | tuple | None) -> Any:
    """record[key]; a tuple of keys walks nested records; None: the whole record."""
    for k in (() if key is None else (key,) if isinstance(key, str) else key):
        record = record.get(k) if isinstance(record, dict) else None
    return record


def output_problem(path: str | os.PathLike, kind: str, settings: dict | None = None, *, key: str | tuple | None = "settings",
                   inputs: tuple = ()) -> OutputProblem | None:
    """Would saving a `kind` result made with `settings` at `path` destroy another result? None
    when not (nothing there, a damaged pair that is recomputed anyway, or a `kind` record with
    these settings: record[key] (nested keys: a tuple; the whole record: None), compared on
    the entries of `settings` only); else (why, one line; whether --force may override it). An input of
    the command (`inputs`, result paths) or a record of another kind is never overridden (a
    record naming no kind counts as another kind when its settings lack entries of
    `settings`); other settings of the same kind may be, explicitly."""
    stem = _stem(path)
    if any(stem == _stem(p) for p in inputs if p is not None):
        return OutputProblem(f"{stem} is also this command's input; an input is never its own output", False)
    rec = saved_record(stem)
    if rec is None:
        return None
    found = record_kind(rec)
    if found is not None and found != kind:
        return OutputProblem(f"{stem} holds a `tms {found}` result, not a `tms {kind}` one; choose another path", False)
    if settings is None:
        return None
    changes = settings_changes(_entry(rec, key), settings)
    if not changes:
        return None
    if found is None and any(": (none) -> " in line for line in changes):  # not even the same fields
        return OutputProblem(f"{stem} holds a result of another kind (none recorded; its settings lack "
                             f"{', '.join(line.split(':')[0] for line in changes if ': (none) -> ' in line)[:80]})",
                             False)
    what = f"a `tms {kind}` result" if found else "a result (kind not recorded)"
    return OutputProblem(f"{stem} holds {what} with other settings ({'; '.join(changes[:4])})", True)


def claim_output(path: str | os.PathLike, kind: str, settings: dict | None = None, *,
                 key: str | tuple | None = "settings",
                 inputs: tuple = (), force: bool = False, name: str = "out") -> None:
    """ValueError naming `name` when saving a `kind` result at `path` would destroy another
    result (`output_problem`); with force, a result of the same kind and other settings may be
    replaced (never an input, never another kind)."""
    found = output_problem(path, kind, settings, key=key, inputs=inputs)
    if found is None:
        return
    why, overridable = found
    if overridable and force:
        return
    hint = "; give force (--force) to replace it, or choose another path" if overridable else ""
    raise ValueError(f"{name}: {why}{hint}")
