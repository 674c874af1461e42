"""`tms reproduce` end to end at the test-only tiny scale, and the report's crossing rule."""
import subprocess
import sys

import numpy as np
import pytest

from tms.cli.main import main
from tms.report.markdown import mass_crossing

FIGURES = ["zoo_c4.png", "zoo_c5.png", "zoo_c6.png", "posterior_c4.png", "posterior_c5.png",
           "posterior_c6.png", "sgd_trajectory.png", "sgd_many.png", "random/sgd_trajectory.png", "random/sgd_many.png",
           "free_energy_c6.png", "susceptibility_c4.png", "susceptibility_c5.png", "susceptibility_c6.png"]


def test_mass_crossing_interpolates_in_log_n():
    ns = np.array([100, 200, 400, 800])
    # beta - alpha = log2(n / 300): crosses at n = 300 exactly, linear in log n
    d = np.log2(ns / 300)
    mass = np.stack([0.5 - d / 4, 0.5 + d / 4], 1)
    assert mass_crossing(ns, mass, ["a", "b"], "a", "b") == "300"
    assert mass_crossing(ns, mass, ["a", "b"], "b", "a") == "-"  # a starts ahead and falls behind
    behind = np.tile([0.9, 0.1], (4, 1))
    assert mass_crossing(ns, behind, ["a", "b"], "a", "b") == "> 800"
    assert mass_crossing(ns, behind, ["a", "b"], "b", "a") == "< 100"
    assert mass_crossing(ns, mass, ["a", "b"], "a", "c") == "-"
    negligible = np.stack([np.full(4, 0.02), np.linspace(0.0, 0.04, 4)], 1)  # b overtakes a, both < 5%
    assert mass_crossing(ns, negligible, ["a", "b"], "a", "b") == "-"
    assert mass_crossing(ns, negligible, ["a", "b"], "a", "b", min_mass=0.01) != "-"


def test_reproduce_tiny_writes_every_figure_and_report(tmp_path, capsys):
    out, figs = tmp_path / "res", tmp_path / "figs"
    argv = ["reproduce", "--tiny", "--out", str(out), "--figures", str(figs), "--seed", "3"]
    assert main(argv) == 0
    for name in FIGURES:
        data = (figs / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
    report = (figs / "REPORT.md").read_text()
    for needle in ["## 1. The k-gon zoo", "## 2. Bayesian phase transitions", "## 3. Dynamical transitions",
                   "## 4. Every setting and seed", "## 3b. Susceptibilities", "BIF self", "predicted n_c", "![zoo c=6](zoo_c6.png)",
                   "![sgd_trajectory.png](sgd_trajectory.png)", '"seed"']:
        assert needle in report, needle
    # every figure is embedded
    for name in FIGURES:
        assert f"]({name})" in report, name
    # the SGD-vs-Bayes comparison reads the same results: one row per observed SGD transition
    import json

    from tms.report.comparison import compare

    record = json.loads((out / "sgd" / "train_transitions.json").read_text())
    rows = compare(out)
    assert [(r.src, r.dst, r.sgd_count) for r in rows] == [
        (a["src"], a["dst"], a["count"]) for a in record["antecedents"]]
    capsys.readouterr()
    assert main(["compare", "--results", str(out)]) == 0
    assert ("antecedent" in capsys.readouterr().out) == bool(rows)
    assert main(["compare", "--results", str(tmp_path / "missing")]) == 2
    capsys.readouterr()
    # a second call reuses every stage
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert text.count("reused") == 11  # every stage (zoo, zoo_llc, 3 posterior, 2 x train + transitions, free
    # energy, susceptibility)
    # an interrupted stage (marker still "running") resumes over its partial results
    marker = out / "stages" / "posterior_c4.json"
    rec = json.loads(marker.read_text())
    marker.write_text(json.dumps(dict(settings=rec["settings"], status="running")))
    sentinel = out / "posterior_c4" / "partial.txt"
    sentinel.write_text("left by an interrupted run")
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "[posterior_c4] resuming" in text and text.count("reused") == 10
    assert sentinel.exists() and json.loads(marker.read_text())["status"] == "done"
    # a different seed invalidates the random stages, not the zoo
    assert main(argv[:-1] + ["4"]) == 0
    text = capsys.readouterr().out
    assert "[zoo] reused" in text and "[train] running" in text
    assert not sentinel.exists()  # changed settings start the stage clean


@pytest.mark.parametrize("bad, needle", [(["--seed", "-1"], "--seed"), (["--threads", "0"], "--threads")])
def test_reproduce_bad_arguments_one_line_error(tmp_path, bad, needle):
    proc = subprocess.run([sys.executable, "-m", "tms.cli.main", "reproduce", "--tiny", "--out", str(tmp_path), *bad],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and needle in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
