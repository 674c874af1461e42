"""Faults a user meets: real `tms posterior` (default batching: every n in one batch) and
`tms reproduce --tiny` processes killed by pid with SIGINT, SIGTERM or SIGKILL at seeded
random moments, over several trials on the same folder. After every kill each point finished
before it is on disk, intact, and reused by the next run (its files are not rewritten); an
interrupt (SIGINT, SIGTERM) exits 130 / 143 with a message naming what it kept; the final
results equal an uninterrupted run (a module-scoped reference). Also: a moved results folder
reruns nothing; a damaged or deleted result is reported and only its piece is recomputed; the
public function behind `tms reproduce` gives what the command gives.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tms.core import io
from tms.experiments import reproduce

ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)


def _start(argv, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tms", *argv], cwd=cwd, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _results(root: Path) -> dict[Path, tuple[int, str]]:
    """Every intact result under root: stem (relative) -> (json mtime_ns, json checksum)."""
    out = {}
    for js in root.rglob("*.json"):
        stem = js.with_suffix("")
        if js.with_suffix(".npz").is_file() and io.check_result(stem) is None:
            out[stem.relative_to(root)] = (js.stat().st_mtime_ns, io.json_digest(stem))
    return out


def _timeline(argv, cwd: Path, watch: Path) -> list[float]:
    """Run to the end; seconds after the start at which each result first appeared, and the end."""
    t0, seen, times = time.perf_counter(), set(), []
    proc = _start(argv, cwd)
    while proc.poll() is None:
        new = set(_results(watch)) - seen if watch.exists() else set()
        if new:
            seen |= new
            times.append(time.perf_counter() - t0)
        time.sleep(0.02)
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.returncode == 0, err[-3000:]
    return times + [time.perf_counter() - t0]


def _kill_at(argv, cwd: Path, delay: float, sig) -> tuple[int | None, str]:
    """Start the command, send `sig` by pid after `delay` s (unless it ended first);
    (exit status, stderr)."""
    proc = _start(argv, cwd)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, sig)
        proc.wait()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    return proc.returncode, err


def _check_message(rc, err: str, sig, root: Path, command: str) -> None:
    """An interrupt exits 130 (SIGINT) or 143 (SIGTERM), saying what it kept; every result it
    names is on disk and intact. (A signal before tms's handlers exist kills the interpreter.)"""
    if rc not in (130, 143):
        assert rc in (0, 1, -sig, 128 + sig), (rc, err[-2000:])
        return
    assert rc == (130 if sig == signal.SIGINT else 143), err[-2000:]
    said = f"tms {command}: interrupted by {'SIGTERM' if sig == signal.SIGTERM else 'SIGINT'}"
    lines = [x for x in err.splitlines() if ": interrupted by " in x]
    assert len(lines) == 1 and said in lines[0], err[-2000:]  # (library noise at exit may follow it)
    line = lines[0]
    m = re.search(r"kept (\d+) results? saved in this run \(\.npz \+ \.json\): (.*); rerun", line)
    if m is None:
        assert "nothing new was finished in this run" in line, line
        return
    for name in m.group(2).split(", "):
        if not name.startswith("and "):  # "..., and 4 more"
            path = Path(name) if os.path.isabs(name) else root / name
            assert io.check_result(path) is None, (name, line)


def _fault_trials(argv, cwd: Path, watch: Path, timeline, rng: random.Random, keep, trials: int,
                  lead: float = 1.0) -> list:
    """`trials` runs over one folder, each killed with a signal of SIGNALS (in turn) at a seeded
    moment in the reference run's span from `lead` s before its first result; after each, the
    results `keep` selects that were on disk before it must be there unchanged (reused, not
    rewritten). Returns the kills' exit codes."""
    lo, hi = max(0.0, timeline[0] - lead), timeline[-1]
    codes, before = [], {}
    for k in range(trials):
        sig = SIGNALS[k % len(SIGNALS)]
        rc, err = _kill_at(argv, cwd, rng.uniform(lo, hi), sig)
        now = _results(watch) if watch.exists() else {}
        for stem, state in before.items():
            assert now.get(stem) == state, f"trial {k} ({sig.name}): {stem} was rewritten or lost"
        _check_message(rc, err, sig, cwd, argv[0])
        before = {s: v for s, v in now.items() if keep(watch, s)}
        codes.append(rc)
    return codes


def _strip(x, keys=("input", "layout")):
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if k not in keys}
    return [_strip(v) for v in x] if isinstance(x, list) else x


def _text(record: dict) -> str:
    """The record up to provenance, as text (NaN equals NaN): without a transitions result's
    `input` (the path it was given) and a posterior point's batch `layout` (how it was run)."""
    return json.dumps(_strip(io.identity(record)), sort_keys=True)


def _same_results(a: Path, b: Path, skip=lambda stem: False) -> int:
    """Every result under a equals the one under b (arrays exactly, records up to provenance);
    returns how many were compared."""
    ra, rb = sorted(_results(a)), sorted(_results(b))
    assert ra == rb
    for stem in ra:
        if skip(stem):
            continue
        (xa, ja), (xb, jb) = io.load_result(a / stem), io.load_result(b / stem)
        assert _text(ja) == _text(jb), stem  # as text: NaN equals NaN
        assert sorted(xa) == sorted(xb), stem
        for key in xa:
            np.testing.assert_array_equal(xa[key], xb[key], err_msg=f"{stem}: {key}")
    return len(ra)


# ---- tms posterior at its default batching ---------------------------------------------------

# every n in one batch; the precision stop ends n = 40, 80, 160 at different rounds (seconds apart
# on the compiled sampler), so kills land between points being saved
POSTERIOR = ["posterior", "--c", "3", "--ns", "40,80,120,160,240,320", "--seeds", "1", "--n-chains", "2", "--replicas", "4",
             "--n-temps", "3", "--n-warmup", "30", "--n-draws", "2000", "--max-steps", "40", "--plain-draws", "10",
             "--min-draws", "40", "--target-se", "0.004", "--seed", "5", "--no-predict", "--no-progress",
             "--threads", "1", "--out", "res", "--figure", "figs/post.png"]


def _reference(tmp_path_factory, argv: list[str], name: str):
    """(folder, timeline of saved files) of one uninterrupted run of argv, after a first run
    that loads (on a fresh checkout: compiles) the numba kernels: the trials find them cached,
    so a cold reference would place every kill after a trial has finished."""
    warm = tmp_path_factory.mktemp(name + "_warm")
    _timeline(argv, warm, warm / "res")
    d = tmp_path_factory.mktemp(name)
    return d, _timeline(argv, d, d / "res")


@pytest.fixture(scope="module")
def posterior_ref(tmp_path_factory):
    return _reference(tmp_path_factory, POSTERIOR, "posterior_ref")


def _a_point(root: Path, stem: Path) -> bool:
    """A finished point (not the summary, which each run rewrites, nor a checkpoint of the
    sampler state, which is rewritten as the sweep goes on and removed at its end)."""
    return "summary" not in stem.name and "_partial" not in stem.name


def test_posterior_killed_by_any_signal_keeps_and_reuses_every_finished_point(posterior_ref, tmp_path):
    ref, timeline = posterior_ref
    assert len(timeline) >= 3, timeline  # points saved at distinct moments: per point, not per batch
    # kills from the first point on: the startup (imports) is most of the time before it, and a
    # kill there, before the handlers exist, tests nothing of the sweep
    codes = _fault_trials(POSTERIOR, tmp_path, tmp_path / "res", timeline, random.Random(2024), keep=_a_point, trials=4,
                          lead=0.0)
    assert any(c in (130, 143) for c in codes), codes  # at least one clean interrupt mid-sweep
    _rerun_to_the_end(POSTERIOR, tmp_path)
    assert not [p for p in tmp_path.rglob("*.tmp")]
    assert _same_results(ref / "res", tmp_path / "res") == 7  # 6 points + the summary, as uninterrupted


def _rerun_to_the_end(argv: list[str], cwd: Path) -> None:
    """The interrupted command run again in the same folder, to completion."""
    done = subprocess.run([sys.executable, "-m", "tms", *argv], cwd=cwd, env=ENV, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]


# ---- tms reproduce at its smallest scale -------------------------------------------------------

REPRODUCE = ["reproduce", "--tiny", "--seed", "3", "--out", "res", "--figures", "figs", "--no-progress"]


def _stage_done(root: Path, stem: Path) -> bool:
    """A posterior point, or a result of a stage whose marker says done."""
    if re.fullmatch(r"posterior_c\d+_n\d+", stem.name):
        return True
    for marker in (root / "stages").glob("*.json"):
        rec = io.load_json(marker)
        if rec.get("status") == "done" and str(stem) in rec.get("files", {}):
            return True
    return False


@pytest.fixture(scope="module")
def reproduce_ref(tmp_path_factory):
    return _reference(tmp_path_factory, REPRODUCE, "reproduce_ref")


def test_reproduce_killed_by_any_signal_resumes_to_the_uninterrupted_result(reproduce_ref, tmp_path):
    ref, timeline = reproduce_ref
    _fault_trials(REPRODUCE, tmp_path, tmp_path / "res", timeline, random.Random(7), keep=_stage_done, trials=3)
    _rerun_to_the_end(REPRODUCE, tmp_path)
    assert _same_results(ref / "res", tmp_path / "res") > 20
    assert not [p for p in tmp_path.rglob("*.tmp")] and not list(tmp_path.rglob("*_partial.json"))


def test_the_public_function_gives_what_the_command_gives(reproduce_ref, tmp_path):
    """... with the stages beside the posterior ones in a second process (the command's tiny
    scale runs them one after another): the same numbers."""
    ref, _ = reproduce_ref
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)  # the command's (conftest sets float64; free_energy's wall rates follow it)
    try:
        res = reproduce.run("tiny", seed=3, out=tmp_path / "res", figures=tmp_path / "figs", log=None,
                            stages_aside=True)
    finally:
        torch.set_default_dtype(before)
    assert set(res.stages.values()) == {"ran"} and len(res.stages) == 11
    assert _same_results(ref / "res", tmp_path / "res") > 20
    assert sorted(p.name for p in (ref / "figs").rglob("*.png")) == sorted(p.name for p in (tmp_path / "figs").rglob("*.png"))


def test_a_moved_results_folder_reruns_nothing(reproduce_ref, tmp_path, monkeypatch):
    ref, _ = reproduce_ref
    shutil.copytree(ref / "res", tmp_path / "copy")
    shutil.move(tmp_path / "copy", tmp_path / "elsewhere")  # a moved folder, now under another name
    before = _results(tmp_path / "elsewhere")
    monkeypatch.chdir(tmp_path)  # relative paths this time; the reference ran with others
    lines = []
    res = reproduce.run("tiny", seed=3, out="elsewhere", figures="new_figs", log=lines.append)
    assert set(res.stages.values()) == {"reused"}, lines
    assert _results(tmp_path / "elsewhere") == before  # nothing rewritten
    assert len(list((tmp_path / "new_figs").rglob("*.png"))) == 14  # figures drawn from the saved results


def test_a_damaged_or_missing_result_is_reported_and_only_its_piece_recomputed(reproduce_ref, tmp_path):
    ref, _ = reproduce_ref
    shutil.copytree(ref / "res", tmp_path / "res")
    point = next((tmp_path / "res" / "posterior_c4").rglob("posterior_c4_n100.npz"))
    blob = bytearray(point.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    point.write_bytes(bytes(blob))
    (tmp_path / "res" / "sgd" / "train.npz").unlink()
    other = next((tmp_path / "res" / "posterior_c4").rglob("posterior_c4_n300.json"))
    mtime = other.stat().st_mtime_ns
    lines = []
    res = reproduce.run("tiny", seed=3, out=tmp_path / "res", figures=tmp_path / "figs", log=lines.append)
    text = "\n".join(lines)
    assert re.search(r"\[posterior_c4\] .*posterior_c4_n100\.npz is (truncated or )?damaged.*; recomputing "
                     r"posterior_c4_n100", text), text
    assert re.search(r"\[train\] no file .*train\.npz; recomputing train", text), text
    assert res.stages["posterior_c4"] == res.stages["train"] == "repaired"
    assert res.stages["posterior_c5"] == res.stages["transitions"] == "reused"
    assert other.stat().st_mtime_ns == mtime  # the intact point of the same stage was not recomputed
    assert _same_results(ref / "res", tmp_path / "res") > 20
