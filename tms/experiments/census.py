"""`tms census` as one Python function: the numerical census of the critical points of the
population loss at any (r, c) (tms.theory.census), saved like every result and resumed; with
llc_points=K, the SGLD lambda (the lab's protocol, tms.llc.census) of the K lowest-loss points
beside rank/2, saved beside the census (OUT_llc) and reused.

    from tms.experiments import census
    res = census.run(3, 7)                          # QUICK settings, saved at results/census/r3_c7
    res = census.run(3, 7, n_prior=256, out="x/c7")  # settings= with **changes
    [(q.label, q.loss, q.index, q.llc) for q in res.points]
    res = census.run(2, 5, llc_points=3)            # tms census --r 2 --c 5 --llc-points 3
    {q.label: (q.sgld, q.sgld_se) for q in res.llcs}  # saddles among the 3: no row (not a local LLC)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from tms.core import checks, io
from tms.core.settings import Settings, setting
from tms.llc.census import CensusLLC, point_llcs
from tms.theory.census import MAX_C, MAX_R, QUICK, Census, CensusSettings, census


@dataclass(frozen=True)
class CensusLLCSettings(Settings):
    """The SGLD lambdas of `tms census` (tms.llc.census: the lab's protocol, seeded by the census's
    seed): how many of the lowest-loss points, chains per point, burn-in steps (and as many draws)."""

    llc_points: int = setting(0, "lowest-loss census points given an SGLD lambda (0: none; saddles among them "
                                 "are skipped: SGLD at a saddle is not a local LLC)", minimum=0, maximum=10**4)
    llc_chains: int = setting(8, "SGLD chains per census point", minimum=1, maximum=1024)
    llc_steps: int = setting(4000, "SGLD burn-in steps and as many kept draws (the lab's protocol: 4000)",
                             minimum=20, maximum=10**6)


@dataclass
class CensusRun(Census):
    """run's result: the Census (every field and method) and the SGLD lambdas of the local minima
    among its llc_points lowest points (CensusLLC rows in loss order; empty when llc_points is 0)."""

    llcs: list[CensusLLC] = field(default_factory=list)


def default_out(r: int, c: int) -> str:
    """Where `tms census` saves by default: results/census/r{r}_c{c} (.npz + .json)."""
    return f"results/census/r{r}_c{c}"


def llc_path(out) -> str:
    """Where the SGLD lambdas of the census saved at `out` go: OUT_llc (.npz + .json)."""
    return f"{out}_llc"


def run(r: int = 3, c: int = 7, *, settings: CensusSettings = QUICK, out: str | None = None, device=None,
        threads: int | None = None, progress: bool = True, force: bool = False, llc_points: int = 0,
        llc_chains: int = 8, llc_steps: int = 4000, **changes) -> CensusRun:
    """The census at (r, c) with `settings` (and `changes`, e.g. n_prior=256), saved at `out`
    (default `default_out(r, c)`; reused there when its settings and package version match, and
    resumed chunk by chunk otherwise). device is checked and accepted: the census solves many
    tiny float64 problems and runs on the CPU. threads: chunks of starts converged at once, torch one
    thread each (None: every core).
    A census of other settings at `out` is an error unless force=True (tms.core.io.claim_output).
    llc_points, llc_chains, llc_steps (CensusLLCSettings): the SGLD lambdas, saved at
    llc_path(out) and reused there with the same census and sampler settings."""
    checks.positive_int(r, "r", minimum=2, maximum=MAX_R)
    checks.positive_int(c, "c", minimum=3, maximum=MAX_C)
    checks.device(device)
    threads = checks.threads(threads, "threads")
    sgld = CensusLLCSettings(llc_points=llc_points, llc_chains=llc_chains, llc_steps=llc_steps)
    out = str(checks.output_stem(out or default_out(r, c), "out"))
    wanted = settings.replace(**changes) if changes else settings
    io.claim_output(out, "census", dict(r=r, c=c, census=wanted.as_record()), force=force)
    if sgld.llc_points:
        io.claim_output(llc_path(out), "census", None, force=force)  # never another command's result
    with checks.torch_threads(threads, torch_cap=1), io.recording_kind("census"):
        cs = census(r, c, settings, out=out, progress=progress, **changes)
        llcs = point_llcs(cs, cs.points[:sgld.llc_points], sgld.llc_chains, sgld.llc_steps, cs.settings.seed,
                          out=llc_path(out)) if sgld.llc_points else []
    return CensusRun(**{f.name: getattr(cs, f.name) for f in dataclasses.fields(Census)}, llcs=llcs)
