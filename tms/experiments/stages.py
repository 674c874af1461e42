"""The stages of `tms reproduce` (tms.experiments.reproduce): identity, integrity, reuse.

Reuse. A stage's marker OUT/stages/NAME.json holds its identity: the settings that change its
numbers (scale settings, seed, grid, the inputs it takes from earlier stages, the package
version), never a path, so a moved or copied results folder, or a relative instead of an
absolute path, is reused as it is. A finished stage is reused only after every result file it
listed passes tms.core.io.check_result and still has the checksum it had when the stage ended; a
missing or damaged file is reported and its piece recomputed (one n of a posterior stage,
the other n kept). A stage interrupted mid-way (marker "running") resumes over its saved
pieces; changed settings or force=True clear the stage's results first. Figures are drawn
from the saved results after the stage, and redrawn when reused if a figure is missing or
differs from the one the stage drew (another figures folder).

Beside (`Pipeline.run_beside`). Stages that need nothing of the stages still to run here can
compute in a second process (a `lane`, tms.report.background.JobQueue) while this one runs its
own: the lane claims units of them (stages in the order they need each other) one at a time
on one thread, and whatever it has not claimed when this process is done runs here. A stage's
numbers do not depend on where or on how many threads it ran; a run stopped mid-way leaves
its stages "running", to be resumed.
"""
from __future__ import annotations

import contextvars
import functools
import hashlib
import importlib
import multiprocessing
import shutil
import threading
import time
from pathlib import Path
from typing import Callable, NamedTuple

import torch

from tms.core import checks, io
from tms.report import background


def _result_stems(out: Path, paths: list[Path]) -> list[Path]:
    """Every result (a .json with its .npz) under the stage's paths, as stems."""
    found = []
    for p in paths:
        jsons = sorted(p.rglob("*.json")) if p.is_dir() else [p.with_suffix(".json")]
        found += [j.with_suffix("") for j in jsons if j.is_file() and j.with_suffix(".npz").is_file()]
    return found


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class Stage(NamedTuple):
    """One stage: its name, identity (JSON), the result paths it owns (files or folders),
    compute() (resumes over what is on disk) and draw, None or a picklable job (figures from
    the saved results, drawn in the background: tms.report.background; returns their paths)."""

    name: str
    identity: dict
    paths: list[Path]
    compute: Callable[[], None]
    draw: Callable[[], list[Path]] | None = None


def _clear(paths: list[Path]) -> None:
    """Remove a stage's results: folders whole, result stems as their .npz and .json."""
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p)
        for f in (p.with_suffix(".npz"), p.with_suffix(".json")) if not p.is_dir() else ():
            f.unlink(missing_ok=True)


def _aside(compute: Callable[[], None], device: str, dtype: torch.dtype) -> float:
    """A stage's compute in the lane's process: the main process's device record and default
    dtype, one thread for the compiled kernels and torch (the numbers do not depend on it);
    returns its seconds."""
    t0 = time.perf_counter()
    torch.set_default_dtype(dtype)
    with io.recording_device(device), checks.torch_threads(1, torch_cap=1):
        compute()
    return time.perf_counter() - t0


def claims():
    """A counter of claimed units that a lane's process inherits (JobQueue(shared=claims()))."""
    return multiprocessing.get_context("spawn").Value("i", 0)


def claim(counter) -> int:
    """The next unclaimed unit's index (one process gets each)."""
    with counter.get_lock():
        k = counter.value
        counter.value += 1
    return k


def _imported(modules: tuple[str, ...]) -> None:
    for name in modules:
        importlib.import_module(name)


def _lane_units(units: list[list[Callable[[], None]]], device: str,
                dtype: torch.dtype) -> tuple[list, BaseException | None]:
    """In the lane's process: claim units and run their stages in order (`_aside`) until none is
    left or one fails; returns ([(unit, stage, seconds)], the error or None)."""
    done = []
    while (k := claim(background.shared())) < len(units):
        for j, compute in enumerate(units[k]):
            try:
                done.append((k, j, _aside(compute, device, dtype)))
            except Exception as err:  # noqa: BLE001 - raised in the main process once the others have ended
                return done, err
    return done, None


class Pipeline:
    """Runs stages over one results folder `out` and figures folder `figs` (see the module
    docstring); `status` maps each stage to reused | ran | resumed | repaired."""

    def __init__(self, out: Path, figs: Path, force: bool, log: Callable[[str], None], queue: background.JobQueue,
                 lane: background.JobQueue | None = None):
        """queue: the figure jobs; lane: the process of the stages computed aside (`run_aside`)."""
        self.out, self.figs, self.force, self.log, self.queue, self.lane = out, figs, force, log, queue, lane
        self.status: dict[str, str] = {}

    def _marker(self, name: str) -> Path:
        return self.out / "stages" / f"{name}.json"

    def _load_marker(self, name: str) -> dict:
        try:
            rec = io.load_json(self._marker(name)) if self._marker(name).exists() else {}
        except ValueError:  # a damaged marker is not trusted: the stage runs again
            rec = {}
        return rec if isinstance(rec, dict) else {}

    def problems(self, rec: dict) -> list[tuple[Path, str]]:
        """(stem, what is wrong) for each result a finished stage listed that is missing,
        damaged (tms.core.io.check_result) or not the one the stage wrote (checksum)."""
        bad = []
        for rel, sha in sorted(rec.get("files", {}).items()):
            stem = self.out / rel
            why = io.check_result(stem)
            if why is None and io.json_digest(stem) != sha:
                why = f"{stem}.json is not the result this stage wrote (checksum differs)"
            if why is not None:
                bad.append((stem, why))
        return bad

    def _figures_stale(self, rec: dict) -> bool:
        figs = rec.get("figures")
        return not isinstance(figs, dict) or any(_digest(self.figs / f) != sha for f, sha in figs.items())

    def _finish(self, st: Stage, ident: dict, seconds: float | None, rec: dict | None = None) -> None:
        """Write the marker "done" with the files' checksums, its figures pending (None: a run
        stopped before they are drawn redraws them), and queue the figures; their checksums
        join the marker once they are drawn."""
        if rec is None:
            files = {str(s.relative_to(self.out)): io.json_digest(s) for s in _result_stems(self.out, st.paths)}
            rec = dict(files=files, seconds=round(seconds, 1), finished=time.strftime("%Y-%m-%d %H:%M:%S"))
        rec = dict(rec, settings=ident, status="done")
        io.save_json(self._marker(st.name), dict(rec, figures=None if st.draw is not None else {}))

        def drawn(paths: list[Path]) -> None:
            figures = {str(Path(f).resolve().relative_to(self.figs.resolve())): _digest(Path(f)) for f in paths}
            io.save_json(self._marker(st.name), dict(rec, figures=figures))

        if st.draw is not None:
            self.queue.submit(st.draw, drawn)

    def _start(self, st: Stage, where: str = "") -> tuple[dict, str] | None:
        """Reuse the stage (None) or prepare it to compute: (identity, mode); `where` joins the log line."""
        ident = io.jsonable(dict(st.identity, package_version=io.package_version()))
        rec = self._load_marker(st.name)
        same = not self.force and rec.get("settings") == ident
        if same and rec.get("status") == "done":
            bad = self.problems(rec)
            if not bad:
                redraw = self._figures_stale(rec)
                if redraw:
                    self._finish(st, ident, None, rec)
                self.log(f"[{st.name}] reused (settings unchanged, files intact{'; figures redrawn' if redraw else ''})")
                self.status[st.name] = "reused"
                return None
            for stem, why in bad:
                self.log(f"[{st.name}] {why}; recomputing {stem.name}")
                _clear([stem])
            mode = "repaired"
        elif same and rec.get("status") == "running":
            mode = "resumed"
        else:
            _clear(st.paths)  # new, changed or forced: start clean so nothing old is mixed in
            mode = "ran"
        io.save_json(self._marker(st.name), dict(settings=ident, status="running"))
        self.log(f"[{st.name}] {dict(ran='running', resumed='resuming', repaired='repairing')[mode]}{where} ...")
        return ident, mode

    def _end(self, st: Stage, ident: dict, mode: str, seconds: float) -> None:
        self._finish(st, ident, seconds)
        self.status[st.name] = mode
        self.log(f"[{st.name}] done in {seconds:.0f} s")

    def run(self, st: Stage) -> None:
        started = self._start(st)
        if started is not None:
            t0 = time.perf_counter()
            st.compute()
            self._end(st, *started, time.perf_counter() - t0)
        if self.lane is not None:
            self.lane.collect()  # the stages aside that have finished meanwhile end now

    def start_lane(self, modules: tuple[str, ...]) -> None:
        """Start the lane's process now and import `modules` there, so that it is ready when
        `run_beside` gives it work (a fresh interpreter takes seconds to import torch and tms)."""
        self.lane.submit(functools.partial(_imported, modules), lambda _: None)

    def run_beside(self, units: list[list[Stage]], own: list[Stage], device: str) -> None:
        """`own` here, one after another, while the lane's process takes `units` (lists of stages
        in the order they need each other; each unit needs nothing of `own`) one at a time,
        on one thread, which the kernels here leave to it meanwhile (checks.reserve_threads: no
        more threads than cores); the units it has not reached when `own` are done run here. A
        unit is claimed by one process (the counter the lane shares, `claims`); the lane's
        stages end here (marker, log line, figures) when it is done."""
        todo = [[(st, s) for st in unit if (s := self._start(st, " beside the next stages")) is not None]
                for unit in units]
        counter = self.lane.shared
        checks.reserve_threads(1)  # the lane's thread: the kernels here take the others while it computes
        try:
            computes = [[st.compute for st, _ in u] for u in todo]
            self.lane.submit(functools.partial(_lane_units, computes, device, torch.get_default_dtype()),
                             functools.partial(self._lane_done, todo), lambda _: checks.reserve_threads(0))
            for st in own:
                self.run(st)
            while (k := claim(counter)) < len(todo):  # not reached by the lane: here
                for st, (ident, mode) in todo[k]:
                    t0 = time.perf_counter()
                    st.compute()
                    self._end(st, ident, mode, time.perf_counter() - t0)
            self.lane.wait()
        finally:
            checks.reserve_threads(0)

    def _lane_done(self, todo: list, result: tuple) -> None:
        done, error = result
        for k, j, seconds in done:
            st, (ident, mode) = todo[k][j]
            self._end(st, ident, mode, seconds)
        if error is not None:
            raise error

    def run_together(self, stages: list[Stage]) -> None:
        """Stages that do not depend on each other, computed at once: each in a thread that
        mostly waits on its Dask tasks (a cluster is attached); then, here, their figures and
        markers one by one (pyplot is not thread-safe). A failure stops the group."""
        todo = [(st, s) for st in stages if (s := self._start(st)) is not None]
        errors: list[BaseException] = []

        def work(st: Stage) -> None:
            try:
                st.compute()
            except BaseException as err:  # noqa: BLE001 - re-raised in the calling thread
                errors.append(err)

        t0 = time.perf_counter()
        # not daemons: after Ctrl-C the cluster closes, their waits fail and they end cleanly
        threads = [threading.Thread(target=contextvars.copy_context().run, args=(work, st)) for st, _ in todo]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():  # short joins: Ctrl-C reaches this thread meanwhile
                t.join(0.2)
        if errors:
            raise errors[0]
        for st, (ident, mode) in todo:
            self._end(st, ident, mode, time.perf_counter() - t0)
