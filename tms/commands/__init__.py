"""Subcommands of the `tms` CLI: one module each, discovered automatically.

Each module defines ``NAME`` (the subcommand), ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``.
"""
