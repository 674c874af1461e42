"""The analysis behind `tms transitions` (SPEC 4): a training result's plateaus on the zoo
levels, their geometry, the LLC along the trajectories and the Bayesian-antecedent table,
gathered in one TransitionsResult.

    settings = TransitionsSettings(llc_points=40, n_chains=8)
    result = analyse_training(load_train("results/sgd/train"), settings, llc_path=...)

TransitionsSettings holds every setting of the analysis (validated once); the LLC along the
trajectories is saved at `llc_path` and reused from there (tms.core.io.reuse_problem) when its
settings and training result match.
"""
from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tms.core import checks, io
from tms.core import progress as progress_bar, work
from tms.core.settings import Settings, setting
from tms.dynamics import tasks
from tms.dynamics.antecedents import Antecedent, PlateauLLC, antecedent_table, plateau_llc
from tms.dynamics.train import TrainResult, TrainSettings
from tms.dynamics.transitions import (Segmentation, choose_run, default_tol, label_checkpoints, llc_checkpoints,
                                      segment, zoo_levels)
from tms.llc.estimator import default_nbeta
from tms.theory.zoo import TransitionRow


@dataclass(frozen=True)
class TransitionsSettings(Settings):
    """Every setting of the analysis of a training result (`tms transitions`, SPEC 4): the
    plateau segmentation, the SGLD estimates of the LLC along the trajectories (SPEC 4
    defaults: eps 1e-3, gamma 1, 4 chains x 500 draws, nbeta = n / log n) and n_c's terms."""

    tol: float | None = setting(None, "loss tolerance around a zoo level (None: a quarter of the smallest "
                                "level gap, at most 2e-3)", positive=True, optional=True)
    min_points: int = setting(3, "fewest checkpoints on a plateau", minimum=1)
    min_span: float = setting(1.25, "a plateau spans at least this factor in steps", minimum=1.0)
    llc: bool = setting(True, "estimate the LLC along the trajectories")
    llc_points: int = setting(20, "checkpoints per run with an LLC estimate (half log-spaced, half evenly in "
                              "steps; a number >= the checkpoint count takes them all)", minimum=1)
    n_chains: int = setting(4, "SGLD chains per checkpoint", minimum=1, maximum=checks.MAX_CHAINS)
    n_burnin: int = setting(0, "SGLD steps discarded per chain", minimum=0, maximum=checks.MAX_STEPS)
    n_draws: int = setting(500, "SGLD steps kept per chain (after the burn-in)", minimum=2, maximum=checks.MAX_STEPS)
    eps: float = setting(1e-3, "SGLD step size", positive=True, maximum=checks.MAX_EPS)
    gamma: float = setting(1.0, "SGLD localisation strength", minimum=0)
    nbeta: float | None = setting(None, "n * beta of the localised posterior (None: n / log n)", positive=True,
                                  optional=True)
    seed: int = setting(0, "SGLD seed", minimum=0, maximum=checks.MAX_SEED)
    prior: bool = setting(True, "the prior term c_alpha in n_c")
    beta_lik: float = setting(1.0, "likelihood inverse temperature for n_c (1: exp(-n L_n), docs/SPEC.md "
                              "section 3; 0.5: unit-variance Gaussian)", positive=True)
    figure_run: int | None = setting(None, "run drawn in sgd_trajectory.png (None: the one with the most "
                                     "plateaus)", minimum=0, optional=True)


@dataclass(frozen=True)
class GeometryCheck:
    """Per plateau label: the share of its checkpoints that tms.theory.phases.classify gives the
    same label (`agreement`), and the three commonest other labels with their counts (`other`)."""

    agreement: dict[str, float]
    other: dict[str, dict[str, int]]


def geometry(seg: Segmentation, cls: np.ndarray) -> GeometryCheck:
    """Cross-check of the level labels by geometry; cls: (T, R) classify labels of every checkpoint."""
    agree, other = {}, {}
    for p in seg.plateaus:
        got = cls[p.start : p.end + 1, p.run]
        agree.setdefault(p.label, []).extend((got == p.label).tolist())
        other.setdefault(p.label, Counter()).update(got[got != p.label].tolist())
    return GeometryCheck({k: float(np.mean(v)) for k, v in agree.items()},
                         {k: dict(v.most_common(3)) for k, v in other.items()})


@dataclass(frozen=True)
class CheckpointLLC:
    """LLC estimates at checkpoints of every run: index (T',) checkpoint indices; llc, llc_se
    (T', R) estimate and standard error; ok (T', R) trustworthy (tms.llc.estimator diagnostics);
    settings: what made them (SGLD settings, the checkpoints, the training record)."""

    index: np.ndarray
    llc: np.ndarray
    llc_se: np.ndarray
    ok: np.ndarray
    settings: dict

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays as saved (in the LLC result and the transitions result)."""
        return dict(llc_index=self.index, llc=self.llc, llc_se=self.llc_se, llc_ok=self.ok)


def checkpoint_llc(train: TrainResult, settings: TransitionsSettings, *, path: str | Path | None = None,
                   device=None, progress: bool = True, scheduler: str | None = None,
                   workers: int | None = None) -> CheckpointLLC:
    """LLC at about `settings.llc_points` checkpoints of every run of a TrainResult: localized
    full-batch SGLD on each run's training set (SPEC 4). Saved at `path` (if given) and
    reused from there when its settings and training result are the same
    (tms.core.io.reuse_problem). scheduler / workers: checkpoint blocks as Dask tasks
    (tms.dynamics.tasks.trajectory_llc, blocks in PATH_blocks until merged; same numbers)."""
    idx = llc_checkpoints(train.steps.numpy(), settings.llc_points)
    s = settings
    nbeta = float(default_nbeta(train.settings.n) if s.nbeta is None else s.nbeta)
    record = dict(nbeta=nbeta, eps=s.eps, gamma=s.gamma, n_chains=s.n_chains, n_burnin=s.n_burnin,
                  n_draws=s.n_draws, seed=s.seed, loss="empirical (full batch, training set)",
                  checkpoints=idx.tolist(), train=train.record)
    if path is not None and io.reuse_problem(path, record) is None:
        arr, _ = io.load_result(path)
        progress_bar.reused("LLC estimates along the checkpoints (same settings and training result)", path)
        return CheckpointLLC(arr["llc_index"], arr["llc"], arr["llc_se"], arr["llc_ok"], record)
    ii, dev = torch.from_numpy(idx), checks.device(device)
    work.announce(work.llc(centres=len(idx) * len(train.run_ids), n_chains=s.n_chains, steps=s.n_burnin + s.n_draws,
                           n=train.settings.n, empirical=True), progress=progress)
    est = tasks.trajectory_llc(train.W[ii].to(dev), train.b[ii].to(dev), train.X.to(dev), nbeta=nbeta, eps=s.eps,
                               gamma=s.gamma, n_chains=s.n_chains, n_burnin=s.n_burnin, n_draws=s.n_draws,
                               seed=s.seed, progress=progress, scheduler=scheduler, workers=workers,
                               out_dir=None if path is None else Path(path).with_name(Path(path).name + "_blocks"))
    result = CheckpointLLC(idx, *(t.cpu().numpy() for t in (est.llc, est.llc_se, est.trustworthy)), record)
    if path is not None:
        io.save_result(path, result.arrays(), dict(settings=record))
    return result


TRANSITION_ARRAYS = dict(level_index=((2,), "iu"), on_level=((2,), "b"), plateau_run=((1,), "iu"),
                         plateau_level=((1,), "iu"), plateau_start=((1,), "iu"), plateau_end=((1,), "iu"))


@dataclass
class TransitionsResult:
    """What `analyse_training` finds in a `tms train` result (SPEC 4).

    arrays: level_index, on_level (T, R); plateau_run/level/start/end (P,); classify_label,
    level_label (T, R) str; with the LLC also llc_index (T',), llc, llc_se, llc_ok (T', R).
    train: the training result's record; settings: the analysis's; tol: the tolerance used.
    levels: {labels, loss, llc, prior} of the zoo energy table used; plateaus/transitions:
    lists of tms.dynamics.transitions.Plateau / Transition fields; sequence_counts: [[labels], runs];
    classify_agreement / classify_other: GeometryCheck's; antecedents, bayesian_unseen: the
    two parts of tms.dynamics.antecedents.antecedent_table; llc_settings: CheckpointLLC.settings;
    plateau_llc: per label; figure_run: the run drawn in sgd_trajectory.png; input: the
    training result's path (set by tms.experiments.transitions.run).
    """

    arrays: dict[str, np.ndarray]
    train: dict
    settings: TransitionsSettings
    tol: float
    levels: dict
    plateau_labels: list[str]
    plateaus: list[dict]
    transitions: list[dict]
    sequence_counts: list
    classify_agreement: dict[str, float]
    classify_other: dict[str, dict[str, int]]
    antecedents: list[Antecedent]
    bayesian_unseen: list[TransitionRow]
    llc_settings: dict | None = None
    plateau_llc: dict[str, PlateauLLC] = field(default_factory=dict)
    segmented_on: str = "population loss"
    figure_run: int | None = None
    input: str = ""

    @property
    def train_settings(self) -> TrainSettings:
        return TrainSettings.from_record(self.train["settings"])

    @property
    def c(self) -> int:
        return self.train_settings.c

    def save(self, path) -> None:
        record = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "arrays"}
        record["antecedents"] = [dataclasses.asdict(a) for a in self.antecedents]
        record["bayesian_unseen"] = [dataclasses.asdict(u) for u in self.bayesian_unseen]
        record["plateau_llc"] = {k: dataclasses.asdict(v) for k, v in self.plateau_llc.items()}
        io.save_result(path, self.arrays, record)

    @classmethod
    def load(cls, path, name: str = "--input") -> "TransitionsResult":
        """The result saved at `path`, checked (ValueError naming `name` and the file)."""
        keys = tuple(f.name for f in dataclasses.fields(cls) if f.name != "arrays" and f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING)
        arrays, record = checks.result_file(path, name, what="`tms transitions` result", keys=keys,
                                            arrays=TRANSITION_ARRAYS)
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in record.items() if k in known}
        try:
            kw["antecedents"] = [Antecedent(**r) for r in record["antecedents"]]
            kw["bayesian_unseen"] = [TransitionRow(**r) for r in record["bayesian_unseen"]]
            kw["plateau_llc"] = {k: PlateauLLC(**v) for k, v in record.get("plateau_llc", {}).items()}
            kw["settings"] = TransitionsSettings.from_record(record["settings"])
            TrainSettings.from_record(record["train"]["settings"])
        except (TypeError, ValueError, KeyError, AttributeError) as err:
            raise ValueError(f"{name}: {checks.result_stem(path)}.json is not a `tms transitions` result "
                             f"({type(err).__name__}: {err})") from None
        return cls(arrays={k: np.asarray(v) for k, v in arrays.items()}, **kw)


def _segmentation_arrays(seg: Segmentation) -> dict[str, np.ndarray]:
    """The segmentation as the arrays a TransitionsResult saves: (T, R) labels, (P,) plateaus."""
    col = lambda name: np.array([getattr(p, name) for p in seg.plateaus], dtype=np.int64)  # noqa: E731
    return dict(level_index=seg.level_index, on_level=seg.on_level, plateau_run=col("run"),
                plateau_level=col("level"), plateau_start=col("start"), plateau_end=col("end"))


def analyse_training(train: TrainResult, settings: TransitionsSettings | None = None, *,
                     llc_path: str | Path | None = None, device=None, progress: bool = True,
                     scheduler: str | None = None, workers: int | None = None) -> TransitionsResult:
    """Plateaus on the zoo levels (segmented on the population loss), their geometry, the LLC
    along the trajectories (`checkpoint_llc`, saved at llc_path) and the Bayesian-antecedent
    table of a training result (SPEC 4). Nothing is saved but the LLC."""
    s = settings or TransitionsSettings()
    c = train.settings.c
    levels = zoo_levels(c)
    tol = default_tol(levels) if s.tol is None else s.tol
    seg = segment(train.pop_loss, train.steps, levels, tol=tol, min_points=s.min_points, min_span=s.min_span)
    arrays = _segmentation_arrays(seg)
    cls, near = label_checkpoints(train.W, train.b, train.pop_loss, levels)
    arrays.update(classify_label=cls, level_label=near)
    geo = geometry(seg, cls)
    llc_est, llc_settings = {}, None
    if s.llc:
        est = checkpoint_llc(train, s, path=llc_path, device=device, progress=progress, scheduler=scheduler,
                             workers=workers)
        arrays.update(est.arrays())
        llc_est, llc_settings = plateau_llc(seg, est.index, est.llc, est.llc_se, est.ok), est.settings
    rows, unseen = antecedent_table(seg, c, llc_est, prior=s.prior, beta_lik=s.beta_lik)
    for r in rows:
        r.geometry_src, r.geometry_dst = geo.agreement.get(r.src), geo.agreement.get(r.dst)
    seq_counts = sorted(Counter(seg.sequences()).items(), key=lambda kv: -kv[1])
    shown = choose_run(dict(arrays, pop_loss=train.pop_loss.numpy())) if s.figure_run is None else s.figure_run
    return TransitionsResult(
        arrays=arrays, train=train.record, settings=s, tol=tol,
        levels=dict(labels=levels.labels, loss=levels.loss.tolist(),
                    llc=[None if np.isnan(v) else float(v) for v in levels.llc], prior=levels.prior.tolist()),
        plateau_labels=[p.label for p in seg.plateaus], plateaus=[p._asdict() for p in seg.plateaus],
        transitions=[t._asdict() for t in seg.transitions], sequence_counts=[[list(seq), k] for seq, k in seq_counts],
        classify_agreement=geo.agreement, classify_other=geo.other, antecedents=rows, bayesian_unseen=unseen,
        llc_settings=llc_settings, plateau_llc=llc_est, figure_run=int(shown))
