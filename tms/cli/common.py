"""Options shared by several commands."""
from __future__ import annotations

import argparse
import math

from tms.core import settings
from tms.core.cluster import check_cluster

MAX_N, MAX_GRID = 10**6, 1000  # largest sample size; most n values in one grid


PROGRESS_HELP = ("no progress bars or progress lines (on a terminal progress is a bar; otherwise a plain line "
                 "every few seconds of a long phase)")


def add_progress(parser) -> None:
    """--no-progress (dest `progress`, default True): every command has it (tms.cli.main adds
    it); a command passes `progress=args.progress` to its experiment's run."""
    parser.add_argument("--no-progress", dest="progress", action="store_false", default=True, help=PROGRESS_HELP)


def add_arguments(parser) -> None:
    """--scheduler ADDRESS | --workers N (mutually exclusive) for a command with tasks."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--scheduler", metavar="ADDRESS", default=None,
                       help="run the independent tasks on this running Dask scheduler (tcp://host:8786; "
                            "needs pip install 'tms[cluster]'; docs/cluster.md)")
    group.add_argument("--workers", metavar="N", type=int, default=None,
                       help="run the independent tasks on a local Dask cluster of N worker processes")


def add_force(parser) -> None:
    """--force for a command that writes results (tms.core.io.claim_output)."""
    parser.add_argument("--force", action="store_true",
                        help="replace a result this command saved at the output path with other settings (never "
                             "an input, never another command's result); without it that is an error")


def add_threads(parser) -> None:
    """--threads for a command whose run is on the compiled kernels (HMC rounds, SGD blocks;
    tms.core.checks.torch_threads)."""
    parser.add_argument("--threads", type=int, default=None,
                        help="threads of the run, 1..1024 (default: every core for the compiled kernels, one for "
                             "torch, whose tensors here are small); results do not depend on it")


def plus_minus(value, se, fmt: str = ".2f", why: str = "no s.e.") -> str:
    """'value +- se', or 'value (why)' when the standard error is missing or not finite."""
    if se is None or not math.isfinite(float(se)):
        return f"{format(value, fmt)} ({why})"
    return f"{format(value, fmt)} +- {format(se, fmt)}"


def options(args) -> dict:
    """scheduler= and workers= from the parsed flags, checked (ValueError naming the flag)."""
    scheduler, workers = getattr(args, "scheduler", None), getattr(args, "workers", None)
    check_cluster(scheduler, workers, names=("--scheduler", "--workers"))
    return dict(scheduler=scheduler, workers=workers)


def parse_grid(text: str) -> list[int]:
    """'100:2000:100' (start:stop:step, stop included) or '100,200,500' -> list of ints."""
    try:
        if ":" in text:
            a, b, s = (int(v) for v in text.split(":"))
            if s <= 0 or b < a:
                raise ValueError
            if (b - a) // s + 1 > MAX_GRID:
                raise ValueError(f"--ns {text!r} has {(b - a) // s + 1} values; at most {MAX_GRID}")
            ns = list(range(a, b + 1, s))
        else:
            ns = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        if "at most" in str(err):
            raise
        raise ValueError(f"--ns must be start:stop:step or a comma list of integers, got {text!r}") from None
    if not ns or len(ns) > MAX_GRID or len(set(ns)) != len(ns) or min(ns) < 1 or max(ns) > MAX_N:
        raise ValueError(f"--ns must give 1 to {MAX_GRID} distinct sample sizes between 1 and {MAX_N}, got {text!r}")
    return ns


def _grid(text: str) -> tuple:
    """'100:2000:100' (stop included) or '100,200,500' -> a tuple of ints; '0.5,1' -> floats."""
    try:
        return tuple(parse_grid(text))
    except ValueError:
        try:
            return tuple(float(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise ValueError(f"expected start:stop:step or a comma list of numbers, got {text!r}") from None


def add_settings(parser, cls, *, preset=None, skip: tuple = (), prefix: str = "") -> None:
    """One flag per field of the settings class `cls` (flag --n-draws is field n_draws), its
    help the field's with the default of `preset` (an instance; else the field's default;
    a default of None is not shown: the help says what None means).
    prefix: flags --PREFIX-NAME for the fields of a settings object nested in another under
    the name PREFIX (--local-n-draws is local.n_draws). Flags default to None, so
    `settings_from` can tell the given ones apart."""
    for name, kind, default, meta in settings.flags(cls):
        if name in skip:
            continue
        shown = getattr(preset, name) if preset is not None else default
        shown = ",".join(map(str, shown)) if isinstance(shown, tuple) else shown
        text = meta["help"] if shown is None else f"{meta['help']} (default {shown})"
        dest = f"{prefix}_{name}" if prefix else name
        flag = "--" + dest.replace("_", "-")
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text, dest=dest)
        elif kind is tuple:
            parser.add_argument(flag, type=_grid, default=None, metavar="GRID", help=text, dest=dest)
        else:
            parser.add_argument(flag, type=kind, default=None, help=text, dest=dest,
                                choices=meta["choices"] if kind is str else None)


def settings_from(args, preset, prefix: str = ""):
    """`preset` (a settings instance) with every flag of its fields that the user gave
    (flags made by add_settings with the same prefix)."""
    dest = (lambda name: f"{prefix}_{name}") if prefix else (lambda name: name)
    given = {name: getattr(args, dest(name)) for name, *_ in settings.flags(type(preset))
             if getattr(args, dest(name), None) is not None}
    return preset.replace(**given)
