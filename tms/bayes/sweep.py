"""The one sweep engine of the posterior phase sweep and the free-energy sweeps: items (n, data
sets) -> chunks -> checkpointed sampling -> each finished point saved at once.

A sweep is a `Job` (what is sampled, how a point is built, saved and loaded) over `Item`s (one
sample size n with its data sets). A point saved under out_dir is reused when
tms.core.io.reuse_problem allows it (same settings and data sets, same package version, intact
files; `reusable`): a damaged one is reported on stderr and recomputed, an intact one made with
other settings is an error. The rest are sampled in chunks of batch_points items (default: all),
every data set of a chunk in one batched sampler run per `Phase` of the job (the posterior:
plain chains, then replica-exchange ladders), warm-up and sampling advancing STEP rounds at a
time. After each step the chunk's state (sampler state, the job's records so far) is a
consistent `Snapshot`; it is saved as the checkpoint PREFIX_partial_n{first n} every
`save_every` seconds and when the run is interrupted (KeyboardInterrupt, which `tms` raises on
SIGTERM too), and removed when the chunk is done. A rerun resumes the chunk from it. Every
random number is counter-based per (seed, n, data set) (tms.core.rng) and a step boundary
changes no arithmetic (tms.samplers.tempering), so a resumed point has the numbers of an
uninterrupted run to the last bit.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import torch

from tms.core import progress as progress_bar
from tms.bayes import checkpoint
from tms.core import checks, io, rng
from tms.samplers import tempering
from tms.theory.loss import SortedData, sorted_data, stack_sorted

STEP = 10  # sampler rounds between snapshots (a checkpoint can only hold a snapshot)


class Item(NamedTuple):
    """One point of a sweep: sample size n, its data sets X (n, c) and their identities (data
    seeds, or hashes of a researcher's arrays), which are part of the point's settings."""

    n: int
    data: list
    ids: list


class Batch(NamedTuple):
    """A chunk's data sets, item-major: data (G,) stacked, owner[g] the item of data set g."""

    items: list
    data: SortedData
    owner: list


class Block(NamedTuple):
    """What a block of sampling rounds gives the job: out (tempering.sample's over the block:
    draws (T, G_alive, ...) and sums), the sampler state after it, alive (the batch rows of the
    data sets sampled, in state order), rounds done so far in the phase, and the batch."""

    out: tempering.Sampled
    state: tempering.SamplerState
    alive: list
    rounds: int
    batch: Batch


class Phase(NamedTuple):
    """One batched sampler run over a chunk's data sets.

    start(batch) -> (theta0 (G, ..., d), keys (G, ...), betas (G, 1, K) or None); target(data)
    -> tempering.Target of the data sets given; n_warmup rounds of warm-up, then at most
    n_draws sampling rounds in blocks of `block`, keeping record(theta) every `thin`-th round;
    warmed(records, state, info) -> records after warm-up; blocked(records, Block) ->
    (records, positions in `alive` that leave the run, finished points as (n, point)). A data set leaves
    after n_draws rounds in any case. The records are the job's state (nested dicts, lists,
    arrays, numbers): treated as values, never changed in place, so a snapshot stays valid."""

    start: Callable
    target: Callable
    n_warmup: int
    n_draws: int
    block: int
    record: Callable
    blocked: Callable
    warmed: Callable | None = None
    thin: int = 1
    desc: str = "sampling"


class Job(NamedTuple):
    """A sweep: results PREFIX_n{n} under out_dir; identity, the settings record every point
    and checkpoint is compared with (a point's adds its data-set ids); phases(batch) its
    sampler runs; save(path, point, settings) and load(path) of a point; problem(path), what
    makes a saved point unusable beyond tms.core.io.reuse_problem (None: nothing); dtype and
    device of the data; records, the job's records before the first phase."""

    prefix: str
    identity: dict
    phases: Callable
    save: Callable
    load: Callable
    problem: Callable = lambda path: None
    dtype: torch.dtype = torch.float64
    device: Any = "cpu"
    records: Any = None


class Snapshot(NamedTuple):
    """A chunk between two steps: phase index (len(phases): done); warm, a warm-up under way,
    or state, sampling under way; totals and draws of the block so far; alive (batch rows
    still sampled), rounds (finished blocks' rounds), block_rounds, the job's records."""

    phase: int
    warm: tempering.Warmup | None
    state: tempering.SamplerState | None
    totals: tempering.Sampled | None
    draws: list
    alive: list
    rounds: int
    block_rounds: int
    records: Any


def point_path(out_dir: str | Path, prefix: str, n: int) -> Path:
    """Where a sweep with this prefix saves its point n."""
    return Path(out_dir) / f"{prefix}_n{n}"


def point_settings(job: Job, item: Item) -> dict:
    """The settings record of a point: the job's identity and the ids of its data sets."""
    return dict(job.identity, ids=list(item.ids))


def reusable(path: Path, settings, extra: Callable | None = None, what: str = "this point") -> bool:
    """Whether the result at path may be reused for `settings` (tms.core.io.reuse_problem, the
    one rule, then `extra(path)`). False when there is none, or it is damaged (said on stderr,
    then recomputed by the caller); a ValueError when an intact one was made with other
    settings or by another package version (nothing is overwritten)."""
    problem = io.reuse_problem(path, settings)
    if problem is None:
        problem = extra(path) if extra is not None else None
        if problem is None:
            return True
    elif not (path.with_suffix(".json").exists() or path.with_suffix(".npz").exists()):
        return False
    elif io.check_result(path) is None:
        raise ValueError(f"{problem}; use another output folder or delete it")
    checks.warn(f"{path}: {problem}; recomputing {what}")
    return False


def run(job: Job, items: list[Item], *, out_dir: str | Path | None = None, batch_points: int | None = None,
        save_every: float = 60.0, progress: bool = False, desc: str = "sweep") -> dict[int, Any]:
    """Every item's point by n: loaded where saved and reusable, else sampled chunk by chunk
    (a checkpointed chunk first, resumed), each saved under out_dir as soon as it is finished."""
    out_dir = Path(out_dir) if out_dir is not None else None
    done = {}
    if out_dir is not None:
        for it in items:
            path = point_path(out_dir, job.prefix, it.n)
            if reusable(path, point_settings(job, it), job.problem):
                done[it.n] = job.load(path)
    todo = [it for it in items if it.n not in done]
    resumed = _checkpointed(job, items, {it.n for it in todo}, out_dir) if out_dir is not None and todo else None
    first = resumed[0] if resumed is not None else []
    rest = [it for it in todo if it.n not in {it.n for it in first}]
    step = batch_points or max(1, len(rest))
    chunks = ([(first, resumed[1])] if first else []) + [(rest[i:i + step], None) for i in range(0, len(rest), step)]
    for chunk, snap in progress_bar.bar(chunks, desc=desc, disable=not progress or len(chunks) < 2):
        done.update(_run_chunk(job, chunk, snap, out_dir, save_every, progress))
    if out_dir is not None:
        _remove_stale(job, out_dir, set(done))
    return done


def checkpoint_path(out_dir: Path, prefix: str, ns: list[int]) -> Path:
    """The checkpoint of the chunk of sample sizes ns."""
    return Path(out_dir) / f"{prefix}_partial_n{ns[0]}"


def _checkpoint_settings(job: Job, items: list[Item]) -> dict:
    return dict(job.identity, ns=[it.n for it in items], ids=[list(it.ids) for it in items])


def _checkpointed(job: Job, items: list[Item], todo: set, out_dir: Path) -> tuple[list[Item], Snapshot] | None:
    """(the items of its chunk, its snapshot) of a checkpoint under out_dir whose chunk lies in
    `items` and holds points still to do (`todo`, their n), or None. A damaged one of this
    sweep is said and removed; one made with other settings is an error; another chunk's (a
    task beside this one, another grid) is left alone."""
    by_n = {it.n: it for it in items}
    for js in sorted(out_dir.glob(f"{job.prefix}_partial_n*.json")):
        path = js.with_suffix("")
        try:
            ns = io.load_json(js).get("settings", {}).get("ns") or []
        except ValueError:
            ns = None  # unreadable: damaged
        if ns is not None and not (set(ns) <= set(by_n) and set(ns) & todo):
            continue
        chunk = [by_n[n] for n in ns or []]
        if chunk and reusable(path, _checkpoint_settings(job, chunk), what="its chunk from the start"):
            arrays, rec = io.load_result(path)
            snap = Snapshot(*checkpoint.unflatten(rec["state"], arrays, job.device))
            progress_bar.write(f"resumed: the points n = {', '.join(map(str, ns))} from the checkpoint {path} "
                               f"(step {snap.phase + 1}, {snap.rounds + snap.block_rounds} rounds sampled)")
            return chunk, snap
        if ns is None:
            checks.warn(f"{path}: {io.check_result(path)}; recomputing its chunk from the start")
        io.remove_result(path)
    return None


def _remove_stale(job: Job, out_dir: Path, finished: set) -> None:
    """Remove the checkpoints whose points are all finished (a run killed after saving them)."""
    for js in out_dir.glob(f"{job.prefix}_partial_n*.json"):
        try:
            ns = io.load_json(js).get("settings", {}).get("ns")
        except ValueError:
            continue
        if ns and set(ns) <= finished:
            io.remove_result(js.with_suffix(""))


def dataset_ids(batch: Batch, *family: int) -> list[tuple]:
    """(n, s, *family) of every data set of a batch, s its index within its item."""
    return [(it.n, s, *family) for it in batch.items for s in range(len(it.data))]


def chain_keys(seed: int, ids: list[tuple], shape: tuple, device=None) -> torch.Tensor:
    """Chain keys (G, *shape): data set g's from rng.key(seed, *ids[g]) and the chain's index,
    never from its place in a batch (the same numbers alone, batched or resumed)."""
    base = torch.tensor([rng.key(seed, *i) for i in ids], dtype=torch.int64, device=device)
    return rng.keys_from(base, tuple(shape))


def make_batch(job: Job, items: list[Item]) -> Batch:
    """Every data set of the items, sorted (tms.theory.loss) and stacked on the job's device."""
    datas = [sorted_data(X.to(job.dtype)) for it in items for X in it.data]
    data = SortedData(*(t.to(job.device) for t in stack_sorted(datas)))
    owner = [i for i, it in enumerate(items) for _ in it.data]
    return Batch(items, data, owner)


def subset(data: SortedData, rows: list[int]) -> SortedData:
    """The data sets `rows` of a stacked batch."""
    idx = torch.tensor(rows, device=data.mu.device)
    return SortedData(*(t.index_select(0, idx) for t in data))


def _run_chunk(job: Job, items: list[Item], snap: Snapshot | None, out_dir: Path | None, save_every: float,
               progress: bool) -> dict[int, Any]:
    """Sample one chunk from its start or from `snap`; save each point as it is finished and
    the snapshot on the interval and on an interrupt; remove the checkpoint at the end."""
    batch = make_batch(job, items)
    phases = job.phases(batch)
    ckpt = checkpoint_path(out_dir, job.prefix, [it.n for it in items]) if out_dir is not None else None
    settings = _checkpoint_settings(job, items)
    snap = snap or Snapshot(0, None, None, None, [], [], 0, 0, job.records)
    saved, t_save, points = snap, time.monotonic(), {}
    targets = _Targets(phases, batch)
    bars = _Bars(phases, progress, len(batch.owner))
    try:
        while snap.phase < len(phases):
            new, finished = _advance(phases[snap.phase], batch, snap, targets)
            bars.show(new)
            for n, pt in finished:
                points[n] = pt
                _save_point(job, next(it for it in items if it.n == n), pt, out_dir)
            snap = new
            if ckpt is not None and time.monotonic() - t_save >= save_every and snap.phase < len(phases):
                _save_snapshot(ckpt, snap, settings)
                saved, t_save = snap, time.monotonic()
    except KeyboardInterrupt:
        if ckpt is not None and snap is not saved and snap.phase < len(phases):
            _save_snapshot(ckpt, snap, settings)
        raise
    finally:
        bars.close()
    if ckpt is not None:
        io.remove_result(ckpt)
    return points


def _save_point(job: Job, item: Item, point, out_dir: Path | None) -> None:
    """Save a finished point at once, unless the same point is on disk (a resumed chunk
    finishes again what it had finished before its checkpoint)."""
    if out_dir is None:
        return
    path, settings = point_path(out_dir, job.prefix, item.n), point_settings(job, item)
    if io.reuse_problem(path, settings) is None and job.problem(path) is None:
        return
    job.save(path, point, settings)


def _save_snapshot(path: Path, snap: Snapshot, settings: dict) -> None:
    arrays, layout = checkpoint.flatten(tuple(snap))
    io.save_result(path, arrays, dict(settings=settings, state=layout, phase=snap.phase, rounds=snap.rounds))


class _Targets:
    """The target of each phase for the data sets alive, built once per set of data sets."""

    def __init__(self, phases: list[Phase], batch: Batch):
        self.phases, self.batch, self.cache = phases, batch, {}

    def get(self, phase: int, alive: list[int]) -> tempering.Target:
        key = (phase, tuple(alive))
        if key not in self.cache:
            rows = list(range(len(self.batch.owner)))
            data = self.batch.data if list(alive) == rows else subset(self.batch.data, alive)
            self.cache = {key: self.phases[phase].target(data)}
        return self.cache[key]


def _advance(ph: Phase, batch: Batch, snap: Snapshot, targets: _Targets) -> tuple[Snapshot, list]:
    """One step of the chunk: start a phase, STEP rounds of warm-up or sampling, or the end of
    a block (the job's bookkeeping: data sets leave, points finish). Returns the new snapshot
    and the points finished."""
    if snap.warm is None and snap.state is None:  # a phase starts
        theta0, keys, betas = ph.start(batch)
        alive = list(range(len(batch.owner)))
        state = tempering.init(theta0, keys, targets.get(snap.phase, alive), betas)
        return snap._replace(warm=tempering.warmup_start(state), alive=alive, rounds=0, block_rounds=0), []
    target = targets.get(snap.phase, snap.alive)
    if snap.warm is not None:
        warm = tempering.warmup_rounds(snap.warm, target, ph.n_warmup, STEP)
        if warm.done < ph.n_warmup:
            return snap._replace(warm=warm), []
        state, info = tempering.warmup_end(warm)
        records = ph.warmed(snap.records, state, info) if ph.warmed is not None else snap.records
        return snap._replace(warm=None, state=state, records=records), []
    block = min(ph.block, ph.n_draws - snap.rounds)
    k = min(STEP, block - snap.block_rounds)
    state, out = tempering.sample(snap.state, target, k, record=ph.record, thin=ph.thin, totals=snap.totals)
    draws = snap.draws + ([out.draws] if out.draws is not None else [])
    if snap.block_rounds + k < block:
        return snap._replace(state=state, totals=out, draws=draws, block_rounds=snap.block_rounds + k), []
    rounds = snap.rounds + block
    out = out._replace(draws=torch.cat(draws) if draws else None)
    records, leaving, points = ph.blocked(snap.records, Block(out, state, snap.alive, rounds, batch))
    keep = [i for i in range(len(snap.alive)) if i not in set(leaving)] if rounds < ph.n_draws else []
    if not keep:
        return Snapshot(snap.phase + 1, None, None, None, [], [], 0, 0, records), points
    if len(keep) < len(snap.alive):
        state = tempering.select(state, torch.tensor(keep, device=batch.data.mu.device))
    return Snapshot(snap.phase, None, state, None, [], [snap.alive[i] for i in keep], rounds, 0, records), points


class _Bars:
    """Progress bars: one per phase over its warm-up and sampling rounds."""

    def __init__(self, phases: list[Phase], progress: bool, G: int):
        self.phases, self.progress, self.G, self.bar, self.at = phases, progress, G, None, None

    def show(self, snap: Snapshot) -> None:
        if not self.progress or snap.phase >= len(self.phases):
            return self.close()
        ph = self.phases[snap.phase]
        if self.at is None or self.at[0] != snap.phase:
            self.close()
            self.bar = progress_bar.bar(total=ph.n_warmup + ph.n_draws, desc=f"{ph.desc} ({self.G} data sets)",
                                        leave=False)
            self.at = (snap.phase, 0)
        done = (snap.warm.done if snap.warm is not None else 0 if snap.state is None
                else ph.n_warmup + snap.rounds + snap.block_rounds)
        self.bar.update(done - self.at[1])
        self.at = (snap.phase, done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar, self.at = None, None
