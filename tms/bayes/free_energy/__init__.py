"""Measured free energies of the phases (SPEC 3): why the posterior crosses where it does.

The lab predicts Bayesian transitions from F_n(alpha) ~ n L_alpha + lambda_alpha log n +
|w*_alpha|^2 / 2 and drops every other O(1) term. This package measures what it drops.

1. Free-energy differences from phase masses. With Z_alpha the posterior integral over
   phase alpha, P_alpha = Z_alpha / Z, so F_n(alpha) - F_n(beta) = -log(P_alpha / P_beta)
   exactly. Masses come from replica exchange over the likelihood temperature (R
   independent ladders per data set, tms.samplers.tempering); the error bar is the delta
   method over the ladders (the covariance of the two masses across ladders); pooled over
   S data sets the estimate is the mean of the per-data-set differences, with standard
   error max(across-data-set s.e., Monte Carlo s.e.) (the first has S - 1 degrees of
   freedom only). Every pair of phases that both hold mass, and families ("5-family" =
   every label with k = 5, p = 0), in two readings of the samples: the zoo classifier
   (tms.theory.phases.classify) and the paper's hull reading (tms.theory.phases.classify_hull).
2. A Bayesian learning coefficient per phase, from the ladder, independent of SGLD: for a
   tempered posterior exp(-beta n L_n) phi restricted to phase alpha, dF/dbeta =
   E_beta[n L_n | alpha] = n L_n(w_alpha) + lambda_alpha / beta + o(1) (the WBIC /
   thermodynamic-integration relation), so E_beta[n L_n | alpha] against 1/beta is a line
   of slope lambda_alpha. Local ladders started at the zoo point and confined to the phase
   by a wall (`restricted`; temperatures beta_lo..1 at one n) give it; the fit has one
   intercept per data set and a jackknife error over the ladders (`wbic_lambda`).
3. The O(1) terms the formula drops, computed (`o1_terms`): the orbit multiplicity m
   (tms.theory.zoo.orbit_multiplicity: -log m), and at smooth minimally singular points the rest
   of the Laplace constant: (1/2) log det'H, the length of the O(2) orbit circle, the prior
   mass of the flat zero-column region (Monte Carlo over the prior) and (1/2) log 2 pi; the
   same volume at finite n (`flat_volume`: the loss rises gently past the flat region, so
   the limit is reached slowly); the data term -log mean_sigma exp(-n (L_n(sigma w*) - L))
   over feature permutations sigma (exact per data set: the posterior picks the copy whose
   empirical loss is lowest, an O(sqrt n) effect). Fits F_n(alpha) - F_n(beta) = n dL +
   dlambda log n + dc over the n-grid (dL from the zoo) give dlambda and dc with standard
   errors (`fit_free_energy`), and constant remainders beyond each level of theory.

Modules: `estimators` (mass ratios, pooling, fits, the WBIC lambda, crossings), `terms` (the O(1)
terms), `ladders` (the sweeps and the local ladders), `analysis` (tables, pair differences, theory
curves, the split into terms), `measure` (the whole measurement, its summary and report section).

Results (tms.core.io): per-n sweep points `fe_c{c}_n{n}`, the local ladders `lambda_c{c}`, the
SGLD estimates `sgld_c{c}`, and the analysis `summary_c{c}` (what the figure and
`report_section` read), all in one folder; finished pieces are skipped when rerun.
"""
