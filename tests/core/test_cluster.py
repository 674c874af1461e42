"""Sweeps as tasks on a Dask LocalCluster of 2 processes: the same numbers as the
in-process run, a worker killed mid-sweep, failures reported with their settings."""
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tms.core import cluster, io
from tms.bayes import posterior
from tms.dynamics import train
from tms.bayes import tasks as bayes_tasks
from tms.dynamics import tasks as dynamics_tasks
from tms.cli import common

distributed = pytest.importorskip("distributed")

C = 3
# each n takes a fraction of a second (so a kill lands mid-task), a few data sets and ladders
POST = dict(seed=5, seeds=1, n_chains=2, replicas=2, n_temps=2, n_warmup=30, n_draws=30, max_steps=10,
            plain_draws=10, min_draws=30)
TRAIN = dict(seed=5, n=100, batch_size=10, epochs=60, init="random", sigma=0.5, steps=[0, 1, 10, 100, 300, 600])


@pytest.fixture(scope="module")
def scheduler():
    """A LocalCluster of 2 single-threaded worker processes; its scheduler address."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=50) as lc:
        yield lc.scheduler_address


def _settings(record: dict) -> dict:
    """A saved record without its provenance (torch threads, commit) and batch layout: how
    it was computed, not what."""
    return {k: v for k, v in record.items() if k not in ("provenance", "layout")}


def _same_files(a: Path, b: Path, stems, ignore: tuple = ()) -> None:
    """The results `stems` under a and b hold equal arrays and records (but for `ignore`d keys)."""
    for stem in stems:
        (xa, ra), (xb, rb) = io.load_result(a / stem), io.load_result(b / stem)
        strip = lambda r: {k: v for k, v in _settings(r).items() if k not in ignore}  # noqa: E731
        assert strip(ra) == strip(rb), stem
        assert sorted(xa) == sorted(xb), stem
        for k in xa:
            np.testing.assert_array_equal(xa[k], xb[k], err_msg=f"{stem}: {k}")


def _same_sweep(ref: dict, got: dict) -> None:
    assert ref.phases == got.phases
    for k in ("ns", "mass", "mass_se", "mass_mc_se", "occupancy", "occupancy_se"):
        np.testing.assert_array_equal(getattr(ref, k), getattr(got, k), err_msg=k)


def test_bad_cluster_arguments(tmp_path):
    for bad in (dict(workers=0), dict(workers=True), dict(workers=1.5), dict(scheduler="not an address"),
                dict(scheduler="tcp://h:1", workers=2)):
        with pytest.raises(ValueError, match="scheduler|workers"):
            cluster.run_tasks([cluster.Task(os.getpid)], **bad)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="could not reach the Dask scheduler at tcp://127.0.0.1:9 within 1 s"):
        cluster.run_tasks([cluster.Task(os.getpid)], scheduler="tcp://127.0.0.1:9", timeout=1)
    assert time.perf_counter() - t0 < 20
    with pytest.raises(ValueError, match="needs out_dir"):
        bayes_tasks.phase_sweep(C, [40], workers=1, **POST)
    with pytest.raises(ValueError, match="needs path"):
        dynamics_tasks.train_sgd(runs=2, workers=1, **TRAIN)
    import argparse

    p = argparse.ArgumentParser()
    common.add_arguments(p)
    with pytest.raises(ValueError, match="--workers must be an integer >= 1"):
        common.options(p.parse_args(["--workers", "0"]))
    assert common.options(p.parse_args(["--scheduler", "tcp://h:8786"])) == dict(scheduler="tcp://h:8786", workers=None)
    assert common.options(p.parse_args([])) == dict(scheduler=None, workers=None)
    with pytest.raises(SystemExit):  # mutually exclusive
        p.parse_args(["--scheduler", "tcp://h:8786", "--workers", "2"])


def test_tasks_run_in_other_processes(scheduler):
    pids = cluster.run_tasks([cluster.Task(os.getpid) for _ in range(4)], scheduler=scheduler, progress=False)
    assert len(pids) == 4 and os.getpid() not in pids
    assert cluster.run_tasks([cluster.Task(os.getpid)], progress=False) == [os.getpid()]  # default: in-process


def test_one_session_serves_many_sweeps():
    with cluster.session(workers=1) as where:
        assert where["workers"] is None and where["scheduler"].startswith("tcp://")
        pids = [cluster.run_tasks([cluster.Task(os.getpid)], progress=False, **where)[0] for _ in range(2)]
    assert pids[0] == pids[1] != os.getpid()  # the same worker process: one cluster for both
    with pytest.raises(ValueError, match="could not reach"):  # closed at the end of the block
        cluster.run_tasks([cluster.Task(os.getpid)], scheduler=where["scheduler"], timeout=1)
    with cluster.session() as where:
        assert where == dict(scheduler=None, workers=None)


def test_posterior_sweep_on_the_cluster_equals_in_process(tmp_path, scheduler):
    """One task per n on 2 workers = the in-process sweep in one batch, bit for bit."""
    ns = [40, 80, 120]
    ref = posterior.phase_sweep(C, ns, out_dir=tmp_path / "ref", predict=False, **POST)
    got = bayes_tasks.phase_sweep(C, ns, out_dir=tmp_path / "work", scheduler=scheduler, predict=False, **POST)
    _same_sweep(ref, got)
    _same_files(tmp_path / "ref", tmp_path / "work", [f"posterior_c{C}_n{n}" for n in ns])
    assert io.load_json(tmp_path / "work" / f"posterior_c{C}_n40.json")["layout"]["batch_ns"] == [40]
    again = bayes_tasks.phase_sweep(C, ns, out_dir=tmp_path / "work", scheduler=scheduler, predict=False, **POST)
    _same_sweep(ref, again)  # everything on disk: no task, same aggregate


def test_sgd_run_blocks_on_local_workers_equal_in_process(tmp_path):
    ref = train.train_sgd(runs=5, path=tmp_path / "ref", progress=False, **TRAIN)
    got = dynamics_tasks.train_sgd(runs=5, path=tmp_path / "work", workers=2, runs_per_task=2, progress=False, **TRAIN)
    for k in ("steps", "W", "b", "train_loss", "pop_loss", "X"):
        assert torch.equal(getattr(ref, k), getattr(got, k)), k
    assert ref.W.shape[1] == 5 and not torch.equal(ref.W[-1, 0], ref.W[-1, 1])
    assert _settings(got.record) == _settings(io.jsonable(ref.record))
    (xa, ra), (xb, rb) = io.load_result(tmp_path / "ref"), io.load_result(tmp_path / "work")
    assert _settings(ra) == _settings(rb) and sorted(xa) == sorted(xb)
    assert all(np.array_equal(xa[k], xb[k]) for k in xa)
    assert not (tmp_path / "work_blocks").exists()  # merged, block files removed


def test_llc_checkpoint_blocks_equal_the_full_run(tmp_path, scheduler):
    res = train.train_sgd(runs=2, progress=False, **TRAIN)  # W (6, 2, 2, 6), one training set per run
    kw = dict(n_chains=2, n_burnin=5, n_draws=30, seed=3)
    ref = dynamics_tasks.trajectory_llc(res.W, res.b, res.X, progress=False, **kw)
    cluster_blocks = tmp_path / "blocks"
    got = dynamics_tasks.trajectory_llc(res.W, res.b, res.X, out_dir=cluster_blocks, scheduler=scheduler,
                                 checkpoints_per_task=4, progress=False, **kw)
    assert not cluster_blocks.exists()  # blocks of 4 + 2 checkpoints merged, then removed
    here = dynamics_tasks.trajectory_llc(res.W, res.b, res.X, progress=False, **kw)  # no cluster: one in-process call
    np.testing.assert_array_equal(here.llc.numpy(), ref.llc.numpy())
    for k in ref.ARRAYS:
        np.testing.assert_array_equal(getattr(ref, k).numpy(), getattr(got, k).numpy(), err_msg=k)  # NaN where NaN
    assert io.jsonable(got.settings) == io.jsonable(ref.settings)
    assert torch.isfinite(ref.llc).all() and ref.llc.std() > 0  # real, distinct estimates


def test_a_failing_task_is_reported_with_its_settings_and_the_others_go_on(tmp_path, scheduler):
    ns = [40, 0, 80]  # n = 0 is not a sample size: its task fails on the worker
    with pytest.raises(cluster.TasksFailed, match=r"1 of 3 tasks failed.*posterior c=3 n=0 \[c=3, n=\[0\], seed=5\]"
                                                 r".*ValueError: n must be"):
        bayes_tasks.phase_sweep(C, ns, out_dir=tmp_path, scheduler=scheduler, predict=False, **POST)
    assert all(io.result_exists(tmp_path / f"posterior_c{C}_n{n}") for n in (40, 80))
    tasks = [cluster.Task(bayes_tasks.posterior_points, dict(c=C, ns=[n], out_dir=str(tmp_path), kwargs=POST),
                          name=f"n={n}", settings=dict(n=n)) for n in (0, 40)]
    with pytest.raises(cluster.TasksFailed) as err:  # in-process: the same report
        cluster.run_tasks(tasks, progress=False)
    assert [t.settings for t, _ in err.value.failures] == [dict(n=0)] and err.value.results == [None, [40]]


def _kill_a_busy_worker(address: str, watch: Path, killed: list) -> None:
    """Once the first point is on disk, SIGKILL (by pid) a worker that is running a task."""
    with distributed.Client(address, set_as_default=False) as cl:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 60:
            busy = [w for w, keys in cl.processing().items() if keys]
            if busy and any(watch.glob("posterior_c*_n*.json")):
                pid = cl.run(os.getpid, workers=busy[:1])[busy[0]]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.01)


def test_a_worker_killed_mid_sweep_loses_only_its_task(tmp_path, scheduler):
    ns = [40, 80, 120, 160, 200]
    ref = posterior.phase_sweep(C, ns, out_dir=tmp_path / "ref", predict=False, **POST)
    work, killed = tmp_path / "work", []
    killer = threading.Thread(target=_kill_a_busy_worker, args=(scheduler, work, killed))
    killer.start()
    try:
        bayes_tasks.phase_sweep(C, ns, out_dir=work, scheduler=scheduler, predict=False, **POST)
    except cluster.TasksFailed:
        pass  # a task on the killed worker may fail; the rerun redoes it
    killer.join()
    assert killed, "no worker was killed mid-sweep"
    got = bayes_tasks.phase_sweep(C, ns, out_dir=work, scheduler=scheduler, predict=False, **POST)
    assert [p.n for p in got.points] == ns
    names = sorted(p.name for p in work.iterdir())
    assert not [f for f in names if f.startswith(".") or f.endswith(".tmp")], names  # no temp file left
    assert sorted(f for f in names if f.endswith(".json")) == sorted(f"posterior_c{C}_n{n}.json" for n in ns)
    assert names == sorted(tmp.name for tmp in (tmp_path / "ref").iterdir())  # the same files, once each
    _same_sweep(ref, got)
    _same_files(tmp_path / "ref", work, [f"posterior_c{C}_n{n}" for n in ns])
    with distributed.Client(scheduler, set_as_default=False) as cl:
        assert killed[0] not in cl.run(os.getpid).values()  # it really died (the nanny started a new one)


# ---- the commands: --scheduler / --workers passed through ---------------------------------

TRAIN_ARGS = ["train", "--runs", "3", "--epochs", "5", "--n", "100", "--batch-size", "10", "--seed", "2"]
POST_ARGS = ["posterior", "--c", "3", "--ns", "40,80", "--seeds", "1", "--replicas", "2", "--n-temps", "2",
             "--n-warmup", "30", "--n-draws", "30", "--max-steps", "10", "--plain-draws", "10", "--min-draws", "30",
             "--seed", "5", "--no-predict", "--no-progress", "--threads", "1"]


def test_commands_run_their_tasks_on_a_scheduler(tmp_path, scheduler):
    from tms.cli.main import main

    assert main(TRAIN_ARGS + ["--out", str(tmp_path / "ref")]) == 0
    assert main(TRAIN_ARGS + ["--out", str(tmp_path / "work"), "--scheduler", scheduler]) == 0
    (xa, ra), (xb, rb) = io.load_result(tmp_path / "ref"), io.load_result(tmp_path / "work")
    assert _settings(ra) == _settings(rb) and all(np.array_equal(xa[k], xb[k]) for k in xa)
    for tag, extra in (("ref", []), ("work", ["--scheduler", scheduler])):
        assert main(["transitions", "--input", str(tmp_path / "ref"), "--out", str(tmp_path / f"tr_{tag}"),
                     "--llc-points", "3", "--n-chains", "2", "--n-draws", "20", "--figures",
                     str(tmp_path / f"fig_{tag}")] + extra) == 0
        assert main(POST_ARGS + ["--out", str(tmp_path / f"post_{tag}"),
                                 "--figure", str(tmp_path / f"post_{tag}.png")] + extra) == 0
    (la, _), (lb, _) = io.load_result(tmp_path / "tr_ref_llc"), io.load_result(tmp_path / "tr_work_llc")
    assert sorted(la) == sorted(lb) and all(np.array_equal(la[k], lb[k]) for k in la)
    run_dirs = [next((tmp_path / f"post_{tag}").iterdir()) for tag in ("ref", "work")]
    _same_files(*run_dirs, [f"posterior_c3_n{n}" for n in (40, 80)])


def test_commands_refuse_bad_cluster_flags(tmp_path, capsys):
    from tms.cli.main import main

    assert main(TRAIN_ARGS + ["--out", str(tmp_path / "x"), "--workers", "0"]) == 2
    assert "--workers must be an integer >= 1" in capsys.readouterr().err
    assert main(TRAIN_ARGS + ["--workers", "2", "--scheduler", "tcp://h:1"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err
    for cmd in (["posterior"], ["transitions"], ["reproduce"]):
        assert main(cmd + ["--workers", "-1"]) == 2
        assert "--workers must be an integer >= 1" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_reproduce_on_the_cluster_runs_independent_stages_together_with_equal_results(tmp_path, scheduler):
    """tms reproduce --tiny on the cluster: the posterior and SGD stages run at once (their
    compute overlaps in time) and every result equals the in-process run's."""
    from tms.experiments import reproduce

    seq = reproduce.run("tiny", seed=3, out=tmp_path / "seq", figures=tmp_path / "fs", log=None)
    lines: list[tuple[float, str]] = []
    par = reproduce.run("tiny", seed=3, out=tmp_path / "par", figures=tmp_path / "fp", scheduler=scheduler,
                        log=lambda m: lines.append((time.perf_counter(), m)))
    assert set(seq.stages.values()) == {"ran"} and par.stages == seq.stages
    starts = [m for _, m in lines if m.endswith("running ...")]
    # the three posterior stages and both trainings start before any of them is done
    first_done = next(i for i, (_, m) in enumerate(lines) if " done in " in m and "zoo" not in m)
    assert sum(1 for _, m in lines[:first_done] if m.endswith("running ...") and "zoo" not in m) == 5, starts
    stems = sorted(str(p.relative_to(tmp_path / "seq").with_suffix("")) for p in (tmp_path / "seq").rglob("*.npz")
                   if "stages" not in p.parts)
    assert len(stems) > 20
    _same_files(tmp_path / "seq", tmp_path / "par", stems, ignore=("input",))  # records name their own folder
