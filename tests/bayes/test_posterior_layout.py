"""A posterior point's numbers do not depend on the batch layout; saved points are keyed by
phase label, carry their batch layout, and a default-batching sweep keeps finished points."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from tms.core import io
from tms.bayes import posterior, posterior_point, sweep

# tiny settings: each sweep below takes a fraction of a second at c = 4
KW = dict(predict=False, n_chains=4, replicas=2, n_temps=4, n_warmup=20, n_draws=24, max_steps=8, plain_draws=12,
          block=8, min_draws=16, target_se=0.5)
C = 4


def _by_label(pt: dict, key: str, s: int) -> dict:
    return {p: float(np.asarray(getattr(pt, key))[s, j]) for j, p in enumerate(pt.phases)}


def _draw_labels(pt: dict, s: int) -> np.ndarray:
    d = pt.draws[s]
    return np.asarray(d["phase_labels"])[d["phase"]]


def _assert_same_dataset(a: dict, s_a: int, b: dict, s_b: int) -> None:
    """Data set s_a of point a and s_b of point b: the same numbers to the last bit."""
    for key in ("mass_seed", "occupancy_seed"):
        x, y = _by_label(a, key, s_a), _by_label(b, key, s_b)
        for p in set(x) | set(y):
            assert x.get(p, 0.0) == y.get(p, 0.0), (key, p, x, y)
    np.testing.assert_array_equal(a.round_trips_seed[s_a], b.round_trips_seed[s_b])
    for key in ("theta", "loss", "energy"):
        np.testing.assert_array_equal(a.draws[s_a][key], b.draws[s_b][key], err_msg=key)
    np.testing.assert_array_equal(_draw_labels(a, s_a), _draw_labels(b, s_b))
    assert a.diag["pt_rounds"][s_a] == b.diag["pt_rounds"][s_b]
    assert a.diag["betas_seed"][s_a] == b.diag["betas_seed"][s_b]


def test_point_is_identical_alone_chunked_and_with_8_data_sets():
    alone = posterior.phase_sweep(C, [100], seeds=1, **KW).points[0]
    chunked = {p.n: p for p in posterior.phase_sweep(C, [200, 100, 300], seeds=1, **KW).points}[100]
    pairs = {p.n: p for p in posterior.phase_sweep(C, [300, 100], seeds=1, batch_points=1, **KW).points}[100]
    eight = posterior.phase_sweep(C, [100], seeds=8, **KW).points[0]
    assert alone.layout == dict(batch_ns=[100], datasets_per_batch=1)
    assert chunked.layout == dict(batch_ns=[200, 100, 300], datasets_per_batch=3)
    assert eight.layout == dict(batch_ns=[100], datasets_per_batch=8)
    for other, s in ((chunked, 0), (pairs, 0), (eight, 0)):
        _assert_same_dataset(alone, 0, other, s)
    # and data set 5 of the 8 is the same as data set 5 of an 8-set point batched with another n
    eight_chunked = {p.n: p for p in posterior.phase_sweep(C, [100, 150], seeds=8, **KW).points}[100]
    _assert_same_dataset(eight, 5, eight_chunked, 5)
    assert len(alone.draws[0]["theta"]) == KW["replicas"]  # (chain = ladder, draw, d)


def test_saved_point_is_keyed_by_label_and_carries_the_layout(tmp_path, monkeypatch):
    res = posterior.phase_sweep(C, [100, 200], seeds=2, out_dir=tmp_path, batch_points=1, **KW)
    arrays, rec = io.load_result(tmp_path / "posterior_c4_n200")
    pt = res.points[1]
    assert {k for k in arrays if k.startswith("mass_seed[")} == {f"mass_seed[{p}]" for p in pt.phases}
    for j, p in enumerate(pt.phases):
        np.testing.assert_array_equal(arrays[f"mass_seed[{p}]"], pt.mass_seed[:, j])
    assert rec["layout"] == dict(batch_ns=[200], datasets_per_batch=2) and "layout" not in rec["settings"]
    assert rec["draw_files"] == 2 and (tmp_path / "posterior_c4_n200_draws_s1.nc").exists()

    def no_sampling(*a, **k):
        raise AssertionError("a saved point was sampled again")

    monkeypatch.setattr(sweep, "_run_chunk", no_sampling)
    again = posterior.phase_sweep(C, [100, 200], seeds=2, out_dir=tmp_path, **KW)  # other batching: reused
    for a, b in zip(res.points, again.points):
        assert a.phases == b.phases and a.layout == b.layout
        for s in range(2):
            _assert_same_dataset(a, s, b, s)
    np.testing.assert_array_equal(res.mass, again.mass)


def test_missing_draws_file_means_the_point_is_redone(tmp_path):
    posterior.phase_sweep(C, [100], seeds=1, out_dir=tmp_path, **KW)
    (tmp_path / "posterior_c4_n100_draws_s0.nc").unlink()
    assert not posterior_point.point_done(tmp_path, C, 100)
    posterior.phase_sweep(C, [100], seeds=1, out_dir=tmp_path, **KW)
    assert posterior_point.point_done(tmp_path, C, 100)


def test_damaged_point_is_reported_and_recomputed_to_the_same_numbers(tmp_path, capsys):
    first = posterior.phase_sweep(C, [100, 150], seeds=1, out_dir=tmp_path, **KW)
    npz = tmp_path / "posterior_c4_n100.npz"
    raw = bytearray(npz.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte inside the archive
    npz.write_bytes(bytes(raw))
    kept = (tmp_path / "posterior_c4_n150.npz").stat().st_mtime_ns
    capsys.readouterr()
    again = posterior.phase_sweep(C, [100, 150], seeds=1, out_dir=tmp_path, **KW)
    err = capsys.readouterr().err
    assert "posterior_c4_n100" in err and "recomputing this point" in err
    assert "posterior_c4_n150" not in err and (tmp_path / "posterior_c4_n150.npz").stat().st_mtime_ns == kept
    assert io.check_result(tmp_path / "posterior_c4_n100") is None
    np.testing.assert_array_equal(again.mass, first.mass)


SWEEP = """
import sys
from tms.bayes import posterior, posterior_point, sweep
posterior.phase_sweep(4, {ns}, out_dir=sys.argv[1], seeds=2, **{kw})
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_sigint_at_default_batching_keeps_every_finished_point(tmp_path):
    """All n in one batch (the default): data sets leave the batch when their masses reach
    target_se, so points finish one by one; a SIGINT after the first keeps every finished one,
    and the rerun reuses them and ends with the uninterrupted run's numbers. With these seeds
    n = 1100 sits in one phase (mass se 0, done at min_draws) while n = 80 and 100 mix phases
    and run to n_draws (25x longer), so they cannot finish in the first point's save step."""
    ns = [40, 80, 100, 1100]
    kw = dict(KW, n_draws=200, min_draws=8, block=8, target_se=0.01)
    script = textwrap.dedent(SWEEP.format(ns=ns, kw=kw))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(posterior.__file__).parents[2]))
    work = tmp_path / "work"
    proc = subprocess.Popen([sys.executable, "-c", script, str(work)], env=env, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not list(work.glob("posterior_c4_n*.json")):
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep ended before a point was saved: make the last point slower"
    proc.send_signal(signal.SIGINT)
    proc.wait(60)
    kept = sorted(p.stem for p in work.glob("posterior_c4_n*.json"))
    assert kept and not {"posterior_c4_n80", "posterior_c4_n100"} & set(kept), kept
    assert all(posterior_point.point_done(work, 4, int(stem.split("_n")[1])) for stem in kept)
    assert not list(work.glob("*.tmp")) and not list(work.glob(".*"))
    full = posterior.phase_sweep(4, ns, seeds=2, out_dir=tmp_path / "ref", **kw)
    rounds = {p.n: max(p.diag["pt_rounds"]) for p in full.points}
    assert rounds[1100] * 10 <= min(rounds[80], rounds[100]), rounds  # the premise above
    resumed = posterior.phase_sweep(4, ns, seeds=2, out_dir=work, **kw)
    np.testing.assert_array_equal(full.mass, resumed.mass)
    np.testing.assert_array_equal(full.occupancy, resumed.occupancy)
