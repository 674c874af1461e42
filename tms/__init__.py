"""tms: phase transitions in the Toy Model of Superposition, seen through singular learning theory.

Every name a notebook needs, re-exported from the package that owns it (docs/ARCHITECTURE.md).
Parameters everywhere are ``W: (..., r, c)`` and ``b: (..., c)`` with any leading batch dims;
the loss is the unhalved squared error (docs/SPEC.md section 1).

    import tms
    six = tms.critical_point(6, "6")                       # the zoo (r = 2)
    L = tms.population_loss(six.W, six.b)                  # exact, batched
    lam = tms.zoo_llc(6, ["5", "6"], n_draws=500)          # SGLD lambda at zoo points
    sweep = tms.phase_sweep(6, [200, 600])                 # posterior phase mass in n
    res = tms.train_sgd(runs=4, epochs=100)                # SGD, many runs at once

The function behind each command `tms X` is `tms.experiments.X.run`; the ones a notebook
reaches for most are here under a name that says what they do (`tms.reproduce`,
`tms.compare`, `tms.analyse_transitions`, `tms.measure_free_energy`, `tms.census`, ...).
"""
import types as _types

from tms.core._version import __version__
from tms.core.io import load_json, load_result, result_exists, save_json, save_result
from tms.theory.model import Params, forward, init_params
from tms.theory.data import sample_inputs, sample_inputs_sparse
from tms.theory.loss import (SortedData, batched_grad, batched_hessian, empirical_loss, empirical_loss_and_grad_sorted,
                             empirical_loss_sorted, flatten_params, gram, is_smooth, loss_and_grad_flat,
                             population_loss, population_loss_and_grad, sorted_data, unflatten_params)
from tms.theory.zoo import (CriticalPoint, TransitionRow, critical_point, critical_points, critical_sample_size,
                            orbit_multiplicity, transition_table)
from tms.theory.kgon import kgon_report, kgon_roots
from tms.theory.phases import OTHER, classify, classify_hull, energy_levels, level_loss, nearest_level
from tms.theory.census import Census, CensusSettings
from tms.theory.census_free_energy import CensusTerms, census_transitions, free_energy_terms
from tms.llc.estimator import PROTOCOL as LLC_PROTOCOL, LLCSettings, default_nbeta, estimate_llc, estimate_llc_flat
from tms.llc.modules import estimate_llc_model
from tms.llc.result import LLCResult
from tms.llc.zoo import ZooLLC, zoo_llc
from tms.bayes.settings import FreeEnergySettings, PosteriorSettings
from tms.bayes.posterior import PhaseSweep, phase_sweep, save_summary as save_posterior_summary
from tms.bayes.predictions import predicted_transitions
from tms.bayes.free_energy.measure import FreeEnergySummary, measure as measure_free_energy
from tms.bayes.susceptibility import Susceptibility, susceptibility
from tms.bayes.influence import Influence, influence
from tms.bayes.feature_response import FeatureResponse, SusceptibilitySettings, feature_response
from tms.bayes.local_response import LocalResponse, local_feature_response
from tms.dynamics.train import TrainResult, TrainSettings, load_train, train_sgd
from tms.dynamics.transitions import (census_levels, choose_run, default_tol, label_checkpoints, llc_checkpoints, segment,
                                     zoo_levels)
from tms.dynamics.antecedents import Antecedent, antecedent_table, format_antecedents, plateau_llc
from tms.dynamics.analysis import TransitionsResult, TransitionsSettings
from tms.dynamics.tasks import trajectory_llc
from tms.report.plots.zoo import plot_zoo
from tms.report.plots.posterior import plot_phase_sweep
from tms.report.plots.sgd import sgd_many, sgd_trajectory
from tms.report.plots.free_energy import plot_free_energy
from tms.report.plots.census import plot_beyond_r2, plot_census, plot_columns_3d
from tms.experiments import census as _census, compare as _compare, reproduce as _reproduce
from tms.experiments import transitions as _transitions, posterior as _posterior, zoo as _zoo
from tms.experiments import susceptibility as _susceptibility, beyond_r2 as _beyond_r2
from tms.experiments.beyond_r2 import BeyondR2Run, BeyondR2Settings
from tms.experiments.posterior import PRESETS as POSTERIOR_PRESETS

census = _census.run                      # `tms census`: critical points for any (r, c)
compare = _compare.run                    # `tms compare`: SGD transitions beside Bayesian ones
reproduce = _reproduce.run                # `tms reproduce`: every stage, figures and REPORT.md
analyse_transitions = _transitions.run    # `tms transitions`: plateaus, LLC, antecedents
posterior_sweep = _posterior.run          # `tms posterior`: phase_sweep at a preset scale, saved, figure
zoo_survey = _zoo.run                     # `tms zoo`: the zoo's table and figure
measure_susceptibilities = _susceptibility.run  # `tms susceptibility`: responses across a saved sweep
study_r3 = _beyond_r2.run                 # the r = 3 study: census, posterior and SGD beyond the zoo

__all__ = sorted(name for name, value in globals().items()
                 if not name.startswith("_") and not isinstance(value, _types.ModuleType))
