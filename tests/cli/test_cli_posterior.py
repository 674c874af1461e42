"""`tms posterior`: a tiny real run end to end (results, summary, figure), resume, errors."""
import numpy as np
import pytest

from tms.core import io
from tms.bayes import posterior, predictions, sweep
from tms.theory.zoo import TransitionRow
from tms.cli.main import main
from tms.cli.posterior import parse_grid, parse_llcs

TINY = ["--seeds", "1", "--n-chains", "3", "--replicas", "2", "--n-temps", "3", "--n-warmup", "8", "--n-draws", "6",
        "--max-steps", "6", "--no-progress"]


def test_parse_grid_and_llcs():
    assert parse_grid("100:400:100") == [100, 200, 300, 400]
    assert parse_grid("100,150") == [100, 150]
    assert parse_llcs(["4=3.5", "4+=4"]) == {"4": 3.5, "4+": 4.0}
    with pytest.raises(ValueError, match="--ns"):
        parse_grid("100:50:10")
    with pytest.raises(ValueError, match="--llc"):
        parse_llcs(["4"])


def test_cli_runs_saves_and_draws(tmp_path, monkeypatch, capsys):
    pytest.importorskip("tms.theory.phases")
    # the zoo's n_c are tested with the zoo; here a fixed row checks that lines reach the figure
    row = TransitionRow(alpha="5", beta="6", L_alpha=0.1, L_beta=0.08, dL=-0.02, lam_alpha=5.0, lam_beta=6.5,
                        dlambda=1.5, dc=2.7, n_c=150.0)
    monkeypatch.setattr(predictions, "predicted_transitions", lambda c, beta_lik, llcs=None: [row])
    monkeypatch.setattr(predictions, "_omitted", lambda c, result, llcs: "")
    fig = tmp_path / "f.png"
    argv = ["posterior", "--c", "3", "--ns", "50,100", "--out", str(tmp_path / "res"), "--figure", str(fig), *TINY]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "posterior mass (replica exchange)" in text and "chain occupancy (plain chains, NOT posterior mass)" in text
    assert "predicted n_c 5 -> 6: 150" in text
    # these tiny chains fail the rank diagnostics of their saved draws, and the table says so
    assert ("saved draws (rank R-hat > 1.01, bulk / tail ESS < 100 of loss and energy): 2 of 2 data sets flagged: "
            "n=50 s0:") in text
    assert fig.exists() and fig.stat().st_size > 10_000
    run_dir = tmp_path / "res" / "c3_quick_b1_s0"
    arrays, rec = io.load_result(run_dir / "summary_c3")
    assert list(arrays["ns"]) == [50, 100]
    np.testing.assert_allclose(arrays["mass"].sum(1), 1.0)  # every draw gets exactly one label
    np.testing.assert_allclose(arrays["occupancy"].sum(1), 1.0)
    assert rec["settings"]["beta_lik"] == 1.0 and rec["transitions"][0]["n_c"] == 150.0
    assert "supplied with --llc" not in rec["omitted_transitions"]
    # second call: nothing is sampled again
    monkeypatch.setattr(sweep, "_run_chunk", lambda *a, **k: pytest.fail("resumed run resampled"))
    assert main(argv) == 0
    # a lambda supplied for a phase of a drawn n_c line is named in the caption; others are not
    # (the mocked n_c row names c = 6 labels, which --llc accepts only if the zoo has them)
    monkeypatch.setattr("tms.theory.zoo.labels", lambda c: ["3", "4", "5", "6"])
    assert main(argv + ["--llc", "5=6.25", "--llc", "4=3"]) == 0
    _, rec = io.load_result(run_dir / "summary_c3")
    assert "lambda supplied with --llc (not zoo theory): 5 = 6.25" in rec["omitted_transitions"]
    assert "4 = 3" not in rec["omitted_transitions"]


def test_cli_errors_are_one_line(capsys):
    assert main(["posterior", "--c", "6", "--ns", "abc", "--no-predict"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tms posterior: error: --ns") and err.count("\n") == 1
    assert main(["posterior", "--c", "6", "--ns", "100", "--beta-lik", "-1", "--no-predict"]) == 2
    assert "beta_lik must be a finite number > 0" in capsys.readouterr().err
    assert main(["posterior", "--c", "6", "--ns", "100", "--save-every", "-1", "--no-predict"]) == 2
    assert "save_every must be" in capsys.readouterr().err
    assert main(["posterior", "--c", "6", "--ns", "100", "--n-warmup", "3", "--no-predict"]) == 2
    assert "n_warmup must be >= 4" in capsys.readouterr().err


def test_posterior_command_equals_phase_sweep(tmp_path):
    """`tms posterior` with sampler options is tms.bayes.posterior.phase_sweep with the same settings
    (through tms.experiments.posterior.run): same masses, occupancies and per-n records."""
    argv = ["posterior", "--c", "3", "--ns", "50,100", "--seed", "2", "--no-predict", "--out", str(tmp_path / "res"),
            "--figure", str(tmp_path / "f.png"), *TINY]
    assert main(argv) == 0
    cfg = dict(seeds=1, n_chains=3, replicas=2, n_temps=3, n_warmup=8, n_draws=6, max_steps=6)
    api = posterior.phase_sweep(3, [50, 100], seed=2, predict=False, **cfg)
    arrays, rec = io.load_result(tmp_path / "res" / "c3_quick_b1_s2" / "summary_c3")
    assert rec["settings"] == io.jsonable(api.settings) and rec["phases"] == api.phases
    for key in ("ns", "mass", "mass_se", "occupancy", "occupancy_se"):
        np.testing.assert_array_equal(arrays[key], getattr(api, key), err_msg=key)
