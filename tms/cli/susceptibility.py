"""`tms susceptibility`: feature susceptibilities and the Bayesian influence function against n
from a posterior sweep's saved draws (docs/SPEC.md section 7), and their figure; a shell over
tms.experiments.susceptibility.run (one flag per field of SusceptibilitySettings)."""
from __future__ import annotations

import math

from tms.bayes.feature_response import SusceptibilitySettings
from tms.cli import common
from tms.core import checks
from tms.experiments import susceptibility as experiment

NAME = "susceptibility"
HELP = "feature susceptibilities and the Bayesian influence function against n from a `tms posterior` run's draws"


def add_arguments(p) -> None:
    p.add_argument("--run", required=True, metavar="RUN_DIR",
                   help="a `tms posterior` run folder (OUT/c{c}_{scale}_b{beta_lik}_s{seed}: its summary and points)")
    common.add_settings(p, SusceptibilitySettings, preset=experiment.QUICK)
    p.add_argument("--out", help="where the summary goes (default: the run folder)")
    common.add_force(p)
    p.add_argument("--figure", help="figure path (default results/figures/susceptibility_c{c}.png)")
    p.add_argument("--no-predict", action="store_true", help="skip the predicted n_c (no zoo)")
    common.add_threads(p)


def run(args) -> int:
    checks.device(args.device)
    settings = common.settings_from(args, experiment.QUICK)
    c, _, _ = experiment.sweep_summary(args.run)
    figure = args.figure or f"results/figures/susceptibility_c{c}.png"
    res = experiment.run(args.run, settings, out=args.out, figure=figure, predict=not args.no_predict,
                         threads=args.threads, force=args.force)
    print(f"susceptibility c={c}: {len(res.ns)} n values from {args.run}; summary {res.summary}")
    print("symmetrised self responses to upweighting a feature (mean diagonal of chi) +- s.e.:")
    print(f"{'n':<6} {'|W_k|^2':>18} {'b_k':>18} {'L_k':>18} {'BIF (self)':>18}")
    for n, resp in zip(res.ns, res.responses):
        parts = [resp.norm.symmetric, resp.bias.symmetric, resp.feature_loss.symmetric, resp.influence.symmetric]
        print(f"{int(n):<6d} " + _cells(parts))
    if res.local is not None:
        print(f"the same from SGLD localised at the zoo point {res.local.label} (nbeta = n beta_lik; the field's "
              f"estimator):")
        print(f"{'n':<6} {'|W_k|^2':>18} {'b_k':>18} {'L_k':>18} {'BIF (self)':>18} {'accept':>7}")
        for n, resp, acc in zip(res.local.ns, res.local.responses, res.local.acceptance):
            parts = [resp.norm.symmetric, resp.bias.symmetric, resp.feature_loss.symmetric, resp.influence.symmetric]
            print(f"{int(n):<6d} " + _cells(parts) + f" {acc:7.3f}")
    for x in res.crossings:
        print(f"measured mass crossing {x.alpha} -> {x.beta}: {x.n}")
    for t in res.transitions:
        print(f"predicted n_c {t.alpha} -> {t.beta}: {t.n_c:.0f}")
    if res.transitions_error:
        print(f"no predicted n_c: {res.transitions_error}")
    print(f"figure: {figure}")
    return 0


def _cells(parts) -> str:
    """Each response's diagonal with its s.e., or '(no s.e.)' where it is undefined."""
    return " ".join(f"{s.diagonal:9.3g} +- {s.diagonal_se:<6.2g}" if math.isfinite(s.diagonal_se)
                    else f"{s.diagonal:9.3g} (no s.e.)" for s in parts)
