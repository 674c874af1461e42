"""Work estimates: how long a run will take, said before it starts when that is long.

A run's cost is a count of steps times a per-step time that grows with the batch the step
moves: `seconds = steps * (overhead + per_item * items)`. The two rates of each kind of step
are stored below, measured on the 2-core development machine with one torch thread (a
faster machine finishes sooner; the estimate is an order of magnitude, not a promise). Above
`BOUND_S` a command prints, before any work, `tms: expect about 3.2 h (...)`
to stderr; every long phase also shows progress (tms.core.progress).

    est = work.llc(centres=1, n_chains=100_000, steps=5_000_000, n=1000, empirical=False)
    work.announce(est)          # prints when est.seconds > BOUND_S; returns whether it did

What the commands say before the runs a new user tried (tests/cli/test_cli_unix_manners.py):
`tms llc --point 6 --n-chains 100000 --n-burnin 5000000` about 58 days; `tms train --runs
10000 --epochs 1000000` about 5.8 days; `tms posterior --c 6 --replicas 10000` about 26 h;
`tms zoo --c 16` about 70 s (its Newton solves took 62 s of CPU here), then progress lines.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

BOUND_S = 600.0  # runs expected to take longer than 10 minutes are announced with their estimate


@dataclass(frozen=True)
class StepRate:
    """Seconds per step: `overhead` (Python and kernel launches) + `per_item` per batch item."""

    overhead: float
    per_item: float

    def seconds(self, steps: float, items: float) -> float:
        return float(steps) * (self.overhead + self.per_item * float(items))


# Measured with one thread at c = 6 (200 steps at 1 and at 256 chains or runs; HMC: 40 rounds of
# 16 ticks at 16 and 256 chains, n = 300):
SGLD_POPULATION = StepRate(2e-3, 1e-5)  # items: centres x chains (exact population loss)
SGLD_MINIBATCH = StepRate(2e-3, 1e-8)  # items: centres x chains x minibatch rows per step
# SGD: the compiled epoch block (tms.dynamics.train_compiled), one thread: 0.4-0.6 us a run-step
# and ~0.3 us of drawing the data order (benchmarks/bench_train.py; protocol 32 x 225,000 in 8 s)
SGD = StepRate(2e-6, 1e-6)  # items: runs (minibatch 20)
# HMC: the compiled round (tms.samplers.compiled), one thread: 0.7-0.75 us a chain-tick from 256
# chains, ~0.25 ms a round and the sweep's per-round bookkeeping (benchmarks/bench_posterior.py)
HMC_TICK = StepRate(1e-4, 8e-7)  # steps: rounds x leapfrog ticks; items: chains (data sets x ladders x temps)
ZOO_START_S, ZOO_PER_C6 = 3.0, 4e-6  # the zoo's solves: 3 s + 4e-6 c^6 s (measured 4 s at c = 8, 9 s at 12, 62 s at 16)


@dataclass(frozen=True)
class WorkEstimate:
    """what: the run in words; units: its count of steps x items; seconds: the expected wall time."""

    what: str
    units: float
    seconds: float

    def describe(self) -> str:
        """'about 3.2 h (1.0e+12 chain-steps of SGLD)'."""
        return f"about {duration(self.seconds)} ({self.units:.1e} {self.what})"


def duration(seconds: float) -> str:
    """'45 s', '12 min', '3.2 h', '4.1 days'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def llc(*, centres: int, n_chains: int, steps: int, n: int | None, empirical: bool,
        batch_size: int | None = None) -> WorkEstimate:
    """SGLD over centres x n_chains chains for `steps` steps (burn-in + draws). A full-batch L_n
    costs what the population loss does (the sorted O(c^2 log n) form: measured within 10% at
    n = 1000); a minibatch costs per row."""
    chains = centres * n_chains
    if empirical and batch_size is not None:
        return WorkEstimate("chain-steps of minibatch SGLD", chains * steps,
                            SGLD_MINIBATCH.seconds(steps, chains * batch_size))
    return WorkEstimate("chain-steps of SGLD", chains * steps, SGLD_POPULATION.seconds(steps, chains))


def train(*, runs: int, epochs: int, n: int, batch_size: int) -> WorkEstimate:
    """SGD over `runs` runs for epochs x ceil(n / batch_size) steps each."""
    steps = epochs * -(-n // batch_size)
    return WorkEstimate("run-steps of SGD", runs * steps, SGD.seconds(steps, runs * batch_size / 20))


def posterior(*, points: int, seeds: int, replicas: int, n_temps: int, rounds: int, max_steps: int,
              n_chains: int = 0, plain_draws: int = 0) -> WorkEstimate:
    """Replica-exchange HMC over every n point x data set x ladder x temperature, `rounds`
    rounds (warm-up + draw budget) of up to max_steps leapfrog ticks, plus the plain chains."""
    chains = points * seeds * replicas * n_temps
    plain = points * seeds * n_chains
    ticks = rounds * max_steps
    seconds = HMC_TICK.seconds(ticks, chains) + HMC_TICK.seconds(plain_draws * max_steps, plain)
    return WorkEstimate("chain-ticks of HMC", chains * ticks + plain * plain_draws * max_steps, seconds)


def zoo(c: int) -> WorkEstimate:
    """The zoo's Newton solves at c features (solved once per process, then cached); units:
    the k-gon families searched (k = 3..c)."""
    return WorkEstimate("k-gon families of the zoo's Newton solves, once per process", max(c - 2, 0),
                        ZOO_START_S + ZOO_PER_C6 * c**6)


def announce(estimate: WorkEstimate, bound: float = BOUND_S, stream=None, progress: bool = True) -> bool:
    """Print the estimate to stderr (or `stream`) when it exceeds `bound` seconds, before the
    work starts (saying whether progress follows); returns whether it printed."""
    if estimate.seconds <= bound:
        return False
    then = "progress follows" if progress else "no progress is shown (--no-progress)"
    print(f"tms: expect {estimate.describe()}, at rates measured with one thread on a 2-core machine; "
          f"{then}; Ctrl-C stops it", file=stream or sys.stderr, flush=True)
    return True
