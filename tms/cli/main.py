"""The `tms` command. Subcommands live in tms/cli/ (one module each).

Errors: a bad option, a ValueError (bad input anywhere in the lab) or an OSError (a file
the system refused) prints one line `tms COMMAND: error: ...` and exits 2. Anything else
is a bug: one line names the command and the error, the traceback goes to a log file
beside the results (tms-COMMAND-error.log), and the exit status is 1. `--debug` (before or
after the command) prints the traceback instead.

Unix manners: a closed pipe (`tms zoo | head -1`) ends quietly with status 0; on a terminal
or stream whose encoding cannot write a character (PYTHONIOENCODING=ascii: a minus sign,
lambda, Greek) it is replaced, not a crash; every command takes --no-progress.

Interrupts: Ctrl-C (SIGINT) and SIGTERM (what `timeout`, `kill` and batch schedulers send)
take the same path: the running command saves what it can (finished points, a training
partial) and stops; the message lists the results this run saved, and the exit status is
130 (SIGINT) or 143 (SIGTERM). Rerunning the same command resumes from them.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pkgutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

import tms.cli
from tms.cli import common
from tms.core import io


def _commands():
    mods = []
    for info in pkgutil.iter_modules(tms.cli.__path__):
        mod = importlib.import_module(f"tms.cli.{info.name}")
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            mods.append(mod)
    order = ["loss", "zoo", "llc", "posterior", "train", "transitions", "compare", "reproduce"]
    return sorted(mods, key=lambda m: (order.index(m.NAME) if m.NAME in order else len(order), m.NAME))


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `tms train: error: ... (see tms train --help)`, exit 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


DEBUG_HELP = "on an error, print the full traceback"


DEVICE_HELP = "torch device for the tensor work (cpu, cuda, cuda:1, mps; default cpu)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tms", description="Toy Model of Superposition phase-transition lab")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _commands():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        if not any(a.dest == "device" for a in p._actions):  # every command takes --device
            p.add_argument("--device", default="cpu", help=getattr(mod, "DEVICE_HELP", DEVICE_HELP))
        common.add_progress(p)  # every command takes --no-progress
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
        p.set_defaults(_run=mod.run, _parser=p)
    return parser


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def _log_dir(args) -> Path:
    """Where the results of this command go: its --out (a folder, or a result path's folder)."""
    for attr in ("out", "results", "figures", "input", "checkpoints"):
        v = getattr(args, attr, None)
        if isinstance(v, str) and v.strip():
            p = Path(v)
            return p if p.is_dir() else p.parent
    return Path(tempfile.gettempdir())


def _write_log(args, argv, err: BaseException) -> Path | None:
    """The traceback to tms-COMMAND-error.log beside the results (else the temp folder)."""
    text = (f"tms {args.command} failed at {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
            f"argv: {argv!r}\n\n" + "".join(traceback.format_exception(type(err), err, err.__traceback__)))
    for d in (_log_dir(args), Path(tempfile.gettempdir())):
        try:
            d.mkdir(parents=True, exist_ok=True)
            path = d / f"tms-{args.command}-error.log"
            path.write_text(text)
            return path
        except OSError:
            continue
    return None


def _internal_error(args, argv, err: Exception) -> int:
    log = _write_log(args, argv, err)
    where = f"traceback in {log}" if log else "no log could be written"
    print(f"tms {args.command}: internal error: {type(err).__name__}: {_one_line(err)} "
          f"(a bug in tms; {where}; rerun with --debug to print it)", file=sys.stderr)
    return 1


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so it unwinds like Ctrl-C (saving as it goes)."""


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM raises Terminated for the duration (main thread only; elsewhere no handler)."""
    try:
        old = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _short(path) -> str:
    """`path` relative to the working directory when it lies below it, else absolute."""
    rel = os.path.relpath(os.path.abspath(path))
    return rel if not rel.startswith("..") else os.path.abspath(path)


def _kept(paths: list, show: int = 6) -> str:
    """'kept N results this run: a, b, ... (rerun to resume)' or what was not."""
    if not paths:
        return "nothing new was finished in this run; rerun the same command to start again"
    names = [_short(p) for p in dict.fromkeys(paths)]
    more = f", and {len(names) - show} more" if len(names) > show else ""
    return (f"kept {len(names)} result{'s' if len(names) > 1 else ''} saved in this run (.npz + .json): "
            + ", ".join(names[:show]) + more + "; rerun the same command to resume from them")


def _interrupted(args, err: KeyboardInterrupt, n_before: int) -> int:
    term = isinstance(err, Terminated)
    print(f"tms {args.command}: interrupted by {'SIGTERM' if term else 'SIGINT (Ctrl-C)'}; "
          + _kept(io.written()[n_before:]), file=sys.stderr)
    return 143 if term else 130


def _replace_unwritable_characters() -> None:
    """stdout and stderr write '?' for a character their encoding lacks (PYTHONIOENCODING=ascii
    and a minus sign or lambda) instead of raising UnicodeEncodeError mid-table."""
    for stream in (sys.stdout, sys.stderr):
        try:
            "\u2212\u03bb".encode(stream.encoding or "ascii")
        except UnicodeEncodeError:
            with contextlib.suppress(AttributeError, ValueError):  # not a TextIOWrapper: leave it
                stream.reconfigure(errors="replace")
        except (AttributeError, LookupError):
            pass


def _closed_pipe() -> int:
    """The reader of stdout went away (`| head -1`): as Python's docs advise, point stdout at
    devnull so the interpreter's final flush cannot fail again, and end quietly with status 0."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 0


def main(argv: list[str] | None = None) -> int:
    """The `tms` command: run it, then flush stdout; a closed pipe is a quiet exit 0."""
    _replace_unwritable_characters()
    try:
        status = _main(argv)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        return _closed_pipe()


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # named by the subcommand's parser: `tms train: error: unrecognized arguments ...`
            getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # --help (0) or a bad option (2, its one line already printed)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    debug = bool(getattr(args, "debug", False))
    n_before = len(io.written())
    try:
        with _sigterm_as_interrupt(), io.recording_device(getattr(args, "device", None)):
            return int(args._run(args) or 0)
    except KeyboardInterrupt as err:  # SIGINT, or SIGTERM through Terminated
        return _interrupted(args, err, n_before)
    except BrokenPipeError:
        raise  # stdout's reader went away: main ends quietly
    except (ValueError, OSError) as err:
        if debug:
            traceback.print_exc()
        print(f"tms {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - the last line of defence
        if debug:
            traceback.print_exc()
            return 1
        return _internal_error(args, sys.argv[1:] if argv is None else argv, err)


if __name__ == "__main__":
    sys.exit(main())
