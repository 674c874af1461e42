"""The Bayesian experiment (SPEC 3): posterior phase mass against the sample size n.

Posterior p(w | D_n) proportional to N(0, I)(w) * exp(-beta_lik * n * L_n(w)) on all
d = r*c + c parameters; beta_lik = 1 is the SPEC convention (a Gaussian likelihood of
variance 1/2 per output), beta_lik = 1/2 the unit-variance one.

Phase mass. Chains at the target temperature seldom cross between phases, so the fraction
of chains in a phase (chain occupancy) reflects basins of attraction of the start, not
posterior mass. The mass is estimated by replica exchange over the likelihood temperature
(tms.samplers.tempering): K tempered posteriors exp(-beta_k beta_lik n L_n - |w|^2/2),
beta_k geometric from beta_min to 1, swaps between neighbours; the slot at beta = 1 samples
the posterior, and the hot end, close to the prior, moves between phases. R independent
replica ladders per data set give the mass as the mean over ladders of the fraction of
beta = 1 draws in the phase, with standard error std / sqrt(R) across ladders (independent
by construction, so autocorrelation is accounted for). Across S data sets (seeds) the mass
reported at n is the mean over data sets, its error the standard error over data sets
(std / sqrt(S), which contains the Monte Carlo error), or the Monte Carlo error when S = 1.
Chain occupancy, from `chains` plain HMC chains per data set started from the prior, is
reported beside it under that name. Draws are thinned to at most MAX_KEPT per chain before
classification (memory), which changes no expectation.

Layout: data sets (n-grid x seeds) are one leading dim G; the ladders are (G, R, K, d) and
the plain chains (G, C, d); one batched sampler call serves a whole chunk of the n-grid.
Each finished n is saved (tms.io) and skipped when the sweep is run again.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from tms import checks, diagnostics, io
from tms.data import sample_inputs
from tms.loss import SortedData, empirical_loss_sorted, sorted_data, stack_sorted, unflatten_params
from tms.samplers import tempering

QUICK = dict(seeds=2, chains=32, replicas=4, n_temps=12, beta_min=0.01, n_warmup=150, n_draws=150, max_steps=40)
MAX_KEPT = dict(ladder=500, plain=200)  # draws kept (thinned) per chain for classification
PAPER = dict(seeds=4, chains=256, replicas=16, n_temps=20, beta_min=0.003, n_warmup=500, n_draws=1000, max_steps=128)


def data_seed(seed: int, n: int, s: int) -> int:
    """Seed of data set s at sample size n: independent of the grid and of the batching."""
    return int(np.random.SeedSequence([seed, n, s]).generate_state(1)[0])


def _with_dims(data: SortedData, k: int) -> SortedData:
    """Insert k singleton dims after the leading data dim (to broadcast with chain dims)."""

    def f(t):
        return t.reshape(t.shape[:1] + (1,) * k + t.shape[1:])

    return SortedData(f(data.mu), f(data.cum1), f(data.cum2), f(data.count), f(data.n))


def energy_fn(data: SortedData, r: int, c: int, beta_lik: float = 1.0):
    """theta (G, ..., d) -> beta_lik * n * L_n(theta) (G, ...); data has batch dims (G, 1...).

    The tempered part of the posterior potential (SPEC 3); the prior |theta|^2/2 is `prior`.
    """

    def energy(theta: torch.Tensor) -> torch.Tensor:
        W, b = unflatten_params(theta, r, c)
        return beta_lik * data.n * empirical_loss_sorted(W, b, data)

    return energy


def prior(theta: torch.Tensor) -> torch.Tensor:
    """-log N(0, I) up to a constant: |theta|^2 / 2, (..., d) -> (...)."""
    return 0.5 * (theta**2).sum(-1)


def _summaries(theta: torch.Tensor, data: SortedData, r: int, c: int) -> torch.Tensor:
    """Symmetry-invariant summaries for diagnostics: L_n, sorted column norms, sorted biases.

    theta (G, ..., d) -> (G, ..., 2c + 1). Invariant under O(2) and feature permutations,
    so chains in the same phase but different symmetric copies are comparable.
    """
    W, b = unflatten_params(theta, r, c)
    L = empirical_loss_sorted(W, b, data).unsqueeze(-1)
    norms = W.norm(dim=-2).sort(-1).values
    return torch.cat([L, norms, b.sort(-1).values], -1)


def _classify(theta: np.ndarray, r: int, c: int) -> np.ndarray:
    from tms.phases import classify

    t = torch.as_tensor(theta, dtype=torch.float64)
    W, b = unflatten_params(t, r, c)
    return np.asarray(classify(W, b))


def _fractions(labels: np.ndarray, phases: list[str], axis_draw: int) -> np.ndarray:
    """labels (...) -> (..., P) with the draw axis averaged out."""
    return np.stack([(labels == p).mean(axis_draw) for p in phases], -1)


def _settings(c, r, beta_lik, seed, cfg) -> dict:
    return dict(c=c, r=r, beta_lik=float(beta_lik), seed=seed, **cfg)


def _point_path(out_dir: Path, c: int, n: int) -> Path:
    return out_dir / f"posterior_c{c}_n{n}"


def _run_chunk(c, r, ns, beta_lik, seed, cfg, dtype, progress, chunk_id) -> list[dict]:
    """Sample every (n, seed) data set of ns at once; return one result dict per n."""
    S, C, R, K = cfg["seeds"], cfg["chains"], cfg["replicas"], cfg["n_temps"]
    d = r * c + c
    datas = [sorted_data(sample_inputs(n, c, data_seed(seed, n, s), dtype=dtype)) for n in ns for s in range(S)]
    data = stack_sorted(datas)  # batch (G,), G = len(ns) * S
    G = len(datas)
    gen = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, 7919, chunk_id, *ns]).generate_state(1)[0]))

    # replica exchange: (G, R, K, d), data (G, 1, 1)
    d_pt = _with_dims(data, 2)
    betas = tempering.geometric_ladder(K, cfg["beta_min"], dtype=dtype)
    th0 = torch.randn((G, R, K, d), generator=gen, dtype=dtype)
    pt = tempering.run_chains(
        energy_fn(d_pt, r, c, beta_lik), th0, prior_fn=prior, betas=betas, n_warmup=cfg["n_warmup"],
        n_draws=cfg["n_draws"], generator=gen, max_steps=cfg["max_steps"],
        record=lambda th: th[..., -1, :].to(torch.float32), thin=math.ceil(cfg["n_draws"] / MAX_KEPT["ladder"]),
        progress=progress, desc=f"replica exchange ({G} data sets)",
    )
    # plain chains at the target temperature (occupancy): (G, C, d), data (G, 1)
    d_pl = _with_dims(data, 1)
    th0 = torch.randn((G, C, d), generator=gen, dtype=dtype)
    pl = tempering.run_chains(
        energy_fn(d_pl, r, c, beta_lik), th0, prior_fn=prior, n_warmup=cfg["n_warmup"], n_draws=cfg["n_draws"],
        generator=gen, max_steps=cfg["max_steps"], record=lambda th: th.to(torch.float32),
        thin=math.ceil(cfg["n_draws"] / MAX_KEPT["plain"]), progress=progress,
        desc=f"plain chains ({G} data sets)",
    )
    lab_pt = _classify(pt["draws"].numpy(), r, c)  # (T, G, R)
    lab_pl = _classify(pl["draws"].numpy(), r, c)  # (T, G, C)
    # (T, G, C, 2c+1), in blocks of draws to bound memory at paper scale
    summ = np.concatenate([_summaries(blk.to(dtype), _with_dims(data, 1), r, c).numpy()
                           for blk in pl["draws"].split(16)])
    # loss at the beta = 1 slot, for the record: mean L_n per data set
    out = []
    for i, n in enumerate(ns):  # bookkeeping only (no sampling here)
        g = slice(i * S, (i + 1) * S)
        lp, ll = lab_pt[:, g], lab_pl[:, g]
        phases = sorted(set(np.unique(lp)) | set(np.unique(ll)))
        frac_r = _fractions(lp, phases, 0)  # (S, R, P): per ladder
        mass_s = frac_r.mean(1)
        if R >= 2:
            se_s = frac_r.std(1, ddof=1) / math.sqrt(R)
        else:  # one ladder: Monte Carlo error from the ESS of the phase indicator
            se_s = np.stack([diagnostics.mean_and_se((lp == p).transpose(1, 2, 0).astype(float))[1] for p in phases], -1)
            se_s = np.nan_to_num(se_s)  # constant indicator: no observed variance
        occ_chain = _fractions(ll, phases, 0)  # (S, C, P)
        occ_s = occ_chain.mean(1)
        occ_se_s = occ_chain.std(1, ddof=1) / math.sqrt(C) if C >= 2 else np.zeros_like(occ_s)
        ind_ess = {}
        for p in phases:
            ind = (lp == p).transpose(1, 2, 0).astype(float)  # (S, R, T)
            e = diagnostics.ess(ind) if R * lp.shape[0] >= 8 else np.full(S, np.nan)
            ind_ess[p] = [None if not np.isfinite(v) else float(v) for v in np.atleast_1d(e)]
        phase_diag = [diagnostics.phase_diagnostics(summ[:, i * S + s].transpose(1, 0, 2), ll[:, s].T) for s in range(S)]
        out.append(dict(
            n=n, phases=phases, mass_seed=mass_s, mass_se_seed=se_s, occupancy_seed=occ_s, occupancy_se_seed=occ_se_s,
            diag=dict(
                pt_accept=pt["accept_rate"][g].mean((1, 2)).tolist(),
                pt_divergences=pt["divergences"][g].sum((1, 2)).tolist(),
                pt_warmup_divergences=pt["warmup_divergences"][g].sum((1, 2)).tolist(),
                pt_mean_steps=pt["mean_steps"][g].mean((1, 2)).tolist(),
                swap_rate=pt["swap_rate"].tolist(),
                plain_accept=pl["accept_rate"][g].mean(1).tolist(),
                plain_divergences=pl["divergences"][g].sum(1).tolist(),
                plain_mean_steps=pl["mean_steps"][g].mean(1).tolist(),
                mass_indicator_ess=ind_ess,
                plain_phase_diagnostics=phase_diag,
            ),
        ))
    return out


def _save_point(path: Path, res: dict, settings: dict) -> None:
    arrays = {k: res[k] for k in ("mass_seed", "mass_se_seed", "occupancy_seed", "occupancy_se_seed")}
    io.save_result(path, arrays, dict(settings=settings, n=res["n"], phases=res["phases"], diagnostics=res["diag"]))


def _load_point(path: Path, settings: dict) -> dict:
    arrays, rec = io.load_result(path)
    if rec["settings"] != io._jsonable(settings):
        raise ValueError(
            f"{path} holds a result with other settings ({rec['settings']}); use another --out directory or delete it"
        )
    return dict(n=rec["n"], phases=rec["phases"], diag=rec["diagnostics"], **arrays)


def aggregate(points: list[dict]) -> dict:
    """Per-n results -> arrays over the n-grid and the union of phases.

    mass, mass_se, occupancy, occupancy_se: (N, P). mass_se is the standard error over data
    sets (std / sqrt(S)) when S >= 2, else the within-data-set Monte Carlo error.
    """
    phases = sorted({p for pt in points for p in pt["phases"]})
    N, P = len(points), len(phases)
    out = {k: np.zeros((N, P)) for k in ("mass", "mass_se", "mass_mc_se", "occupancy", "occupancy_se")}
    for i, pt in enumerate(points):
        idx = [phases.index(p) for p in pt["phases"]]
        ms, ses = np.asarray(pt["mass_seed"]), np.asarray(pt["mass_se_seed"])
        oc, ocse = np.asarray(pt["occupancy_seed"]), np.asarray(pt["occupancy_se_seed"])
        S = ms.shape[0]
        out["mass"][i, idx] = ms.mean(0)
        out["mass_mc_se"][i, idx] = np.sqrt((ses**2).sum(0)) / S
        out["mass_se"][i, idx] = ms.std(0, ddof=1) / math.sqrt(S) if S >= 2 else out["mass_mc_se"][i, idx]
        out["occupancy"][i, idx] = oc.mean(0)
        out["occupancy_se"][i, idx] = oc.std(0, ddof=1) / math.sqrt(S) if S >= 2 else np.sqrt((ocse**2).sum(0)) / S
    out["ns"] = np.array([pt["n"] for pt in points])
    out["phases"] = phases
    return out


def predicted_transitions(c: int, beta_lik: float = 1.0, llcs: dict | None = None) -> list[dict]:
    """Predicted critical sample sizes from the zoo's free energies (SPEC 3).

    F_n(alpha) = n beta_lik L_alpha + lambda_alpha log(n beta_lik) + |w*_alpha|^2 / 2 (other
    O(1) terms dropped), so every n_c of the beta_lik = 1 convention is divided by beta_lik.
    Rows of tms.zoo.transition_table(c, llcs) with a finite n_c, as dicts with
    'alpha', 'beta', 'n_c' (scaled), and the table's other fields.
    """
    from tms import zoo

    rows = zoo.transition_table(c, llcs=llcs)
    out = []
    for row in rows:
        rec = dict(row) if isinstance(row, dict) else dict(row._asdict()) if hasattr(row, "_asdict") else dict(vars(row))
        nc = rec.get("n_c")
        if nc is None or not np.isfinite(nc):
            continue
        rec["n_c"] = float(nc) / beta_lik
        out.append(rec)
    return out


def _omitted(c: int, result: dict, llcs: dict | None, min_mass: float = 0.02) -> str:
    """Sentence naming the phases seen in the sweep for which the zoo has no lambda."""
    from tms import zoo

    lam = {q.label: (llcs or {}).get(q.label, q.llc) for q in zoo.critical_points(c)}
    seen = [p for i, p in enumerate(result["phases"])
            if max(result["mass"][:, i].max(), result["occupancy"][:, i].max()) >= min_mass]
    missing = [p for p in seen if p in lam and lam[p] is None]
    if not missing:
        return ""
    return ("n_c lines omitted for transitions involving " + ", ".join(missing)
            + " (the zoo has no lambda there: L is only C^1 at 4-gons; supply estimates with --llc LABEL=VALUE).")


def add_predictions(result: dict, c: int, beta_lik: float, llcs: dict[str, float] | None = None) -> dict:
    """Fill result['transitions'] and result['omitted_transitions'] from the zoo (in place)."""
    try:
        result["transitions"] = predicted_transitions(c, beta_lik, llcs)
        result["omitted_transitions"] = _omitted(c, result, llcs)
        result.pop("transitions_error", None)
    except (ImportError, AttributeError, ValueError, TypeError) as err:
        result["transitions"], result["omitted_transitions"] = [], ""
        result["transitions_error"] = f"{type(err).__name__}: {err}"
    return result


def missing_llc_labels(c: int, result: dict, min_mass: float = 0.02) -> list[str]:
    """Zoo labels seen in a sweep (mass or occupancy >= min_mass) for which the zoo has no lambda."""
    from tms import zoo

    lam = {q.label: q.llc for q in zoo.critical_points(c)}
    return [p for i, p in enumerate(result["phases"])
            if lam.get(p, 0.0) is None and max(result["mass"][:, i].max(), result["occupancy"][:, i].max()) >= min_mass]


def estimate_llcs(c: int, labels: list[str], *, n: int = 1000, n_chains: int = 16, n_steps: int = 2000,
                  seed: int = 0) -> dict[str, tuple[float, float]]:
    """SGLD estimates (SPEC 5) of lambda at the zoo points `labels` (e.g. 4-gons, where L is
    only C^1 and the zoo has no lambda): population loss, nbeta = n / log n, eps = 1e-3,
    gamma = 1, n_steps steps (1/5 burn-in), all points and chains batched.
    Returns {label: (lambda_hat, standard error across chains)}; NaN where the estimator
    excluded every chain (see tms.llc)."""
    from tms import zoo
    from tms.llc import default_nbeta, estimate_llc

    if not labels:
        return {}
    pts = {q.label: q for q in zoo.critical_points(c)}
    W = torch.stack([pts[lab].W for lab in labels])
    b = torch.stack([pts[lab].b for lab in labels])
    res = estimate_llc(W, b, None, nbeta=default_nbeta(n), eps=1e-3, gamma=1.0, n_chains=n_chains,
                       n_steps=n_steps, n_burnin=n_steps // 5, loss="population", generator=seed)
    return {lab: (float(res.llc[i]), float(res.llc_se[i])) for i, lab in enumerate(labels)}


def phase_sweep(
    c: int,
    ns,
    *,
    r: int = 2,
    beta_lik: float = 1.0,
    seed: int = 0,
    out_dir: str | Path | None = None,
    progress: bool = False,
    batch_points: int | None = None,
    dtype: torch.dtype = torch.float64,
    predict: bool = True,
    llcs: dict[str, float] | None = None,
    **overrides,
) -> dict:
    """Posterior phase mass and chain occupancy at every n of `ns` (SPEC 3).

    Sampler settings default to QUICK (seeds, chains, replicas, n_temps, beta_min,
    n_warmup, n_draws, max_steps); pass any of them as keyword arguments (or **PAPER).
    out_dir: save each finished n there and skip n already saved (resumable).
    batch_points: how many n to sample in one batched call (default all).
    predict: add the predicted n_c of the zoo (predicted_transitions; llcs supplies lambdas
    the zoo lacks, e.g. SGLD estimates at 4-gons).
    Returns aggregate(...) plus 'points' (per-n dicts), 'settings', 'transitions' (predicted
    n_c, or [] with 'transitions_error' when the zoo cannot provide them) and
    'omitted_transitions' (a sentence naming phases seen without a lambda).
    """
    checks.positive_int(c, "c", minimum=2)
    checks.positive_int(r, "r")
    if r > c:
        raise ValueError(f"r must be <= c, got r = {r}, c = {c}")
    checks.positive_float(beta_lik, "beta_lik")
    ns = [checks.positive_int(int(n), "n") for n in ns]
    if not ns or len(set(ns)) != len(ns):
        raise ValueError(f"ns must be a non-empty list of distinct sample sizes, got {ns}")
    unknown = set(overrides) - set(QUICK)
    if unknown:
        raise ValueError(f"unknown sampler settings {sorted(unknown)}; expected some of {sorted(QUICK)}")
    cfg = {**QUICK, **overrides}
    for k in ("seeds", "chains", "replicas", "n_temps", "n_draws", "max_steps"):
        checks.positive_int(cfg[k], k)
    checks.positive_int(cfg["n_warmup"], "n_warmup", minimum=4)
    if not 0 < cfg["beta_min"] < 1:
        raise ValueError(f"beta_min must lie in (0, 1), got {cfg['beta_min']!r}")
    settings = _settings(c, r, beta_lik, seed, cfg)
    out_dir = Path(out_dir) if out_dir is not None else None

    done: dict[int, dict] = {}
    if out_dir is not None:
        for n in ns:
            if io.result_exists(_point_path(out_dir, c, n)):
                done[n] = _load_point(_point_path(out_dir, c, n), settings)
    todo = [n for n in ns if n not in done]
    step = batch_points or max(1, len(todo))
    chunks = [todo[i : i + step] for i in range(0, len(todo), step)]
    for k, chunk in enumerate(tqdm(chunks, desc=f"posterior c={c}", disable=not progress or len(chunks) < 2)):
        for res in _run_chunk(c, r, chunk, beta_lik, seed, cfg, dtype, progress, k):
            done[res["n"]] = res
            if out_dir is not None:
                _save_point(_point_path(out_dir, c, res["n"]), res, settings)
    points = [done[n] for n in ns]
    result = aggregate(points)
    result.update(points=points, settings=settings)
    result["transitions"], result["omitted_transitions"] = [], ""
    if predict:
        add_predictions(result, c, beta_lik, llcs)
    return result


def save_summary(path: str | Path, result: dict) -> None:
    """Save a phase_sweep result (arrays over the n-grid + settings, phases, transitions and
    per-n diagnostics as JSON) for plotting (tms.plots.posterior)."""
    arrays = {k: result[k] for k in ("ns", "mass", "mass_se", "mass_mc_se", "occupancy", "occupancy_se")}
    record = dict(
        settings=result["settings"], phases=list(result["phases"]), transitions=result.get("transitions", []),
        transitions_error=result.get("transitions_error"), omitted_transitions=result.get("omitted_transitions", ""),
        diagnostics={str(p["n"]): p["diag"] for p in result["points"]},
    )
    io.save_result(path, arrays, record)
