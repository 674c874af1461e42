"""Settings of the Bayesian sweeps (tms.core.settings), each validated once when made.

    Ladders              replica-exchange ladders: data sets, ladders, temperatures, rounds
    +- SweepLadders      ... over the n-grid, temperatures from beta_min to 1
    |  +- PosteriorSettings   the posterior phase sweep (`tms posterior`): plain chains, the
    |  |                      precision stop
    |  +- FreeEnergySweep     the free-energy sweep (two ladders and temperatures at least)
    +- LocalLadders      ladders confined to one phase at one n (lambda_Bayes)
    FreeEnergySettings   the whole free-energy measurement (`tms free-energy`): the sweep's and
                         the local ladders, the SGLD lambdas' sampler (tms.llc.estimator.
                         LLCSettings, as tms.llc.zoo.zoo_llc takes it), Monte Carlo sizes

The class defaults are the quick scale; tms.experiments holds the presets. A saved result
records `as_record()` and reuse compares it; how a run goes (save_every, device, threads,
progress) is an argument of the functions, not a setting (docs/ARCHITECTURE.md).
"""
from __future__ import annotations

from dataclasses import dataclass

from tms.core.settings import Settings, setting
from tms.llc.estimator import PROTOCOL, LLCSettings

def _below_one(**values: float) -> None:
    for name, v in values.items():
        if not v < 1:
            raise ValueError(f"{name} must lie in (0, 1), got {v!r}")


@dataclass(frozen=True)
class Ladders(Settings):
    """Replica-exchange ladders over the likelihood temperature (tms.samplers.tempering), per
    data set; each round is a trajectory boundary of every chain, a draw per round."""

    seeds: int = setting(2, "data sets per n", minimum=1, maximum=1000)
    replicas: int = setting(4, "independent replica-exchange ladders per data set", minimum=1, maximum=10**4)
    n_temps: int = setting(10, "temperatures per ladder (1: no tempering, so the 'mass' is chain occupancy)",
                           minimum=1, maximum=1000)
    n_warmup: int = setting(100, "warm-up rounds (step sizes, trajectory lengths and the ladder adapted)", minimum=4,
                            maximum=10**6)
    n_draws: int = setting(120, "budget: most sampling rounds per data set (a draw per round)", minimum=1,
                           maximum=10**6)
    max_steps: int = setting(40, "leapfrog ticks per round = cap on a trajectory's length", minimum=1, maximum=4096)


@dataclass(frozen=True)
class SweepLadders(Ladders):
    """Ladders over an n-grid, geometric temperatures from beta_min to 1 (re-placed in warm-up)."""

    beta_min: float = setting(0.01, "hottest relative inverse temperature of a ladder, in (0, 1)", positive=True)

    def check(self) -> None:
        _below_one(beta_min=self.beta_min)


@dataclass(frozen=True)
class PosteriorSettings(SweepLadders):
    """The posterior phase sweep's sampler (tms.bayes.posterior.phase_sweep, SPEC 3): ladders
    sampled in blocks until every phase mass of a data set has a standard error below
    target_se (after min_draws rounds; at most n_draws), and plain chains for occupancy."""

    n_chains: int = setting(16, "plain HMC chains per data set (chain occupancy)", minimum=1, maximum=10**5)
    plain_draws: int = setting(60, "draws of the plain chains", minimum=1, maximum=10**6)
    target_se: float = setting(0.02, "stop a data set once every phase mass has a Monte Carlo standard error below "
                                     "this (across its ladders), in (0, 1)", positive=True)
    block: int = setting(40, "sampling rounds between two precision checks", minimum=1, maximum=10**6)
    min_draws: int = setting(80, "fewest sampling rounds before the precision target may stop a data set",
                             minimum=1, maximum=10**6)

    def check(self) -> None:
        _below_one(beta_min=self.beta_min, target_se=self.target_se)


@dataclass(frozen=True)
class FreeEnergySweep(SweepLadders):
    """The free-energy sweep's ladders (tms.bayes.free_energy.ladders.sweep_data): the delta
    method needs two ladders per data set and a ladder two temperatures."""

    def check(self) -> None:
        super().check()
        _at_least_two(replicas=self.replicas, n_temps=self.n_temps)


def _at_least_two(**values: int) -> None:
    for name, v in values.items():
        if v < 2:
            raise ValueError(f"{name} must be >= 2, got {v!r}")


@dataclass(frozen=True)
class LocalLadders(Ladders):
    """Ladders confined to one phase at one sample size n, temperatures beta_lo..1: the slope
    of E_beta[n L_n | phase] in 1/beta is lambda_Bayes (tms.bayes.free_energy.ladders.local_lambda)."""

    n: int = setting(1000, "sample size", minimum=2, maximum=10**6)
    beta_lo: float = setting(0.25, "lowest relative inverse temperature, in (0, 1)", positive=True)

    def check(self) -> None:
        _below_one(beta_lo=self.beta_lo)
        _at_least_two(replicas=self.replicas, n_temps=self.n_temps)


@dataclass(frozen=True)
class FreeEnergySettings(Settings):
    """The free-energy measurement at one c (tms.bayes.free_energy.measure.measure, SPEC 3)."""

    sweep: FreeEnergySweep = setting(FreeEnergySweep(seeds=4, n_warmup=60, max_steps=32),
                                     "ladders of the sweep over the n-grid", flag=False)
    local: LocalLadders = setting(LocalLadders(seeds=2, replicas=3, n_temps=5, n_warmup=40, n_draws=80, max_steps=32),
                                  "ladders confined to a phase (lambda_Bayes)", flag=False)
    sgld: LLCSettings = setting(PROTOCOL, "SGLD lambdas at the zoo points (tms.llc.zoo.zoo_llc, population loss: "
                                          "no minibatches; the measurement's seed)", flag=False)
    mc_draws: int = setting(200_000, "prior draws for the zero-column volumes (Monte Carlo, the O(1) terms)",
                            minimum=1000, maximum=10**7)
    dcurve_sets: int = setting(24, "synthetic data sets per n of the mean data-term curve", minimum=2,
                               maximum=10**4)

    def __post_init__(self):
        for name, cls in (("sweep", FreeEnergySweep), ("local", LocalLadders), ("sgld", LLCSettings)):
            value = getattr(self, name)
            if isinstance(value, dict):  # a saved record (from_record)
                object.__setattr__(self, name, cls.from_record(value))
            elif not isinstance(value, cls):
                raise ValueError(f"{name} must be a {cls.__name__}, got {value!r}")
        super().__post_init__()

    def check(self) -> None:
        if self.sgld.batch_size is not None:
            raise ValueError(f"sgld.batch_size must be None (the zoo's population loss), got {self.sgld.batch_size}")
        if self.sgld.n_chains < 2:
            raise ValueError(f"sgld.n_chains must be >= 2 (a standard error across chains), got {self.sgld.n_chains}")
