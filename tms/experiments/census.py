"""`tms census` as one Python function: the numerical census of the critical points of the
population loss at any (r, c) (tms.theory.census), saved like every result and resumed.

    from tms.experiments import census
    res = census.run(3, 7)                          # QUICK settings, saved at results/census/r3_c7
    res = census.run(3, 7, n_prior=256, out="x/c7")  # settings= with **changes
    [(q.label, q.loss, q.index, q.llc) for q in res.points]
"""
from __future__ import annotations

from tms.core import checks, io
from tms.theory.census import MAX_C, MAX_R, QUICK, Census, CensusSettings, census


def default_out(r: int, c: int) -> str:
    """Where `tms census` saves by default: results/census/r{r}_c{c} (.npz + .json)."""
    return f"results/census/r{r}_c{c}"


def run(r: int = 3, c: int = 7, *, settings: CensusSettings = QUICK, out: str | None = None, device=None,
        threads: int | None = None, progress: bool = True, force: bool = False, **changes) -> Census:
    """The census at (r, c) with `settings` (and `changes`, e.g. n_prior=256), saved at `out`
    (default `default_out(r, c)`; reused there when its settings and package version match, and
    resumed chunk by chunk otherwise). device is checked and accepted: the census solves many
    tiny float64 problems and runs on the CPU. threads: torch threads for the run (None: torch's).
    A census of other settings at `out` is an error unless force=True (tms.core.io.claim_output)."""
    checks.positive_int(r, "r", minimum=2, maximum=MAX_R)
    checks.positive_int(c, "c", minimum=3, maximum=MAX_C)
    checks.device(device)
    threads = checks.threads(threads, "threads")
    out = str(checks.output_stem(out or default_out(r, c), "out"))
    wanted = settings.replace(**changes) if changes else settings
    io.claim_output(out, "census", dict(r=r, c=c, census=wanted.as_record()), force=force)
    with checks.torch_threads(threads), io.recording_kind("census"):
        return census(r, c, settings, out=out, progress=progress, **changes)
