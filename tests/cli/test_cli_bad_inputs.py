"""Bad input through `tms.cli.main.main`, in-process: every case exits 2 with one line on stderr,
no traceback, and nothing written (the output folder, the working folder and the input
files stay as they were). Then the CLI's last line of defence for unexpected errors.

Read-only outputs are made so that they hold as root too (root ignores chmod): a path under
a regular file, and /proc or /sys where the kernel refuses new files.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tms.core import io
from tms.cli.main import main

TRAIN_ARGS = ["--runs", "2", "--epochs", "2", "--n", "100", "--batch-size", "10"]
HAS_PROC = os.path.isdir("/proc")
HAS_SYS = os.path.isdir("/sys/kernel")  # sysfs: no one may create files in its root


def _record(d: Path, name: str, arrays: dict, record) -> str:
    io.save_result(d / name, arrays, {} if not isinstance(record, dict) else record)
    if not isinstance(record, dict):  # a JSON list where a record belongs
        (d / f"{name}.json").write_text(json.dumps(record))
    return str(d / name)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Input files: a tiny real `tms train` result and broken variants of it. The zoo at
    c = 3 and 6 is solved here, so no case shows the progress bar of a first solve."""
    from tms.theory import zoo

    zoo.critical_points(3), zoo.critical_points(6)
    d = tmp_path_factory.mktemp("inputs")
    assert main(["train", *TRAIN_ARGS, "--out", str(d / "train")]) == 0
    arrays, rec = io.load_result(d / "train")
    (d / "empty.npz").write_bytes(b"")
    (d / "empty.json").write_text("")
    blob = (d / "train.npz").read_bytes()
    (d / "trunc.npz").write_bytes(blob[: len(blob) // 2])
    (d / "trunc.json").write_text((d / "train.json").read_text())
    (d / "torn.npz").write_bytes(blob)  # the arrays of one write, the record of another
    (d / "torn.json").write_text(json.dumps(dict(rec, lr=0.5), indent=2, sort_keys=True))
    (d / "nojson.npz").write_bytes(blob)
    _record(d, "list", arrays, [1, 2, 3])
    _record(d, "nokey", arrays, dict(rec, settings={k: v for k, v in rec["settings"].items() if k != "c"}))
    _record(d, "noarray", {k: v for k, v in arrays.items() if k != "pop_loss"}, rec)
    _record(d, "intW", dict(arrays, W=arrays["W"].astype(np.int64)), rec)
    _record(d, "nanW", dict(arrays, W=np.full_like(arrays["W"], np.nan)), rec)
    _record(d, "shape", dict(arrays, b=arrays["b"][..., :5]), rec)
    _record(d, "onlyW", {"W": arrays["W"]}, {"c": 6})
    (d / "afile").write_text("a regular file, so nothing can be written under it\n")
    (d / "adir").mkdir()
    return d


# (id, argv); {d} is the inputs folder, {o} the (empty) output folder, also the working folder.
CASES = [
    # ---- tms loss
    ("loss-r>c", ["loss", "--W", "[[1,0],[0,1],[1,1]]"]),
    ("loss-bool", ["loss", "--W", "[[true,false],[false,true]]"]),
    ("loss-nan", ["loss", "--W", "[[NaN,0],[0,1]]"]),
    ("loss-inf-b", ["loss", "--W", "[[1,0],[0,1]]", "--b", "[Infinity,0]"]),
    ("loss-ragged", ["loss", "--W", "[[1,0],[0]]"]),
    ("loss-empty", ["loss", "--W", "[]"]),
    ("loss-not-json", ["loss", "--W", "[[1,0],[0,1"]),
    ("loss-strings", ["loss", "--W", '[["a","b"]]']),
    ("loss-b-length", ["loss", "--W", "[[1,0]]", "--b", "[1,2,3]"]),
    ("loss-b-2d", ["loss", "--W", "[[1,0]]", "--b", "[[1,2]]"]),
    ("loss-missing-W", ["loss"]),
    # ---- tms zoo
    ("zoo-c-small", ["zoo", "--c", "2", "--out", "{o}/z.png"]),
    ("zoo-c-large", ["zoo", "--c", "17", "--out", "{o}/z.png"]),
    ("zoo-c-type", ["zoo", "--c", "six"]),
    ("zoo-kgons-negative", ["zoo", "--kgons", "-1", "--out", "{o}/z.png"]),
    ("zoo-kgons-2", ["zoo", "--kgons", "2", "--out", "{o}/z.png"]),
    ("zoo-kgons-unbounded", ["zoo", "--kgons", "200", "--out", "{o}/z.png"]),
    ("zoo-out-under-file", ["zoo", "--out", "{d}/afile/z.png"]),
    ("zoo-out-suffix", ["zoo", "--out", "{o}/z.txt"]),
    ("zoo-out-is-dir", ["zoo", "--out", "{d}/adir"]),
    ("zoo-out-proc", ["zoo", "--out", "/proc/tms/z.png"]),
    ("zoo-default-figure-readonly-cwd", ["zoo", "@cwd=/proc"]),
    # ---- tms llc
    ("llc-seed-negative", ["llc", "--point", "5+", "--seed", "-1"]),
    ("llc-data-seed-negative", ["llc", "--point", "5+", "--data-seed", "-3"]),
    ("llc-threads-0", ["llc", "--point", "5+", "--threads", "0"]),
    ("llc-threads-negative", ["llc", "--point", "5+", "--threads", "-2"]),
    ("llc-eps-huge", ["llc", "--point", "5+", "--eps", "10"]),
    ("llc-eps-nan", ["llc", "--point", "5+", "--eps", "nan"]),
    ("llc-eps-negative", ["llc", "--point", "5+", "--eps", "-0.001"]),
    ("llc-eps-option-like", ["llc", "--point", "5+", "--eps", "-1e-3"]),
    ("llc-gamma-negative", ["llc", "--point", "5+", "--gamma", "-1"]),
    ("llc-gamma-inf", ["llc", "--point", "5+", "--gamma", "inf"]),
    ("llc-n-1", ["llc", "--point", "5+", "--n", "1"]),
    ("llc-n-nan", ["llc", "--point", "5+", "--n", "nan"]),
    ("llc-nbeta-0", ["llc", "--point", "5+", "--nbeta", "0"]),
    ("llc-n-draws-0", ["llc", "--point", "5+", "--n-draws", "0"]),
    ("llc-n-draws-unbounded", ["llc", "--point", "5+", "--n-draws", "1000000000"]),
    ("llc-n-chains-0", ["llc", "--point", "5+", "--n-chains", "0"]),
    ("llc-n-burnin-negative", ["llc", "--point", "5+", "--n-draws", "50", "--n-burnin", "-1"]),
    ("llc-batch-0", ["llc", "--point", "5+", "--batch-size", "0"]),
    ("llc-every-0", ["llc", "--point", "5+", "--every", "0"]),
    ("llc-rows-0", ["llc", "--point", "5+", "--rows", "0"]),
    ("llc-c-large", ["llc", "--point", "5", "--c", "40"]),
    ("llc-unknown-label", ["llc", "--point", "9+", "--c", "6", "--n-draws", "2"]),
    ("llc-malformed-label", ["llc", "--point", "5x", "--c", "6", "--n-draws", "2"]),
    ("llc-point-and-checkpoints", ["llc", "--point", "5", "--checkpoints", "{d}/train"]),
    ("llc-missing-checkpoints", ["llc", "--checkpoints", "{d}/missing.npz"]),
    ("llc-empty-checkpoints", ["llc", "--checkpoints", "{d}/empty.npz"]),
    ("llc-truncated-checkpoints", ["llc", "--checkpoints", "{d}/trunc.npz"]),
    ("llc-torn-checkpoints", ["llc", "--checkpoints", "{d}/torn"]),
    ("llc-no-json", ["llc", "--checkpoints", "{d}/nojson.npz"]),
    ("llc-json-list", ["llc", "--checkpoints", "{d}/list"]),
    ("llc-no-b", ["llc", "--checkpoints", "{d}/onlyW"]),
    ("llc-int-W", ["llc", "--checkpoints", "{d}/intW"]),
    ("llc-nan-W", ["llc", "--checkpoints", "{d}/nanW"]),
    ("llc-W-b-mismatch", ["llc", "--checkpoints", "{d}/shape"]),
    ("llc-batch-over-n", ["llc", "--checkpoints", "{d}/train", "--batch-size", "101", "--n-draws", "2"]),
    ("llc-out-under-file", ["llc", "--point", "5+", "--out", "{d}/afile/r"]),
    ("llc-out-is-dir", ["llc", "--point", "5+", "--out", "{d}/adir"]),
    ("llc-plot-suffix", ["llc", "--point", "5+", "--plot", "{o}/p.dat"]),
    ("llc-plot-proc", ["llc", "--point", "5+", "--plot", "/proc/p.png"]),
    # ---- tms posterior
    ("post-seed-negative", ["posterior", "--c", "3", "--seed", "-1"]),
    ("post-threads-0", ["posterior", "--c", "3", "--threads", "0"]),
    ("post-n-text", ["posterior", "--c", "3", "--ns", "abc"]),
    ("post-n-0", ["posterior", "--c", "3", "--ns", "0"]),
    ("post-n-negative", ["posterior", "--c", "3", "--ns", "100,-5"]),
    ("post-n-duplicate", ["posterior", "--c", "3", "--ns", "100,100"]),
    ("post-n-unbounded-grid", ["posterior", "--c", "3", "--ns", "10:1000000000:1"]),
    ("post-n-too-large", ["posterior", "--c", "3", "--ns", "100000000"]),
    ("post-n-backwards", ["posterior", "--c", "3", "--ns", "500:100:50"]),
    ("post-c-2", ["posterior", "--c", "2"]),
    ("post-temps-0", ["posterior", "--c", "3", "--n-temps", "0"]),
    ("post-beta-min-1", ["posterior", "--c", "3", "--beta-min", "1"]),
    ("post-beta-min-nan", ["posterior", "--c", "3", "--beta-min", "nan"]),
    ("post-beta-lik-0", ["posterior", "--c", "3", "--beta-lik", "0"]),
    ("post-chains-negative", ["posterior", "--c", "3", "--n-chains", "-4"]),
    ("post-warmup-short", ["posterior", "--c", "3", "--n-warmup", "2"]),
    ("post-max-steps-unbounded", ["posterior", "--c", "3", "--max-steps", "1000000"]),
    ("post-draws-unbounded", ["posterior", "--c", "3", "--n-draws", "1000000000"]),
    ("post-batch-points-0", ["posterior", "--c", "3", "--batch-points", "0"]),
    ("post-llc-syntax", ["posterior", "--c", "3", "--llc", "4"]),
    ("post-llc-nan", ["posterior", "--c", "3", "--llc", "3=nan"]),
    ("post-llc-negative", ["posterior", "--c", "3", "--llc", "3=-1"]),
    ("post-llc-unknown-label", ["posterior", "--c", "3", "--llc", "9+=1"]),
    ("post-figure-suffix", ["posterior", "--c", "3", "--figure", "{o}/f.txt"]),
    ("post-figure-under-file", ["posterior", "--c", "3", "--figure", "{d}/afile/f.png"]),
    ("post-out-under-file", ["posterior", "--c", "3", "--out", "{d}/afile/res"]),
    ("post-out-proc", ["posterior", "--c", "3", "--out", "/proc/tms"]),
    ("post-unknown-option", ["posterior", "--c", "3", "--chainz", "4"]),
    # ---- tms train
    ("train-threads-0", ["train", *TRAIN_ARGS, "--threads", "0"]),
    ("train-threads-negative", ["train", *TRAIN_ARGS, "--threads", "-1"]),
    ("train-seed-negative", ["train", *TRAIN_ARGS, "--seed", "-1"]),
    ("train-runs-0", ["train", "--runs", "0"]),
    ("train-runs-float", ["train", "--runs", "2.5"]),
    ("train-epochs-0", ["train", "--epochs", "0"]),
    ("train-epochs-unbounded", ["train", "--epochs", "100000000"]),
    ("train-total-steps-unbounded", ["train", "--epochs", "1000000", "--n", "1000000", "--batch-size", "1"]),
    ("train-batch-over-n", ["train", *TRAIN_ARGS, "--batch-size", "200"]),
    ("train-r>c", ["train", *TRAIN_ARGS, "--r", "7"]),
    ("train-c-0", ["train", *TRAIN_ARGS, "--c", "0"]),
    ("train-lr-nan", ["train", *TRAIN_ARGS, "--lr", "nan"]),
    ("train-lr-inf", ["train", *TRAIN_ARGS, "--lr", "inf"]),
    ("train-lr-negative", ["train", *TRAIN_ARGS, "--lr", "-0.1"]),
    ("train-sigma-negative", ["train", *TRAIN_ARGS, "--sigma", "-1"]),
    ("train-noise-nan", ["train", *TRAIN_ARGS, "--noise", "nan"]),
    ("train-save-every-negative", ["train", *TRAIN_ARGS, "--save-every", "-1"]),
    ("train-init-unknown", ["train", *TRAIN_ARGS, "--init", "hexagon"]),
    ("train-4gon-needs-c4", ["train", *TRAIN_ARGS, "--c", "3"]),
    ("train-out-under-file", ["train", *TRAIN_ARGS, "--out", "{d}/afile/run"]),
    ("train-out-is-dir", ["train", *TRAIN_ARGS, "--out", "{d}/adir"]),
    ("train-out-proc", ["train", *TRAIN_ARGS, "--out", "/proc/tms/run"]),
    ("train-other-result-exists", ["train", *TRAIN_ARGS, "--lr", "0.01", "--out", "{d}/train"]),
    # ---- tms transitions
    ("trans-missing", ["transitions", "--input", "{d}/missing"]),
    ("trans-empty", ["transitions", "--input", "{d}/empty"]),
    ("trans-truncated", ["transitions", "--input", "{d}/trunc"]),
    ("trans-torn", ["transitions", "--input", "{d}/torn"]),
    ("trans-json-list", ["transitions", "--input", "{d}/list"]),
    ("trans-missing-key", ["transitions", "--input", "{d}/nokey"]),
    ("trans-missing-array", ["transitions", "--input", "{d}/noarray"]),
    ("trans-int-W", ["transitions", "--input", "{d}/intW"]),
    ("trans-shape-mismatch", ["transitions", "--input", "{d}/shape"]),
    ("trans-threads-0", ["transitions", "--input", "{d}/train", "--threads", "0"]),
    ("trans-seed-negative", ["transitions", "--input", "{d}/train", "--seed", "-1"]),
    ("trans-run-out-of-range", ["transitions", "--input", "{d}/train", "--figure-run", "99"]),
    ("trans-tol-nan", ["transitions", "--input", "{d}/train", "--tol", "nan"]),
    ("trans-min-span", ["transitions", "--input", "{d}/train", "--min-span", "0.5"]),
    ("trans-min-points-0", ["transitions", "--input", "{d}/train", "--min-points", "0"]),
    ("trans-eps-huge", ["transitions", "--input", "{d}/train", "--eps", "10"]),
    ("trans-n-draws-unbounded", ["transitions", "--input", "{d}/train", "--n-draws", "1000000000"]),
    ("trans-beta-lik-0", ["transitions", "--input", "{d}/train", "--beta-lik", "0"]),
    ("trans-out-under-file", ["transitions", "--input", "{d}/train", "--out", "{d}/afile/t"]),
    ("trans-figures-under-file", ["transitions", "--input", "{d}/train", "--figures", "{d}/afile/figs"]),
    ("trans-figures-is-file", ["transitions", "--input", "{d}/train", "--figures", "{d}/afile"]),
    ("trans-figures-proc", ["transitions", "--input", "{d}/train", "--figures", "/proc/figs"]),
    ("trans-default-figures-readonly-cwd", ["transitions", "--input", "{d}/train", "--out", "{o}/t", "@cwd=/proc"]),
    # ---- tms compare, tms reproduce, the top level
    ("compare-missing", ["compare", "--results", "{d}/missing"]),
    ("reproduce-threads-0", ["reproduce", "--tiny", "--threads", "0"]),
    ("reproduce-seed-negative", ["reproduce", "--tiny", "--seed", "-2"]),
    ("reproduce-out-under-file", ["reproduce", "--tiny", "--out", "{d}/afile/r"]),
    ("reproduce-figures-proc", ["reproduce", "--tiny", "--figures", "/proc/figs"]),
    ("unknown-command", ["frobnicate"]),
]
if HAS_SYS:
    CASES += [("train-out-sys", ["train", *TRAIN_ARGS, "--out", "/sys/tms/run"]),
              ("zoo-out-sys", ["zoo", "--out", "/sys/z.png"])]


def _snapshot(d: Path) -> dict:
    return {str(p.relative_to(d)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(d.rglob("*"))}


@pytest.mark.parametrize("argv", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(argv, data, tmp_path, monkeypatch, capsys):
    if any(a.startswith("/proc") or a == "@cwd=/proc" for a in argv) and not HAS_PROC:
        pytest.skip("no /proc")
    out = tmp_path / "out"
    out.mkdir()
    cwd = next((a[5:] for a in argv if a.startswith("@cwd=")), str(out))
    argv = [a.format(d=data, o=out) for a in argv if not a.startswith("@cwd=")]
    monkeypatch.chdir(cwd)
    before = _snapshot(data)
    code = main(argv)
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, f"exit {code}; stderr: {captured.err}"
    assert "Traceback" not in captured.err + captured.out
    assert err.count("\n") == 0 and err.startswith("tms"), f"not one line: {captured.err!r}"
    assert captured.out == ""
    assert not list(out.iterdir()), f"wrote {sorted(p.name for p in out.iterdir())}"
    assert _snapshot(data) == before, "an input folder changed"


def test_there_are_at_least_60_cases():
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)


def test_probe_reports_a_read_only_file_system(tmp_path, monkeypatch):
    """EROFS (what a read-only mount gives even to root) becomes a one-line ValueError."""
    import errno
    import tempfile

    from tms.core import checks

    def refuse(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    with pytest.raises(ValueError, match=r"--out: cannot write in .* \(read-only file system\)"):
        checks.output_stem(tmp_path / "r", "--out")


# ---- the last line of defence --------------------------------------------------------------


def _crash(args):
    raise KeyError("c")


def test_unexpected_error_is_one_line_with_a_log_beside_the_results(tmp_path, monkeypatch, capsys):
    import tms.cli.train as cmd

    monkeypatch.setattr(cmd, "run", _crash)
    out = tmp_path / "res" / "run"
    out.parent.mkdir()
    assert main(["train", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    log = out.parent / "tms-train-error.log"
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("tms train: internal error: KeyError: 'c'") and str(log) in err
    assert "Traceback" in log.read_text() and "_crash" in log.read_text()
    assert main(["train", "--out", str(out), "--debug"]) == 1  # --debug: the traceback itself
    assert "Traceback" in capsys.readouterr().err
    assert main(["--debug", "train", "--out", str(out)]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_os_error_is_one_line_exit_2(monkeypatch, capsys):
    import tms.cli.zoo as cmd

    def full_disk(args):
        raise OSError(28, "No space left on device", "figures/zoo_c6.png")

    monkeypatch.setattr(cmd, "run", full_disk)
    assert main(["zoo"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "Traceback" not in err


def test_help_returns_0(capsys):
    assert main(["train", "--help"]) == 0
    assert "--save-every" in capsys.readouterr().out


# ---- no result is ever overwritten, every option is honoured --------------------------------
# Pre-existing results of every kind, made once (tiny settings); each case below must leave
# every one of their files byte-identical (SHA-256 before and after), exit 2 and say why.

POST_ARGS = ["--c", "3", "--ns", "100", "--seeds", "1", "--replicas", "2", "--n-temps", "2", "--n-chains", "2",
             "--n-warmup", "10", "--n-draws", "4", "--min-draws", "2", "--plain-draws", "4", "--no-progress",
             "--no-predict"]
LLC_ARGS = ["--point", "5+", "--c", "6", "--n-chains", "2", "--n-burnin", "0", "--n-draws", "10"]


def _save_partial_run(d: Path, data: Path) -> None:
    """An unfinished training run (what `tms train` resumes from) at d/part_partial, lr 0.005."""
    import torch

    from tms.dynamics.train import TrainSettings

    arrays, rec = io.load_result(data / "train")
    settings = TrainSettings.from_record(rec["settings"])
    state = {"W": arrays["W"][0], "b": arrays["b"][0], "W_ck": arrays["W"], "b_ck": arrays["b"]}
    with io.recording_kind("train"):
        io.save_result(d / "part_partial", {k: torch.from_numpy(v) for k, v in state.items()},
                       {"train": dict(rec, settings=settings.as_record()), "blocks_done": 1})


@pytest.fixture(scope="module")
def results(data, tmp_path_factory):
    """Results of `tms transitions` (no LLC), `tms llc`, `tms posterior` and a partial training
    run; a reproduce-like folder with two posterior sweeps; a .npz of two data sets."""
    r = tmp_path_factory.mktemp("results")
    assert main(["transitions", "--input", str(data / "train"), "--out", str(r / "trans"), "--no-llc",
                 "--figures", str(r / "figs")]) == 0
    assert main(["llc", *LLC_ARGS, "--out", str(r / "llc")]) == 0
    assert main(["posterior", *POST_ARGS, "--out", str(r / "post"), "--figure", str(r / "figs" / "post.png")]) == 0
    _save_partial_run(r, data)
    summary = r / "post" / "c3_quick_b1_s0" / "summary_c3"
    for name in ("c6_quick_b1_s0", "c6_quick_b0.5_s0"):  # two candidate sweeps at the SGD run's c
        folder = r / "cmp" / "posterior_c6" / name
        folder.mkdir(parents=True)
        for suffix in (".npz", ".json"):
            (folder / f"summary_c6{suffix}").write_bytes(summary.with_suffix(suffix).read_bytes())
    (r / "cmp" / "sgd").mkdir()
    for suffix in (".npz", ".json"):
        (r / "cmp" / "sgd" / f"train_transitions{suffix}").write_bytes((r / f"trans{suffix}").read_bytes())
    rng = np.random.default_rng(0)
    np.savez(r / "two_sets.npz", X0=rng.random((50, 4)), X1=rng.random((50, 4)))
    _fake(r / "census", "census", dict(r=3, c=7, census=dict(n_prior=1)))  # the refusal reads only the record
    _fake(r / "fe" / "c4_quick_b1_s0" / "summary_c4", "free-energy", dict(c=4, seed=0, beta_lik=1.0, mc_draws=1))
    _fake(r / "post" / "c3_quick_b1_s0" / "susceptibility_c3", "susceptibility", dict(n_batches=7))
    return r


def _fake(path: Path, kind: str, settings: dict) -> None:
    """A record of `kind` with `settings` (no real arrays): what claim_output reads."""
    with io.recording_kind(kind):
        io.save_result(path, {"ns": np.arange(2)}, {"settings": settings})


# (id, argv, exit status, message fragment); {d} inputs, {r} pre-existing results, {o} empty output
TRUST_CASES = [
    # an input is never its own output
    ("trans-input-is-out", ["transitions", "--input", "{d}/train", "--out", "{d}/train", "--no-llc"], 2,
     "is also this command's input"),
    ("llc-checkpoints-is-out", ["llc", "--checkpoints", "{d}/train", "--out", "{d}/train", "--n-draws", "10"], 2,
     "is also this command's input"),
    # another kind of record at --out (even with --force)
    ("train-out-onto-posterior", ["train", *TRAIN_ARGS, "--out", "{r}/post/c3_quick_b1_s0/summary_c3"], 2,
     "holds a `tms posterior` result"),
    ("train-out-onto-posterior-force", ["train", *TRAIN_ARGS, "--force", "--out", "{r}/post/c3_quick_b1_s0/summary_c3"],
     2, "holds a `tms posterior` result"),
    ("llc-out-onto-train", ["llc", *LLC_ARGS, "--out", "{d}/train"], 2, "holds a `tms train` result"),
    ("trans-out-onto-llc", ["transitions", "--input", "{d}/train", "--out", "{r}/llc", "--no-llc"], 2,
     "holds a `tms llc` result"),
    # another setting under an existing --out: an error unless --force
    ("train-other-lr-over-partial", ["train", *TRAIN_ARGS, "--lr", "0.02", "--out", "{r}/part"], 2,
     "unfinished run"),
    ("train-other-lr-over-result", ["train", *TRAIN_ARGS, "--lr", "0.02", "--out", "{d}/train"], 2, "lr: 0.005"),
    ("trans-tol-over-default", ["transitions", "--input", "{d}/train", "--out", "{r}/trans", "--no-llc",
                                "--tol", "10"], 2, "--force"),
    ("llc-other-chains-over-llc", ["llc", *LLC_ARGS, "--n-chains", "3", "--out", "{r}/llc"], 2, "n_chains"),
    ("post-other-draws-over-sweep", ["posterior", *POST_ARGS, "--n-draws", "5", "--out", "{r}/post"], 2,
     "other settings"),
    ("census-other-settings", ["census", "--r", "3", "--c", "7", "--out", "{r}/census"], 2, "census.n_prior: 1 -> "),
    ("census-out-onto-llc", ["census", "--r", "3", "--c", "7", "--out", "{r}/llc"], 2, "holds a `tms llc` result"),
    ("fe-other-settings", ["free-energy", "--c", "4", "--ns", "100", "--out", "{r}/fe"], 2, "mc_draws: 1 -> "),
    ("susc-other-settings", ["susceptibility", "--run", "{r}/post/c3_quick_b1_s0", "--figure", "{o}/s.png"], 2,
     "n_batches: 7 -> 0"),
    # contradictory or ignored options name both
    ("llc-checkpoints-c", ["llc", "--checkpoints", "{d}/train", "--c", "9"], 2, "c = 9 is for point"),
    ("llc-checkpoints-n", ["llc", "--checkpoints", "{d}/train", "--n", "5000", "--n-draws", "10"], 2,
     "n = 5000 conflicts with checkpoints"),
    ("llc-point-every", ["llc", "--point", "5+", "--every", "2"], 2, "every = 2 is for checkpoints"),
    ("llc-partial-as-checkpoints", ["llc", "--checkpoints", "{r}/part_partial"], 2, "unfinished training run"),
    ("post-min-draws-over-draws", ["posterior", "--c", "3", "--min-draws", "50", "--n-draws", "5"], 2,
     "--min-draws 50 exceeds --n-draws 5"),
    ("post-llc-replaces-theory", ["posterior", "--c", "6", "--llc", "6=100"], 2, "--llc-override"),
    ("fe-seeds-with-data", ["free-energy", "--c", "4", "--seeds", "3", "--data", "{r}/two_sets.npz"], 2,
     "seeds 3 conflicts with data"),
    ("compare-two-sweeps", ["compare", "--results", "{r}/cmp"], 2, "2 posterior sweeps"),
    ("compare-unknown-sweep", ["compare", "--results", "{r}/cmp", "--sweep", "c6_full_b1_s0"], 2,
     "no posterior sweep"),
    # a NaN result exits non-zero
    ("loss-overflow-nan", ["loss", "--W", "[[1e200,0],[0,1]]"], 2, "non-finite loss"),
]


def _checksums(*folders: Path) -> dict:
    import hashlib

    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for d in folders for p in sorted(d.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("argv,code,fragment", [c[1:] for c in TRUST_CASES], ids=[c[0] for c in TRUST_CASES])
def test_no_result_is_overwritten_and_no_option_ignored(argv, code, fragment, data, results, tmp_path, monkeypatch,
                                                        capsys):
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)
    argv = [a.format(d=data, r=results, o=out) for a in argv]
    before = _checksums(data, results)
    status = main(argv)
    err = capsys.readouterr().err.strip()
    assert status == code, f"exit {status}; stderr: {err}"
    assert err.count("\n") == 0 and err.startswith("tms") and "Traceback" not in err, err
    assert fragment is None or fragment in err, err
    assert _checksums(data, results) == before, "a pre-existing result changed"
    assert not list(out.iterdir()), f"wrote {sorted(p.name for p in out.iterdir())}"


def test_force_replaces_a_result_of_the_same_kind_only(data, tmp_path, capsys):
    """--force retrains over a training result of other settings; the new record has the new lr."""
    run = tmp_path / "run"
    assert main(["train", *TRAIN_ARGS, "--out", str(run)]) == 0
    assert main(["train", *TRAIN_ARGS, "--lr", "0.02", "--out", str(run)]) == 2
    assert main(["train", *TRAIN_ARGS, "--lr", "0.02", "--out", str(run), "--force", "--threads", "3"]) == 0
    record = io.load_result(run)[1]
    assert record["settings"]["lr"] == 0.02 and record["provenance"]["kind"] == "train"
    # torch's count in force during the run: capped at one (--threads 3 goes to the compiled SGD block)
    assert record["provenance"]["torch_threads"] == 1
    assert main(["train", *TRAIN_ARGS, "--lr", "0.02", "--out", str(run)]) == 0  # the same settings: reused
    capsys.readouterr()


def test_transitions_rerun_reuses_and_force_replaces(data, tmp_path, capsys):
    out, figs = str(tmp_path / "t"), str(tmp_path / "figs")
    base = ["transitions", "--input", str(data / "train"), "--out", out, "--no-llc", "--figures", figs]
    assert main(base) == 0 and main(base) == 0  # an identical rerun is no overwrite
    assert main([*base, "--tol", "10"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main([*base, "--tol", "10", "--force"]) == 0
    assert io.load_result(out)[1]["settings"]["tol"] == 10


def test_compare_uses_the_sweep_it_is_told(results, capsys):
    assert main(["compare", "--results", str(results / "cmp"), "--sweep", "c6_quick_b1_s0"]) == 0
    assert "Traceback" not in capsys.readouterr().err
