"""The progress factory (no carriage returns off a terminal) and the work estimates."""
import io as stdio
import sys

import pytest

from tms.core import progress, work


class _Tty(stdio.StringIO):
    def isatty(self):
        return True


def test_off_a_terminal_the_bar_writes_plain_lines_without_carriage_returns(monkeypatch):
    err = stdio.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    b = progress.bar(total=4, desc="phase", interval=0.0)
    assert isinstance(b, progress.PlainBar)
    for _ in range(4):
        b.update(1)
    b.close()
    text = err.getvalue()
    assert "\r" not in text
    assert text.splitlines()[-1].startswith("phase: 4/4 (")
    assert len(text.splitlines()) == 4


def test_plain_bar_is_silent_for_short_phases_and_when_disabled(monkeypatch):
    err = stdio.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    assert list(progress.bar(range(5), desc="short")) == list(range(5))  # default interval: 10 s
    assert list(progress.bar(range(3), desc="off", disable=True, interval=0.0)) == [0, 1, 2]
    assert err.getvalue() == ""


def test_on_a_terminal_the_bar_is_tqdm(monkeypatch):
    monkeypatch.setattr(sys, "stderr", _Tty())
    b = progress.bar(total=3, desc="tty", leave=False)
    assert not isinstance(b, progress.PlainBar)
    b.close()


def test_step_rate_is_linear_in_steps_and_items():
    rate = work.StepRate(overhead=1e-3, per_item=1e-5)
    assert rate.seconds(1000, 0) == pytest.approx(1.0)
    assert rate.seconds(1000, 100) == pytest.approx(2.0)
    assert rate.seconds(2000, 100) == pytest.approx(2 * rate.seconds(1000, 100))


def test_the_issues_unbounded_runs_are_announced_and_a_default_run_is_not():
    big = [work.llc(centres=1, n_chains=100_000, steps=5_000_000, n=1000, empirical=False),
           work.train(runs=10_000, epochs=1_000_000, n=1000, batch_size=20),
           work.posterior(points=1, seeds=2, replicas=10_000, n_temps=10, rounds=220, max_steps=40)]
    small = work.llc(centres=1, n_chains=8, steps=8000, n=1000, empirical=False)
    for est in big:
        out = stdio.StringIO()
        assert work.announce(est, stream=out), est
        assert out.getvalue().startswith("tms: expect about ") and "progress follows" in out.getvalue()
    out = stdio.StringIO()
    assert not work.announce(small, stream=out) and out.getvalue() == ""
    out = stdio.StringIO()
    assert work.announce(big[0], stream=out, progress=False) and "no progress is shown" in out.getvalue()


@pytest.mark.parametrize("seconds, text", [(45, "45 s"), (600, "10 min"), (4 * 3600, "4.0 h"), (86400 * 3, "3.0 days")])
def test_duration_reads_in_the_unit_a_person_would_use(seconds, text):
    assert work.duration(seconds) == text
