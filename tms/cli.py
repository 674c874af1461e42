"""The `tms` command. Subcommands live in tms/commands/ (one module each).

Errors: a ValueError (bad input anywhere in the lab) prints one line and exits 2.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import tms.commands


def _commands():
    mods = []
    for info in pkgutil.iter_modules(tms.commands.__path__):
        mod = importlib.import_module(f"tms.commands.{info.name}")
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            mods.append(mod)
    order = ["loss", "zoo", "llc", "posterior", "train", "transitions", "compare", "reproduce"]
    return sorted(mods, key=lambda m: (order.index(m.NAME) if m.NAME in order else len(order), m.NAME))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tms", description="Toy Model of Superposition phase-transition lab")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _commands():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser



def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except ValueError as err:
        print(f"tms {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tms {args.command}: interrupted (finished results are saved)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
