"""Settings objects validate once, round-trip through their record, and generate the CLI
flags; the one reuse rule (tms.core.io.reuse_problem) says why a saved result is not reused."""
import argparse
import json
from dataclasses import dataclass

import pytest

from tms.cli import common
from tms.core import io
from tms.core.settings import Settings, setting


@dataclass(frozen=True)
class Demo(Settings):
    n_draws: int = setting(100, "draws kept", minimum=2, maximum=10**6)
    eps: float = setting(1e-3, "step size", positive=True)
    init: str = setting("4gon", "start", choices=("4gon", "random"))
    ns: tuple[int, ...] = setting((100, 200), "sample sizes", minimum=1)
    progress: bool = setting(True, "progress bar")
    nbeta: float | None = setting(None, "inverse temperature", positive=True, optional=True)

    def check(self):
        if self.init == "random" and self.n_draws < 10:
            raise ValueError("init random needs n_draws >= 10")


@pytest.mark.parametrize("bad, words", [
    (dict(n_draws=1), "n_draws must be >= 2"), (dict(n_draws=2.5), "n_draws must be an integer"),
    (dict(n_draws=True), "n_draws must be an integer"), (dict(eps=0.0), "eps must be > 0"),
    (dict(eps=float("nan")), "eps must be a finite number"), (dict(init="x"), "init must be one of 4gon, random"),
    (dict(ns=(0, 5)), "ns[0] must be >= 1"), (dict(ns="100"), "ns must be a sequence"),
    (dict(progress=1), "progress must be True or False"), (dict(nbeta=-1.0), "nbeta must be > 0"),
    (dict(foo=1), "unknown setting(s) foo"), (dict(init="random", n_draws=5), "init random needs n_draws >= 10"),
])
def test_bad_values_are_refused_naming_the_field(bad, words):
    with pytest.raises(ValueError) as err:
        Demo().replace(**bad)
    assert words in str(err.value)


def test_record_round_trip_and_normalisation():
    s = Demo(eps=1, ns=[300, 100])
    assert s.eps == 1.0 and isinstance(s.eps, float) and s.ns == (300, 100)
    rec = json.loads(json.dumps(s.as_record()))
    assert rec["ns"] == [300, 100] and Demo.from_record(rec) == s
    with pytest.raises(ValueError, match="unknown setting"):
        Demo.from_record(dict(rec, old_name=1))


def test_flags_are_the_fields():
    p = argparse.ArgumentParser()
    common.add_settings(p, Demo, preset=Demo(n_draws=50))
    assert "(default 50)" in p.format_help()
    args = p.parse_args(["--n-draws", "7", "--ns", "1:5:2", "--no-progress", "--nbeta", "3"])
    assert common.settings_from(args, Demo(eps=0.5)) == Demo(n_draws=7, eps=0.5, ns=(1, 3, 5), progress=False, nbeta=3.0)
    assert common.settings_from(p.parse_args([]), Demo(eps=0.5)) == Demo(eps=0.5)


def test_reuse_rule(tmp_path, monkeypatch):
    path = tmp_path / "r"
    io.save_result(path, {"x": [1.0]}, dict(settings=Demo()))
    assert io.reuse_problem(path, Demo()) is None
    assert "other settings" in io.reuse_problem(path, Demo(n_draws=3))
    assert "no file" in io.reuse_problem(tmp_path / "missing", Demo())
    raw = json.loads(path.with_suffix(".json").read_text())
    path.with_suffix(".json").write_text(json.dumps(raw) + " ")
    assert "different writes" in io.reuse_problem(path, Demo())  # an edited record fails integrity
    with monkeypatch.context() as m:
        m.setattr(io, "package_version", lambda: "0.0.1")
        io.save_result(path, {"x": [1.0]}, dict(settings=Demo()))
    assert "made by tms 0.0.1" in io.reuse_problem(path, Demo())
