"""`tms zoo`: the table prints (values from the zoo), --json parses, the figure is a PNG."""
import json

from tms.theory import zoo
from tms.cli.main import main


def test_zoo_table_and_figure(tmp_path, capsys):
    out = tmp_path / "zoo.png"
    assert main(["zoo", "--c", "6", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    lines = {ln.split()[0]: ln.split() for ln in text.splitlines() if ln.strip()}
    pts = zoo.critical_points(6)
    for q in pts:
        row = lines[q.label]
        assert abs(float(row[1]) - q.loss) < 1e-8
        assert row[2] == (f"{q.llc:.1f}" if q.llc is not None else "-")
    order = [ln.split()[0] for ln in text.splitlines() if ln.split() and ln.split()[0] in {q.label for q in pts}]
    assert order == [q.label for q in pts]  # sorted by loss
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and 10_000 < len(data) < 500_000


def test_zoo_json(tmp_path, capsys):
    assert main(["zoo", "--c", "6", "--json", "--no-plot"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["c"] == 6 and rec["figure"] is None
    by = {r["label"]: r for r in rec["points"]}
    assert by["5"]["llc"] == 7.0 and by["4"]["llc"] is None and by["4"]["smooth"] is False
    assert abs(by["6"]["loss"] - zoo.critical_point(6, "6").loss) < 1e-15


def test_zoo_bad_c(capsys):
    assert main(["zoo", "--c", "2", "--no-plot"]) == 2
    assert "c must be an integer between 3 and 16" in capsys.readouterr().err  # the parameter is --c
