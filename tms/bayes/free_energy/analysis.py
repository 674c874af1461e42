"""Analysis of a free-energy sweep (docs/SPEC.md section 3): reading tables, measured pair
differences, the theory curves four ways, fits, predicted and observed crossings, the split of a
difference into terms, and the lambda table."""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass

import numpy as np

from tms.bayes.free_energy.estimators import (FreeEnergyFit, Record, crossing, family, fit_free_energy, group_fractions,
                                              log_mass_ratio, pool)
from tms.bayes.free_energy.terms import O1Terms
from tms.core import io
from tms.theory import zoo

PAIRS = {6: [("5-family", "6"), ("5", "6")], 5: [("4-family", "5"), ("4", "5")], 4: [("3-family", "4")]}
MIN_MASS = 0.01  # a phase "holds mass" at n when its pooled mass reaches this


@dataclass(frozen=True)
class ReadingTable(Record):
    """reading_table's: ns (N,), cols (phases, then families), frac (per n (S, R, P') on those
    columns), mass (N, P') pooled over data sets and ladders."""

    ns: np.ndarray
    cols: list
    frac: list
    reading: str
    mass: np.ndarray


@dataclass
class PairDifferences(Record):
    """F(alpha) - F(beta) measured at every n (pair_differences): per data set dF_seed and
    se_seed (lists over n of (S,)), pooled dF, se, se_between, se_mc (N,) (NaN where a phase is
    not held); dF_data_corrected / se_data_corrected once the exact data term of each data set
    is subtracted (set by analyse_pair)."""

    OPTIONAL = ("dF_data_corrected", "se_data_corrected")

    alpha: str
    beta: str
    dF_seed: list
    se_seed: list
    dF: np.ndarray
    se: np.ndarray
    se_between: np.ndarray
    se_mc: np.ndarray
    dF_data_corrected: np.ndarray | None = None
    se_data_corrected: np.ndarray | None = None


@dataclass(frozen=True)
class TheoryCurve(Record):
    """theory_curves' F_n of one label on a grid, each way (None where none), the lambda used."""

    paper: np.ndarray
    mult: np.ndarray
    laplace: np.ndarray | None
    data: np.ndarray | None
    laplace_n: np.ndarray | None
    finite: np.ndarray | None
    lam: float


@dataclass(frozen=True)
class PairAnalysis(Record):
    """analyse_pair's: the measured differences and, where both columns have a theory curve
    (theory), the families' representatives, dL, dlambda, dc of the formula and of the computed
    O(1) terms, fits (FreeEnergyFit by name), n_c (crossing by name, None: none), n_star (the
    observed crossing, else mid-grid), terms (name, nats) there, curves (n_fine), grid (ns)."""

    pair: PairDifferences
    theory: bool
    rep_alpha: str | None = None
    rep_beta: str | None = None
    dL: float | None = None
    dlam: float | None = None
    dc_paper: float | None = None
    dc_laplace: float | None = None
    fits: dict | None = None
    n_c: dict | None = None
    n_star: float | None = None
    terms: list | None = None
    curves: dict | None = None
    grid: dict | None = None

    def as_record(self) -> dict:
        """The pair's record and `theory`, and with theory every other field."""
        rest = {f.name: io.jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)
                if self.theory and f.name not in ("pair", "theory")}
        return dict(self.pair.as_record(), theory=self.theory, **rest)


@dataclass(frozen=True)
class LambdaRow(Record):
    """lambda three ways at one phase (lambda_table): zoo theory (None where L is only C^1),
    SGLD at the zoo point, Bayes from the local ladders (slots, n*beta range, wall rejections)."""

    label: str
    theory: float | None
    sgld: float
    sgld_se: float
    bayes: float
    bayes_se: float
    slots_used: int
    nbeta_min: float
    nbeta_max: float
    wall_rate: float


@dataclass(frozen=True)
class Reading(Record):
    """One reading analysed: columns, pooled mass (N, P'), every pair held, the primary ones."""

    cols: list
    mass: np.ndarray
    pairs: list
    primary: list


@dataclass(frozen=True)
class FreeEnergyAnalysis(Record):
    """analyse's: the sweep's ns (N,), the curves' fine grid n_fine, a Reading per reading."""

    ns: np.ndarray
    n_fine: np.ndarray
    readings: dict


def reading_table(points: list, reading: str = "zoo") -> ReadingTable:
    """Phase fractions of a sweep (FreeEnergyPoint per n) in one reading ('zoo' or 'hull'),
    families appended; 'other' kept."""
    if reading not in ("zoo", "hull"):
        raise ValueError(f"reading must be 'zoo' or 'hull', got {reading!r}")
    phases = sorted({p for pt in points for p in getattr(pt, f"phases_{reading}")})
    fr = []
    for pt in points:
        frac = getattr(pt, f"frac_{reading}")
        f = np.zeros(frac.shape[:2] + (len(phases),))
        f[..., [phases.index(p) for p in getattr(pt, f"phases_{reading}")]] = frac
        fr.append(f)
    fr = [group_fractions(f, phases)[0] for f in fr]
    cols = group_fractions(fr[0][..., : len(phases)] if fr else np.zeros((1, 1, len(phases))), phases)[1]
    return ReadingTable(np.array([pt.n for pt in points]), cols, fr, reading, np.stack([f.mean((0, 1)) for f in fr]))


def _loss_of(col: str, c: int) -> float:
    """Zoo loss of a label or family (a family: its lowest member); inf if none."""
    pts = {q.label: q.loss for q in zoo.critical_points(c)}
    if col in pts:
        return pts[col]
    members = [v for lab, v in pts.items() if family(lab) == col]
    return min(members) if members else math.inf


def pair_differences(table: ReadingTable, i: int, j: int) -> PairDifferences:
    """F(col i) - F(col j) at every n of a reading table: per data set (lists of (S,)) and
    pooled (N,) with s.e., across-data-set s.e. and Monte Carlo s.e. (NaN where not held)."""
    out = dict(dF_seed=[], se_seed=[], dF=[], se=[], se_between=[], se_mc=[])
    for f in table.frac:
        d, s = log_mass_ratio(f, i, j)
        out["dF_seed"].append(d)
        out["se_seed"].append(s)
        for k, v in zip(("dF", "se", "se_between", "se_mc"), pool(d, s)):
            out[k].append(v)
    pooled = {k: np.array(out.pop(k)) for k in ("dF", "se", "se_between", "se_mc")}
    return PairDifferences(table.cols[i], table.cols[j], **out, **pooled)


def all_pairs(table: ReadingTable, c: int, min_mass: float = MIN_MASS) -> list[PairDifferences]:
    """Every pair of columns (phases and families, not 'other') that both hold pooled mass
    >= min_mass at some common n; alpha is the one of higher zoo loss (the earlier phase)."""
    cols, mass = table.cols, table.mass
    keep = [i for i, col in enumerate(cols) if col != "other" and (mass[:, i] >= min_mass).any()]
    out = []
    for a, b in itertools.combinations(keep, 2):
        if not ((mass[:, a] >= min_mass) & (mass[:, b] >= min_mass)).any():
            continue
        if family(cols[a]) == cols[b] or family(cols[b]) == cols[a]:
            continue  # a family and its own member
        i, j = (a, b) if _loss_of(cols[a], c) >= _loss_of(cols[b], c) else (b, a)
        out.append(pair_differences(table, i, j))
    return out


def theory_curves(c: int, labels, ns, o1: dict[str, O1Terms], dcurve: dict | None = None, llcs: dict | None = None,
                  beta_lik: float = 1.0) -> dict[str, TheoryCurve]:
    """Predicted F_n of each zoo label at every n of ns (N,), four ways (SPEC 3):
    paper = m L + lambda log m + |w*|^2/2 (m = beta_lik n); mult = paper - log(multiplicity);
    laplace = m L + lambda log m + the full Laplace constant (o1_terms; None where it has
    none); data = laplace + the mean data term, a + b sqrt(n) fitted to dcurve ({'labels',
    'fit' (L, 2), 'ns', 'flat_n' (Nc, L)}, see `_dcurve`); laplace_n = laplace with the
    zero-column volume at n (flat_volume, interpolated in log n, NaN outside dcurve's grid)
    instead of its n -> infinity limit; finite = laplace_n + the data term (every computed
    term). lambda: the zoo's, else llcs[label], else the label is skipped (no curve)."""
    ns = np.asarray(ns, dtype=float)
    m = beta_lik * ns
    out = {}
    for lab in labels:
        t = o1[lab]
        lam = t.llc if t.llc is not None else (llcs or {}).get(lab)
        if lam is None or not np.isfinite(lam):
            continue
        base = m * t.loss + lam * np.log(m)
        cur = dict(paper=base + t.prior, mult=base + t.prior + t.log_mult, laplace=None, data=None, laplace_n=None,
                   finite=None, lam=lam)
        if t.laplace is not None:
            cur["laplace"] = base + t.laplace
            if dcurve is not None and lab in dcurve["labels"]:
                j = dcurve["labels"].index(lab)
                a, b = dcurve["fit"][j]
                cur["data"] = cur["laplace"] + a + b * np.sqrt(m)
                fl = np.interp(np.log(m), np.log(np.asarray(dcurve["ns"], float)), np.asarray(dcurve["flat_n"])[:, j],
                               left=np.nan, right=np.nan)
                cur["laplace_n"] = cur["laplace"] - t.flat + fl
                cur["finite"] = cur["laplace_n"] + a + b * np.sqrt(m)
        out[lab] = TheoryCurve(**cur)
    return out


def column_curve(col: str, curves: dict, variant: str):
    """A variant of the theory curve of a label or a family (-log sum exp(-F) over its members
    that have one); None if no member has it."""
    members = [col] if col in curves else [lab for lab in curves if family(lab) == col]
    ys = [y for y in (getattr(curves[lab], variant) for lab in members if lab in curves) if y is not None]
    if not ys:
        return None
    ys = np.stack(ys)
    with np.errstate(invalid="ignore"):  # NaN outside a data-term grid stays NaN
        return ys[0] if len(ys) == 1 else -np.logaddexp.reduce(-ys, axis=0)


def representative(col: str, curves: dict, idx: int) -> str | None:
    """The member of a family with the lowest paper F at grid index idx of the curves (the
    label itself if not a family); None if no member has a curve."""
    if col in curves:
        return col
    members = [lab for lab in curves if family(lab) == col]
    return min(members, key=lambda lab: float(curves[lab].paper[idx])) if members else None


TERMS = (("prior", "prior ‖w*‖²/2"), ("log_mult", "orbit multiplicity −log m"),
         ("half_logdet", "Hessian ½ log det'H"), ("circle", "O(2) orbit length −log(2π‖W*‖)"),
         ("flat", "flat zero-column volume −log P_flat"))


def decompose(a: str, b: str, o1: dict, n: float, lam: dict, data_at: dict | None = None) -> list[tuple[str, float]]:
    """F(a) - F(b) at n split into the asymptotic part and each O(1) term (SPEC 3):
    [('n dL + dlambda log n', v), ('prior ...', v), ...] (reflection and (1/2) log 2 pi cancel
    between smooth phases); with data_at ({label: {'data', 'flat_n'}} at n, `_data_at`) the
    mean data term and the finite-n correction of the zero-column volume."""
    ta, tb = o1[a], o1[b]
    rows = [("n dL + dlambda log n", n * (ta.loss - tb.loss) + (lam[a] - lam[b]) * math.log(n))]
    for key, name in TERMS:
        va, vb = getattr(ta, key), getattr(tb, key)
        if va is not None and vb is not None:
            rows.append((name, float(va - vb)))
    if data_at is not None and a in data_at and b in data_at:
        rows.append(("data term (copy of lowest L_n), mean over data sets",
                     data_at[a]["data"] - data_at[b]["data"]))
        rows.append(("zero-column volume at this n instead of −log P_flat",
                     data_at[a]["flat_n"] - data_at[b]["flat_n"]))
    return rows


def _data_delta(points: list, a: str, b: str) -> list[np.ndarray] | None:
    """Per n, the exact data term difference delta(a) - delta(b) of each data set (S,)."""
    if not points or points[0].data_term is None:
        return None
    out = []
    for pt in points:
        tl = pt.theory_labels
        if a not in tl or b not in tl:
            return None
        out.append(np.asarray(pt.data_term)[:, tl.index(a)] - np.asarray(pt.data_term)[:, tl.index(b)])
    return out


def _fits(pair: PairDifferences, ns, grid: dict, ta: O1Terms, tb: O1Terms, delta) -> dict[str, FreeEnergyFit]:
    """The fits of one pair: free (dlambda, dc; dL of the representatives), remainder beyond
    the paper formula, beyond the Laplace constants, and both again with the exact data term
    of each data set subtracted first (`_data`)."""
    dL = ta.loss - tb.loss
    fits = dict(free=fit_free_energy(ns, pair.dF, pair.se, dL),
                remainder=fit_free_energy(ns, pair.dF, pair.se, 0.0, 0.0, offset=grid["paper"]))
    if grid["laplace"] is not None:
        fits["remainder_laplace"] = fit_free_energy(ns, pair.dF, pair.se, 0.0, 0.0, offset=grid["laplace"])
    if delta is not None:
        dc = [pool(d - dd, s) for d, dd, s in zip(pair.dF_seed, delta, pair.se_seed)]
        y, se = np.array([v[0] for v in dc]), np.array([v[1] for v in dc])
        pair.dF_data_corrected, pair.se_data_corrected = y, se  # the pair's record shows them too
        fits["free_data"] = fit_free_energy(ns, y, se, dL)
        if grid["laplace"] is not None:
            fits["remainder_laplace_data"] = fit_free_energy(ns, y, se, 0.0, 0.0, offset=grid["laplace"])
        if grid["laplace_n"] is not None:
            fits["remainder_all"] = fit_free_energy(ns, y, se, 0.0, 0.0, offset=grid["laplace_n"])
    return fits


def analyse_pair(pair: PairDifferences, ns, c: int, o1: dict[str, O1Terms], curves: dict, fine: dict, n_fine,
                 points, lam: dict) -> PairAnalysis:
    """Fits, predicted crossings and the term-by-term split of one pair (alpha -> beta).

    curves / fine: theory_curves on the sweep grid ns and on n_fine. n_c: 'paper' (the
    lab's formula), 'multiplicity', 'laplace' (all computed O(1) terms), 'laplace+data'
    (and the mean data term), 'measured O(1)' (paper + fitted remainder), 'fit' (fitted
    dlambda and dc), 'observed' (the measured difference changes sign)."""
    a, b = pair.alpha, pair.beta
    mid = int(np.argmin(np.abs(np.log(np.asarray(n_fine)) - np.log(np.sqrt(ns[0] * ns[-1])))))
    ra, rb = representative(a, fine, mid), representative(b, fine, mid)
    if ra is None or rb is None:
        return PairAnalysis(pair, theory=False)

    def cc(d, v):
        ya, yb = column_curve(a, d, v), column_curve(b, d, v)
        return None if ya is None or yb is None else ya - yb

    variants = ("paper", "mult", "laplace", "data", "laplace_n", "finite")
    grid, fcur = {v: cc(curves, v) for v in variants}, {v: cc(fine, v) for v in variants}
    fits = _fits(pair, ns, grid, o1[ra], o1[rb], _data_delta(points, ra, rb))
    fr, rem = fits["free"], fits["remainder"].dc
    dL = o1[ra].loss - o1[rb].loss
    fcur["measured"] = None if not np.isfinite(rem) else fcur["paper"] + rem
    fcur["fit"] = None if not np.isfinite(fr.dlam) else n_fine * dL + fr.dlam * np.log(n_fine) + fr.dc
    obs = crossing(ns, pair.dF)
    roots = {k: (None if fcur[v] is None else crossing(n_fine, fcur[v])) for k, v in
             (("paper", "paper"), ("multiplicity", "mult"), ("laplace", "laplace"), ("laplace+data", "data"),
              ("all computed", "finite"), ("measured O(1)", "measured"), ("fit", "fit"))}
    roots["observed"] = obs
    n_star = obs if obs is not None else float(np.sqrt(ns[0] * ns[-1]))
    data_at = _data_at(fine, n_fine, n_star, (ra, rb))
    return PairAnalysis(pair, True, rep_alpha=ra, rep_beta=rb, dL=dL, dlam=lam[ra] - lam[rb],
                        dc_paper=o1[ra].prior - o1[rb].prior, dc_laplace=_diff(o1, ra, rb, "laplace"), fits=fits,
                        n_c=roots, n_star=n_star, terms=decompose(ra, rb, o1, n_star, lam, data_at),
                        curves={k: v for k, v in fcur.items() if v is not None},
                        grid={k: v for k, v in grid.items() if v is not None})


def _diff(o1: dict, a: str, b: str, key: str):
    va, vb = getattr(o1[a], key), getattr(o1[b], key)
    return None if va is None or vb is None else float(va - vb)


def _data_at(fine: dict, n_fine, n: float, labels) -> dict | None:
    """Per label at n, from the fine curves: the mean data term (data - laplace) and the
    finite-n correction of the zero-column volume (laplace_n - laplace)."""
    out = {}
    for lab in labels:
        if lab not in fine or fine[lab].data is None:
            return None
        at = lambda y: float(np.interp(math.log(n), np.log(n_fine), y))  # noqa: E731
        out[lab] = dict(data=at(fine[lab].data - fine[lab].laplace), flat_n=at(fine[lab].laplace_n - fine[lab].laplace))
    return out if all(np.isfinite(v) for d in out.values() for v in d.values()) else None


def lambda_table(c: int, lam_res, sgld: dict, o1: dict[str, O1Terms]) -> list[LambdaRow]:
    """lambda three ways per phase of lam_res (tms.bayes.free_energy.ladders.LocalLambdas):
    zoo theory, SGLD at the zoo point (sgld: {label: (value, s.e.)}), Bayes from the local
    ladders."""
    rows = []
    for lab in lam_res.labels:
        r = lam_res.per_label[lab]
        sg = sgld.get(lab, (math.nan, math.nan))
        nb = np.asarray(r.betas) * lam_res.settings["n_used"]
        rows.append(LambdaRow(label=lab, theory=o1[lab].llc if lab in o1 else None, sgld=float(sg[0]),
                              sgld_se=float(sg[1]), bayes=float(r.lam), bayes_se=float(r.se),
                              slots_used=int(r.slots_used), nbeta_min=float(nb.min()), nbeta_max=float(nb.max()),
                              wall_rate=float(np.mean(r.wall))))
    return rows


def analyse(points: list, c: int, o1: dict[str, O1Terms], lam: dict, *, dcurve: dict | None = None,
            beta_lik: float = 1.0, pairs=None, min_mass: float = MIN_MASS) -> FreeEnergyAnalysis:
    """Both readings of a sweep (FreeEnergyPoint per n): every pair's measured differences,
    and for the primary pairs (PAIRS[c] or `pairs`) fits, crossings and the split into terms
    (analyse_pair). lam: lambda per label for the theory curves (zoo theory, else the Bayes
    estimate)."""
    ns = np.array([pt.n for pt in points], dtype=float)
    n_fine = np.exp(np.linspace(math.log(10.0), math.log(1e5), 600))
    labels = list(o1)
    curves = theory_curves(c, labels, ns, o1, dcurve, lam, beta_lik)
    fine = theory_curves(c, labels, n_fine, o1, dcurve, lam, beta_lik)
    readings = {}
    for reading in ("zoo", "hull"):
        table = reading_table(points, reading)
        every = all_pairs(table, c, min_mass)
        prim = []
        for a, b in pairs or PAIRS.get(c, []):
            pr = next((p for p in every if p.alpha == a and p.beta == b), None)
            if pr is None and a in table.cols and b in table.cols:
                pr = pair_differences(table, table.cols.index(a), table.cols.index(b))
            if pr is not None:
                prim.append(analyse_pair(pr, ns, c, o1, curves, fine, n_fine, points, lam))
        readings[reading] = Reading(table.cols, table.mass, every, prim)
    return FreeEnergyAnalysis(ns, n_fine, readings)
