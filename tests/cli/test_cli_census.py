"""`tms census`: the table is the function's census (same order, numbers), --json parses, the
census is saved where --out says, bad input is one line and exit status 2."""
import json

import pytest

from tms.cli.main import main
from tms.core import io
from tms.experiments import census as census_command
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
