"""A `tms posterior` sweep at its default batching (every n in one batch, no point finished
before the end) stopped by SIGTERM 60% of the way through its replica-exchange rounds keeps
its sampler state (the checkpoint the interrupt saves), and the rerun resumes there (it says
so) and ends with the uninterrupted run's numbers to the last bit."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tms.core import io

# a plain progress line every 0.05 s: the test signals when the ladders' rounds pass 60%
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1", TMS_PROGRESS_INTERVAL="0.05",
           PYTHONPATH=str(Path(io.__file__).resolve().parents[2]))
# min_draws = n_draws: no data set stops early, so nothing is finished before the end (about 30 s here)
ARGV = ["posterior", "--c", "4", "--ns", "100,200,400", "--seeds", "2", "--n-chains", "8", "--replicas", "4",
        "--n-temps", "6", "--n-warmup", "60", "--n-draws", "900", "--block", "100", "--min-draws", "900",
        "--plain-draws", "60", "--max-steps", "16", "--seed", "1", "--no-predict", "--threads", "1",
        "--out", "res", "--figure", "figs/post.png"]
RUN = Path("res") / "c4_quick_b1_s1"


def _run(cwd: Path, kill_at: float | None = None) -> tuple[int, str]:
    """`tms ARGV` in cwd, SIGTERM by pid once its replica-exchange progress passes the fraction
    kill_at of its rounds (None: to the end); (exit status, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "tms", *ARGV], cwd=cwd, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    lines: list[str] = []
    for raw in proc.stderr:
        lines.append(raw.decode())
        done = re.match(r"replica exchange \(\d+ data sets\): (\d+)/(\d+)", lines[-1])
        if kill_at is not None and done and int(done[1]) >= kill_at * int(done[2]) and proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            kill_at = None
    proc.wait()
    proc.stderr.close()
    return proc.returncode, "".join(lines)


def _results(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.json"))


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM to a child process")
def test_sigterm_at_60_percent_keeps_the_sampler_state_and_the_rerun_resumes(tmp_path):
    ref, work = tmp_path / "ref", tmp_path / "work"
    ref.mkdir(), work.mkdir()
    rc, err = _run(ref)
    assert rc == 0, err[-2000:]
    rc, err = _run(work, kill_at=0.6)
    assert rc == 143, err[-2000:]
    partial = RUN / "posterior_c4_partial_n100"
    assert f"kept 1 result saved in this run (.npz + .json): {partial};" in err, err[-1000:]
    rec = io.load_json(work / partial.with_suffix(".json"))
    assert io.check_result(work / partial) is None and (rec["phase"] == 1 or rec["rounds"] > 0), rec["phase"]
    assert not list((work / RUN).glob("posterior_c4_n*.json"))  # no point was finished: all of it is the checkpoint
    rc, err = _run(work)
    assert rc == 0, err[-2000:]
    # resumed where the interrupt left it
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
