"""Fingerprint every result array under a folder: one line per (file, array) with its SHA-256.

    python scripts/fingerprint.py RESULTS_DIR > before.txt
    ... change the code, rerun the same commands into another folder ...
    python scripts/fingerprint.py OTHER_DIR > after.txt && diff before.txt after.txt

Used to show that a refactoring changes no number: arrays are hashed by dtype, shape and raw
bytes (bit-identical or not); the format record (the .json checksum, which holds provenance
such as the git commit) is skipped, and so are netCDF files (their metadata hold timestamps;
the same draws are in the .npz beside them). Paths are printed relative to RESULTS_DIR.
With --json the numbers of each .json record are listed too (one line per leaf; provenance,
timings and absolute paths left out), to be compared by eye where a record's layout moved.
"""
from __future__ import annotations

import hashlib
import json
import sys
import zipfile
from pathlib import Path

import numpy as np

SKIP = {"__tms_io__"}


def fingerprint(root: Path) -> list[str]:
    lines = []
    for npz in sorted(root.rglob("*.npz")):
        try:
            with np.load(npz, allow_pickle=False) as data:
                for name in sorted(data.files):
                    if name in SKIP:
                        continue
                    a = np.ascontiguousarray(data[name])
                    h = hashlib.sha256(str((a.dtype.str, a.shape)).encode() + a.tobytes()).hexdigest()[:16]
                    lines.append(f"{npz.relative_to(root)}:{name} {a.dtype} {a.shape} {h}")
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            lines.append(f"{npz.relative_to(root)}: unreadable ({err})")
    return lines


VOLATILE = ("provenance", "seconds", "time", "elapsed", "wall", "path", "dir", "out", "figure", "input")


def _leaves(x, key=""):
    if isinstance(x, dict):
        for k, v in x.items():
            if not any(w in k.lower() for w in VOLATILE):
                yield from _leaves(v, f"{key}.{k}")
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _leaves(v, f"{key}[{i}]")
    else:
        yield key, x


def json_leaves(root: Path) -> list[str]:
    lines = []
    for js in sorted(root.rglob("*.json")):
        try:
            rec = json.loads(js.read_text())
        except (OSError, ValueError) as err:
            lines.append(f"{js.relative_to(root)}: unreadable ({err})")
            continue
        lines += [f"{js.relative_to(root)}{k} = {v!r}" for k, v in _leaves(rec)]
    return lines


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--json"]
    if len(args) != 1 or not Path(args[0]).is_dir():
        sys.exit("usage: python scripts/fingerprint.py [--json] RESULTS_DIR")
    lines = fingerprint(Path(args[0])) + (json_leaves(Path(args[0])) if "--json" in sys.argv else [])
    print("\n".join(lines))
