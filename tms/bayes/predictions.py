"""What the zoo predicts for the posterior sweep (docs/SPEC.md section 3): the critical sample
sizes n_c of the transitions between phases, and the phases seen without a lambda (for which
tms.llc.zoo.zoo_llc gives SGLD estimates).

F_n(alpha) = n beta_lik L_alpha + lambda_alpha log(n beta_lik) + |w*_alpha|^2 / 2 (other O(1)
terms dropped); a transition alpha -> beta crosses where the two are equal.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from tms.theory import census_free_energy, zoo
from tms.theory.zoo import TransitionRow


def predicted_transitions(c: int, beta_lik: float = 1.0, llcs: dict | None = None) -> list[TransitionRow]:
    """Predicted critical sample sizes from the zoo's free energies (SPEC 3): the rows of
    tms.theory.zoo.transition_table(c, llcs) with a finite n_c, that n_c divided by beta_lik
    (F_n depends on n through m = beta_lik n, so every n_c of the beta_lik = 1 convention
    scales by 1 / beta_lik). llcs supplies lambdas the zoo lacks."""
    return [dataclasses.replace(row, n_c=float(row.n_c) / beta_lik) for row in zoo.transition_table(c, llcs=llcs)
            if row.n_c is not None and np.isfinite(row.n_c)]


def _seen(result, min_mass: float) -> list[str]:
    """Phases of a PhaseMass whose mass or occupancy reaches min_mass at some n."""
    return [p for i, p in enumerate(result.phases)
            if max(result.mass[:, i].max(), result.occupancy[:, i].max()) >= min_mass]


def _omitted(c: int, result, llcs: dict | None, min_mass: float = 0.02) -> str:
    """Sentence naming the phases seen in the sweep for which the zoo has no lambda."""
    lam = {q.label: (llcs or {}).get(q.label, q.llc) for q in zoo.critical_points(c)}
    missing = [p for p in _seen(result, min_mass) if p in lam and lam[p] is None]
    if not missing:
        return ""
    return ("n_c lines omitted for transitions involving " + ", ".join(missing)
            + " (the zoo has no lambda there: L is only C^1 at 4-gons; supply estimates with --llc LABEL=VALUE).")


def add_predictions(result, c: int, beta_lik: float, llcs: dict[str, float] | None = None):
    """Fill the transitions, omitted_transitions and transitions_error of a PhaseSweep from the
    zoo (in place; returned)."""
    try:
        result.transitions = predicted_transitions(c, beta_lik, llcs)
        result.omitted_transitions = _omitted(c, result, llcs)
        result.transitions_error = None
    except (ImportError, AttributeError, ValueError, TypeError) as err:
        result.transitions, result.omitted_transitions = [], ""
        result.transitions_error = f"{type(err).__name__}: {err}"
    return result


def missing_llc_labels(c: int, result, min_mass: float = 0.02) -> list[str]:
    """Zoo labels seen in a sweep (a PhaseMass: mass or occupancy >= min_mass) for which the
    zoo has no lambda."""
    lam = {q.label: q.llc for q in zoo.critical_points(c)}
    return [p for p in _seen(result, min_mass) if lam.get(p, 0.0) is None]


def add_census_predictions(result, census, beta_lik: float, llcs: dict[str, float] | None = None):
    """The same from a census of any (r, c) (tms.theory.census_free_energy.census_transitions:
    local minima with a lambda, rank/2 or supplied in llcs), in place; returned."""
    rows = census_free_energy.census_transitions(census, llcs, beta_lik=beta_lik)
    result.transitions = [row for row in rows if row.n_c is not None]
    seen = set(_seen(result, 0.02))
    lam = {q.label: (llcs or {}).get(q.label, q.llc) for q in census.points}
    missing = sorted(p for p in seen if p in lam and lam[p] is None)
    result.omitted_transitions = ("" if not missing else "n_c lines omitted for transitions involving "
                                  + ", ".join(missing) + " (no lambda: L only C^1 there or not a minimum).")
    result.transitions_error = None
    return result
