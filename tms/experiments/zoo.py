"""`tms zoo` as one Python function (SPEC 2): the k-gon critical points at c with their losses,
learning coefficients, prior terms and Hessian ranks, optionally the regular k-gon report,
and the figure.

    from tms.experiments import zoo
    s = zoo.run(6, plot=False); [q.label for q in s.points]
"""
from __future__ import annotations

from dataclasses import dataclass

from tms.core import checks, work
from tms.theory import kgon, zoo
from tms.theory.kgon import KgonReportRow
from tms.theory.zoo import CriticalPoint
from tms.report.plots.zoo import plot_zoo

MAX_C = 16  # the zoo's search box and cost are validated up to here (~9 s at c = 16)
ZOO_NOTICE_S = 20.0  # a zoo expected to take longer is announced (the solves are silent for seconds)
MAX_KGONS = 32  # the k-gon search costs ~k/10 s per k on one core: 3..32 is about a minute


@dataclass
class ZooSurvey:
    """c; points: the zoo's CriticalPoints sorted by loss; kgons: the k-gon report rows for
    k = 3..KMAX (None if not asked); figure: the figure path (None if not drawn)."""

    c: int
    points: list[CriticalPoint]
    kgons: list[KgonReportRow] | None
    figure: str | None

    def as_record(self) -> dict:
        """JSON-ready (what `tms zoo --json` prints): c, r, points, kgons, figure."""
        return dict(c=self.c, r=zoo.R, points=[q.as_record() for q in self.points],
                    kgons=None if self.kgons is None else [row.as_record() for row in self.kgons], figure=self.figure)


def run(c: int = 6, *, kgons: int = 0, out: str | None = None, plot: bool = True, device=None,
        progress: bool = True) -> ZooSurvey:
    """The zoo at c (3..MAX_C) and, with kgons = KMAX >= 3, which k in 3..KMAX have a regular
    k-gon critical point; the figure at `out` (default results/figures/zoo_c{c}.png) unless
    plot=False. device is checked and accepted: the Newton solves are tiny and run on the CPU."""
    checks.device(device)
    c = checks.positive_int(c, "c", minimum=3, maximum=MAX_C)
    if kgons != 0:
        checks.positive_int(kgons, "kgons (0 = off)", minimum=3, maximum=MAX_KGONS)
    fig = checks.output_file(out or f"results/figures/zoo_c{c}.png", "out", suffixes=checks.FIGURE_SUFFIXES) if plot else None
    if progress:
        work.announce(work.zoo(c), bound=ZOO_NOTICE_S)
    pts = zoo.critical_points(c, progress=progress)
    report = kgon.kgon_report(range(3, kgons + 1), progress=progress) if kgons else None
    drawn = plot_zoo([q.as_record() for q in pts], fig, c) if fig is not None else None
    return ZooSurvey(c, pts, report, str(drawn) if drawn else None)
