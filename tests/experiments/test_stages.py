"""Stages computed beside the main process (tms.experiments.stages.Pipeline.run_beside): every
unit runs once, in order, in the lane or here; a failure is raised once the others have ended;
the lane's thread is left to it while it computes."""
import functools
import os
import time

import pytest

from tms.core import checks, io
from tms.experiments import stages
from tms.report import background


def _pipeline(tmp_path, lane):
    lines = []
    queue = background.JobQueue(background=False)
    return stages.Pipeline(tmp_path / "out", tmp_path / "figs", False, lines.append, queue, lane), lines


def _mkdir_stage(name: str, path) -> stages.Stage:
    # os.mkdir fails if the stage ran before (the folder exists) or before the stage it needs (no parent)
    return stages.Stage(name, dict(name=name), [path], functools.partial(os.mkdir, path))


@pytest.mark.parametrize("own_seconds", [0.0, 4.0])  # the lane reaches no unit / some units first
def test_every_unit_runs_once_in_order_in_the_lane_or_here(tmp_path, own_seconds):
    root = tmp_path / "made"
    root.mkdir()
    units = [[_mkdir_stage("a", root / "a"), _mkdir_stage("a_sub", root / "a" / "sub")],
             [_mkdir_stage("b", root / "b")], [_mkdir_stage("c", root / "c"), _mkdir_stage("c_sub", root / "c" / "s")]]
    seen = []
    own = [stages.Stage("own", {}, [], lambda: (seen.append(checks.kernel_threads()), time.sleep(own_seconds)))]
    with background.JobQueue(quiet=False, shared=stages.claims()) as lane:
        pipe, lines = _pipeline(tmp_path, lane)
        pipe.run_beside(units, own, "cpu")
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == ["a", "a/sub", "b", "c", "c/s"]
    names = ["a", "a_sub", "b", "c", "c_sub", "own"]
    assert sorted(pipe.status) == names and set(pipe.status.values()) == {"ran"}
    for name in names:
        assert io.load_json(tmp_path / "out" / "stages" / f"{name}.json")["status"] == "done"
    assert sum(f"[{n}] done in" in line for line in lines for n in names) == len(names)
    assert seen == [max(1, checks.cores() - 1)]  # the lane's thread was left to it
    assert checks.kernel_threads() is None  # and given back


def test_a_failing_unit_is_raised_once_the_others_have_ended(tmp_path):
    root = tmp_path / "made"
    root.mkdir()
    units = [[_mkdir_stage("ok", root / "ok")], [_mkdir_stage("bad", root / "missing" / "x")],
             [_mkdir_stage("after", root / "after")]]
    with pytest.raises(FileNotFoundError):
        with background.JobQueue(quiet=False, shared=stages.claims()) as lane:
            pipe, _ = _pipeline(tmp_path, lane)
            pipe.run_beside(units, [stages.Stage("own", {}, [], functools.partial(time.sleep, 4.0))], "cpu")
    assert io.load_json(tmp_path / "out" / "stages" / "ok.json")["status"] == "done"
    assert io.load_json(tmp_path / "out" / "stages" / "bad.json")["status"] == "running"  # resumed by a rerun
    assert checks.kernel_threads() is None


def test_claims_hand_out_each_index_once():
    counter = stages.claims()
    assert [stages.claim(counter) for _ in range(4)] == [0, 1, 2, 3]
