"""`tms census`: the table is the function's census (same order, numbers), --json parses, the
census is saved where --out says, bad input is one line and exit status 2."""
import json

import pytest

from tms.cli import common
from tms.cli.main import main
from tms.core import io
from tms.experiments import census as census_command
from tms.theory import zoo
from tms.theory.census import QUICK

ARGS = ["--r", "2", "--c", "4", "--n-prior", "3", "--n-gd", "2", "--gd-steps", "100", "--max-iter", "80"]
SETTINGS = QUICK.replace(n_prior=3, n_gd=2, gd_steps=100, max_iter=80)


def test_census_table_is_the_function_result(tmp_path, capsys):
    out = tmp_path / "c4"
    assert main(["census", *ARGS, "--out", str(out), "--rows", "1000", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert io.result_exists(out)
    res = census_command.run(2, 4, settings=SETTINGS, out=str(out), progress=False)  # the saved census
    rows = [ln.split() for ln in text.splitlines() if ln.split() and ln.split()[0] in {q.label for q in res.points}]
    assert [row[0] for row in rows] == [q.label for q in res.points]  # every point, sorted by loss
    for row, q in zip(rows, res.points):
        assert abs(float(row[1]) - q.loss) < 1e-9 and int(row[2]) == q.index and int(row[7]) == q.found
        assert row[4] == (f"{q.llc:.1f}" if q.llc is not None else "-")
    assert f"{res.n_starts} starts" in text and "4 " in text.splitlines()[2]  # the 4-gon (L = 0) first


def test_census_json_and_reuse(tmp_path, capsys):
    out = tmp_path / "c4"
    assert main(["census", *ARGS, "--out", str(out), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["r"] == 2 and rec["c"] == 4 and rec["settings"]["n_prior"] == 3
    assert rec["points"][0]["label"] == "4" and abs(rec["points"][0]["loss"]) < 1e-12
    before = out.with_suffix(".json").read_bytes()
    assert main(["census", *ARGS, "--out", str(out)]) == 0  # same settings: the saved census, not rewritten
    assert out.with_suffix(".json").read_bytes() == before


@pytest.mark.parametrize("argv, message", [
    (["--r", "1", "--c", "4"], "r must be an integer between 2 and 6"),
    (["--r", "2", "--c", "11"], "c must be an integer between 3 and 10"),
    (["--r", "2", "--c", "4", "--n-prior", "-1"], "n_prior must be >= 0"),
    (["--r", "2", "--c", "4", "--scales", "0.5,-1"], "scales[1] must be > 0"),
])
def test_census_bad_input(tmp_path, capsys, argv, message):
    assert main(["census", *argv, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


ARGS5 = ["--r", "2", "--c", "5", "--n-prior", "3", "--n-gd", "2", "--gd-steps", "100", "--max-iter", "80"]


def _sgld_cells(text: str, labels: set) -> dict:
    """{label: SGLD column text} from the census table printed with --llc-points."""
    header = next(ln for ln in text.splitlines() if ln.startswith("label"))
    end = header.index("SGLD lambda") + len("SGLD lambda")  # a right-aligned 15-character column
    return {ln.split()[0]: ln[end - 15:end].strip() for ln in text.splitlines() if ln.split() and ln.split()[0] in labels}


def test_llc_points_give_the_5gon_its_sgld_lambda_and_a_rerun_reuses_it(tmp_path, capsys):
    """r = 2, c = 5: the 5-gon's SGLD lambda (the lab's protocol) lies within 4 of its standard
    errors of the zoo's rank/2 = 7 (tests/llc/test_llc_converge: the protocol's bias at k-gons is
    about one unit, well inside); saddles among the 4 lowest points are 'saddle: n/a'; the rerun
    reuses the saved lambdas and prints the same table."""
    out = tmp_path / "c5"
    argv = ["census", *ARGS5, "--out", str(out), "--llc-points", "4", "--threads", "1", "--no-progress"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    res = census_command.run(2, 5, settings=QUICK.replace(n_prior=3, n_gd=2, gd_steps=100, max_iter=80),
                             out=str(out), progress=False, llc_points=4)  # the saved census and lambdas
    first4 = res.points[:4]
    assert [q.label for q in res.llcs] == [q.label for q in first4 if q.kind != "saddle"]
    five = res.llcs[0]
    assert five.label == "5" and five.rank_llc == zoo.critical_point(5, "5").llc == 7.0
    assert abs(five.sgld - 7.0) <= 4 * five.sgld_se and five.sgld_se > 0
    cells = _sgld_cells(text, {q.label for q in res.points})
    assert all(cells[q.label] == "saddle: n/a" for q in first4 if q.kind == "saddle")
    assert any(q.kind == "saddle" for q in first4) and cells[res.points[4].label] == "-"
    for q in res.llcs:
        assert cells[q.label] == common.plus_minus(q.sgld, q.sgld_se)
    saved = census_command.llc_path(out) + ".json"
    before = open(saved, "rb").read()
    assert main(argv) == 0
    assert capsys.readouterr().out == text and open(saved, "rb").read() == before


def test_llc_points_zero_is_the_plain_census(tmp_path, capsys):
    out = tmp_path / "c4"
    assert main(["census", *ARGS, "--out", str(out), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["llcs"] == [] and not io.result_exists(census_command.llc_path(out))
    assert main(["census", *ARGS, "--out", str(out), "--llc-points", "-1"]) == 2
    err = capsys.readouterr().err
    assert "llc_points must be >= 0" in err and len(err.strip().splitlines()) == 1
