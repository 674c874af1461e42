"""Kill safety: a run killed with SIGKILL at any moment leaves the previous result or the new
one, never a torn file; the rerun resumes and ends with exactly the numbers of an
uninterrupted run with the same seed, and no partial or temp file survives.

The first tests pin down tms.core.io (torn pairs, truncation, temp leftovers, provenance); the
last ones kill real `tms train` and `tms posterior` subprocesses (by pid) at seeded random
moments, and stop `tms train` with SIGTERM. tests/core/test_faults.py has the SIGINT / SIGTERM /
SIGKILL trials of `tms posterior` at default batching and of `tms reproduce`.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tms.core import io

# ---- tms.core.io: detection of what a kill can leave ------------------------------------------


def test_torn_pair_truncation_and_damage_are_detected(tmp_path):
    io.save_result(tmp_path / "r", {"a": np.arange(6.0)}, {"seed": 1})
    assert io.result_exists(tmp_path / "r")
    npz = (tmp_path / "r.npz").read_bytes()
    io.save_result(tmp_path / "r", {"a": np.arange(6.0) + 1}, {"seed": 2})
    (tmp_path / "r.npz").write_bytes(npz)  # a kill between the two renames: old arrays, new record
    assert not io.result_exists(tmp_path / "r")
    with pytest.raises(ValueError, match="different writes"):
        io.load_result(tmp_path / "r")
    (tmp_path / "r.npz").write_bytes(npz[: len(npz) - 40])
    assert "truncated or damaged" in io.check_result(tmp_path / "r")
    (tmp_path / "r.npz").write_bytes(b"")
    assert not io.result_exists(tmp_path / "r")
    (tmp_path / "r.json").write_text('{"seed": ')
    assert "r.json is truncated or damaged" in io.check_result(tmp_path / "r")
    (tmp_path / "r.json").unlink()
    assert io.check_result(tmp_path / "r") == f"no file {tmp_path / 'r.json'}"


def test_a_flipped_byte_fails_the_zip_checksum(tmp_path):
    io.save_result(tmp_path / "r", {"a": np.arange(100.0)}, {})
    blob = bytearray((tmp_path / "r.npz").read_bytes())
    blob[200] ^= 0xFF  # inside the data of a.npy
    (tmp_path / "r.npz").write_bytes(bytes(blob))
    assert not io.result_exists(tmp_path / "r")


def test_results_without_a_format_record_still_load(tmp_path):
    np.savez(tmp_path / "old.npz", a=np.arange(3))
    (tmp_path / "old.json").write_text(json.dumps({"k": 1}))
    arrays, rec = io.load_result(tmp_path / "old")
    assert list(arrays) == ["a"] and rec == {"k": 1}


def test_the_next_write_removes_what_a_killed_write_left(tmp_path):
    io.save_json(tmp_path / "x.json", {"v": 1})
    stale = tmp_path / ".x.json.abc123.tmp"  # what mkstemp named before the kill
    stale.write_bytes(b"half")
    other = tmp_path / ".y.json.abc123.tmp"  # another file's: not ours to remove
    other.write_bytes(b"half")
    io.save_json(tmp_path / "x.json", {"v": 2})
    assert not stale.exists() and other.exists()
    assert io.load_json(tmp_path / "x.json") == {"v": 2}


def test_reserved_array_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        io.save_result(tmp_path / "r", {io.FORMAT_KEY: np.zeros(1)}, {})


def test_every_record_carries_provenance_and_comparisons_ignore_it(tmp_path, monkeypatch):
    import tms

    io.save_result(tmp_path / "r", {"a": torch.zeros(2)}, {"seed": 1})
    rec = io.load_json(tmp_path / "r.json")
    prov = rec["provenance"]
    assert prov["package_version"] == tms.__version__ and prov["torch_version"] == torch.__version__
    assert prov["torch_threads"] == torch.get_num_threads() and prov["device"] == "cpu"
    assert prov["git_commit"] is None or len(prov["git_commit"]) == 40
    with io.recording_device("cuda:1"):  # what `tms --device` sets for the records of a run
        io.save_result(tmp_path / "d", {}, {"seed": 1})
    assert io.load_json(tmp_path / "d.json")["provenance"]["device"] == "cuda:1"
    # without git (not installed, not a checkout) the record says so instead of failing
    io.git_commit.cache_clear()
    monkeypatch.setattr(io.subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(FileNotFoundError("git")))
    try:
        io.save_result(tmp_path / "g", {}, {"seed": 1})
        assert io.load_json(tmp_path / "g.json")["provenance"]["git_commit"] is None
    finally:
        io.git_commit.cache_clear()
    # comparisons: provenance ignored, except the package version
    assert io.same_settings(rec, {"seed": 1}) and not io.same_settings(rec, {"seed": 2})
    other = dict(rec, provenance=dict(prov, torch_threads=99, device="mps", git_commit="x"))
    assert io.same_settings(other, {"seed": 1}) and io.identity(other) == io.identity(rec)
    older = dict(rec, provenance=dict(prov, package_version="0.0.1"))
    assert not io.same_settings(older, {"seed": 1}) and io.identity(older) != io.identity(rec)


# ---- real processes killed at random moments ---------------------------------------------

# a plain progress line every 0.2 s: the SIGTERM test waits for the first to know training began
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", TMS_PROGRESS_INTERVAL="0.2")


def _tms(argv, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tms.cli.main", *argv], cwd=cwd, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _finish(argv, cwd: Path, watch: Path, pattern: str, final: str | None = None) -> tuple[float, float]:
    """Run to the end; return (seconds until a file matching `pattern` first appears under
    `watch`: work under way, seconds until `final` appears there (default: the end))."""
    t0, first, last = time.perf_counter(), None, None
    proc = _tms(argv, cwd)
    while proc.poll() is None:
        if first is None and any(watch.glob(pattern)):
            first = time.perf_counter() - t0
        if last is None and final is not None and (watch / final).exists():
            last = time.perf_counter() - t0
        time.sleep(0.005)
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.returncode == 0, err[-2000:]
    end = time.perf_counter() - t0
    return (end if first is None else first), (end if last is None else last)


def _kill_trials(argv, cwd: Path, watch: Path, pattern: str, timing, rng: random.Random, trials: int):
    """Start the command `trials` times over the same outputs and SIGKILL it by pid at a
    seeded random moment: at even trials anywhere in the reference run's span, at odd ones
    while the reference was working (after the first file matching `pattern` appears, before
    its result). Returns the files on disk after each trial."""
    first, end = timing
    states = []
    for k in range(trials):
        proc = _tms(argv, cwd)
        t0 = time.perf_counter()
        if k % 2 == 1:
            while proc.poll() is None and not any(watch.glob(pattern)) and time.perf_counter() - t0 < 60:
                time.sleep(0.002)
            delay = rng.uniform(0.0, 0.8 * max(end - first, 0.02))
        else:
            delay = rng.uniform(0.0, end)
        try:
            proc.wait(timeout=delay)  # it may finish first: the next run then reuses its result
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stderr.close()
        states.append(sorted(str(p.relative_to(cwd)) for p in cwd.rglob("*") if p.is_file()))
    return states


def _leftovers(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*")
                  if p.name.endswith(".tmp") or "_partial" in p.name or p.name.startswith(".tms-write-probe"))


def _same_results(a: Path, b: Path, stems: list[str]) -> None:
    for stem in stems:
        (xa, ra), (xb, rb) = io.load_result(a / stem), io.load_result(b / stem)
        assert io.identity(ra) == io.identity(rb), stem
        assert sorted(xa) == sorted(xb), stem
        for k in xa:
            np.testing.assert_array_equal(xa[k], xb[k], err_msg=f"{stem}: {k}")


TRAIN = ["train", "--runs", "2", "--epochs", "3000", "--n", "100", "--batch-size", "10", "--seed", "3",
         "--save-every", "0", "--threads", "1", "--out", "res/run"]


def test_killed_train_resumes_to_the_uninterrupted_result(tmp_path):
    ref, work = tmp_path / "ref", tmp_path / "work"
    ref.mkdir(), work.mkdir()
    timing = _finish(TRAIN, ref, ref / "res", "run_partial.json", final="run.json")
    states = _kill_trials(TRAIN, work, work / "res", "run_partial.json", timing, random.Random(11), trials=4)
    assert any("res/run_partial.npz" in s and "res/run.json" not in s for s in states), states  # a resume
    _finish(TRAIN, work, work / "res", "run_partial.json")
    _same_results(ref / "res", work / "res", ["run"])
    assert _leftovers(work) == []


def _sigterm_mid_training(argv, cwd: Path, after: float) -> tuple[int, str]:
    """Start `tms train` and send SIGTERM `after` seconds after its progress bar appears
    (training has begun); (exit status, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "tms", *argv], cwd=cwd, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: os.read(proc.stderr.fileno(), 4096), b"")))
    reader.start()
    t0 = time.perf_counter()
    while b"SGD x" not in b"".join(chunks) and proc.poll() is None and time.perf_counter() - t0 < 60:
        time.sleep(0.005)
    time.sleep(after)
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait()
    reader.join()
    proc.stderr.close()
    return proc.returncode, b"".join(chunks).decode()


def test_sigterm_saves_the_training_partial_and_says_so(tmp_path):
    """SIGTERM (what `timeout` and schedulers send) mid-training, with no interval save due:
    the partial is saved at the last block boundary, the message names it, the exit status is
    143, and the rerun resumes to the uninterrupted result."""
    # 64 runs x 6000 epochs = 120 blocks of 50 epochs of 10 steps: seconds of training on the
    # compiled block (tms.dynamics.train_compiled), ~20 ms a block at one thread
    argv = [TRAIN[0], "--runs", "64", "--epochs", "6000", *TRAIN[5:]]
    argv[argv.index("--save-every") + 1] = "1000"  # no interval save is due before the signal
    ref, work = tmp_path / "ref", tmp_path / "work"
    ref.mkdir(), work.mkdir()
    _finish(argv, ref, ref / "res", "run_partial.json")
    rc, err = _sigterm_mid_training(argv, work, after=0.4)
    assert rc == 143, err[-2000:]
    assert "interrupted by SIGTERM; kept 1 result saved in this run (.npz + .json): res/run_partial;" in err, err[-500:]
    assert io.result_exists(work / "res" / "run_partial") and not (work / "res" / "run.json").exists()
    assert 0 < io.load_result(work / "res" / "run_partial")[1]["blocks_done"] < 120
    _finish(argv, work, work / "res", "run_partial.json")
    _same_results(ref / "res", work / "res", ["run"])
    assert _leftovers(work) == []


# each n takes a second or two (1200 rounds on the compiled sampler), so a kill after the first
# point often lands mid-sweep
POSTERIOR = ["posterior", "--c", "3", "--ns", "40,80", "--batch-points", "1", "--seeds", "1", "--n-chains", "2",
             "--replicas", "2", "--n-temps", "2", "--n-warmup", "30", "--n-draws", "1200", "--max-steps", "10",
             "--plain-draws", "10", "--min-draws", "1200", "--seed", "5",
             "--no-predict", "--no-progress", "--threads", "1", "--out", "res", "--figure", "figs/post.png"]
RUN = "res/c3_quick_b1_s5"


def test_killed_posterior_resumes_to_the_uninterrupted_result(tmp_path):
    ref, work = tmp_path / "ref", tmp_path / "work"
    ref.mkdir(), work.mkdir()
    timing = _finish(POSTERIOR, ref, ref / "res", "*/posterior_c3_n*.json")
    states = _kill_trials(POSTERIOR, work, work / "res", "*/posterior_c3_n*.json", timing, random.Random(7), trials=4)
    assert any(f"{RUN}/posterior_c3_n40.json" in s and f"{RUN}/summary_c3.json" not in s for s in states), states
    _finish(POSTERIOR, work, work / "res", "*/posterior_c3_n*.json")
    stems = ["posterior_c3_n40", "posterior_c3_n80", "summary_c3"]
    _same_results(ref / RUN, work / RUN, stems)
    assert _leftovers(work) == []
    assert (work / "figs" / "post.png").stat().st_size > 1000
