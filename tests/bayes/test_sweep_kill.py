"""A `tms posterior` sweep at its default batching (every n in one batch, no point finished
before the end) stopped by SIGTERM at 60% of its uninterrupted time keeps its sampler state
(the checkpoint the interrupt saves), and the rerun resumes there: it takes well under the
uninterrupted run's time and ends with its numbers to the last bit."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tms.core import io

ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1",
           PYTHONPATH=str(Path(io.__file__).resolve().parents[2]))
# min_draws = n_draws: no data set stops early, so nothing is finished before the end (about 30 s here)
ARGV = ["posterior", "--c", "4", "--ns", "100,200,400", "--seeds", "2", "--n-chains", "8", "--replicas", "4",
        "--n-temps", "6", "--n-warmup", "60", "--n-draws", "900", "--block", "100", "--min-draws", "900",
        "--plain-draws", "60", "--max-steps", "16", "--seed", "1", "--no-predict", "--no-progress", "--threads", "1",
        "--out", "res", "--figure", "figs/post.png"]
RUN = Path("res") / "c4_quick_b1_s1"


def _run(cwd: Path, kill_after: float | None = None) -> tuple[int, str, float]:
    """`tms ARGV` in cwd, SIGTERM by pid after kill_after seconds (None: to the end);
    (exit status, stderr, seconds)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "tms", *ARGV], cwd=cwd, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        proc.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    return proc.returncode, err, time.perf_counter() - t0


def _results(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.json"))


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM to a child process")
def test_sigterm_at_60_percent_keeps_the_sampler_state_and_the_rerun_resumes(tmp_path):
    ref, work = tmp_path / "ref", tmp_path / "work"
    ref.mkdir(), work.mkdir()
    rc, err, t_ref = _run(ref)
    assert rc == 0, err[-2000:]
    rc, err, t_kill = _run(work, kill_after=0.6 * t_ref)
    assert rc == 143, err[-2000:]
    partial = RUN / "posterior_c4_partial_n100"
    assert f"kept 1 result saved in this run (.npz + .json): {partial};" in err, err[-1000:]
    rec = io.load_json(work / partial.with_suffix(".json"))
    assert io.check_result(work / partial) is None and (rec["phase"] == 1 or rec["rounds"] > 0), rec["phase"]
    assert not list((work / RUN).glob("posterior_c4_n*.json"))  # no point was finished: all of it is the checkpoint
    rc, err, t_rerun = _run(work)
    assert rc == 0, err[-2000:]
    # resumed where the interrupt left it (wall time says little: startup, draws files and figure are ~12 of ~20 s)
    said = re.search(rf"resumed: the points n = 100, 200, 400 from the checkpoint {partial} "
                     rf"\(step {rec['phase'] + 1}, (\d+) rounds sampled\)", err)
    assert said and int(said[1]) >= rec["rounds"], err[-2000:]
    assert _results(work) == _results(ref) and not list(work.rglob("*_partial*"))
    for stem in _results(ref):
        (xa, ra), (xb, rb) = io.load_result(ref / stem), io.load_result(work / stem)
        assert io.identity(ra) == io.identity(rb), stem
        assert sorted(xa) == sorted(xb), stem
        for k in xa:
            np.testing.assert_array_equal(xa[k], xb[k], err_msg=f"{stem}: {k}")
