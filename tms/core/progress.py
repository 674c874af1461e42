"""The one progress factory: a tqdm bar on a terminal, plain periodic lines elsewhere.

Every long phase of the lab shows progress through `bar`. On a terminal (stderr is a tty)
it is a tqdm bar. When stderr is a file or a pipe (a batch job's log, `2> log`, a test),
a bar would write carriage returns into the log, so `bar` writes instead one plain line
`desc: 40/100 (12 s, ~18 s left)` every `PLAIN_INTERVAL` seconds (10, or the
environment's TMS_PROGRESS_INTERVAL), and nothing at all for a
phase that ends sooner. `write` prints a line without breaking a bar; `reused` announces a
saved result used in place of a run.

    for k in progress.bar(range(10), desc="k-gon roots", disable=not show):
        ...
    with progress.bar(total=steps, desc="SGD") as b:
        b.update(100)
"""
from __future__ import annotations

import os
import sys
import time

from tqdm.auto import tqdm


def _plain_interval(default: float = 10.0) -> float:
    """TMS_PROGRESS_INTERVAL (seconds, >= 0) where set, else `default`."""
    text = os.environ.get("TMS_PROGRESS_INTERVAL", "").strip()
    try:
        value = float(text) if text else default
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise SystemExit(f"error: TMS_PROGRESS_INTERVAL={text!r}: expected seconds >= 0 between progress lines")
    return value


PLAIN_INTERVAL = _plain_interval()  # seconds between plain progress lines (and before the first)


def is_terminal(stream=None) -> bool:
    """Whether `stream` (default stderr) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or stand-in stream
        return False


def bar(iterable=None, *, total: int | None = None, desc: str = "", disable: bool = False,
        interval: float | None = None, **tqdm_options):
    """A progress bar over `iterable` (or updated by hand up to `total`): tqdm on a terminal,
    `PlainBar` otherwise; `disable` shows nothing. tqdm_options (leave, unit, initial, ...)
    go to tqdm; PlainBar uses `initial` and ignores the rest. interval: seconds between plain
    lines (default PLAIN_INTERVAL)."""
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if not disable and is_terminal():
        return tqdm(iterable, total=total, desc=desc, **tqdm_options)
    interval = PLAIN_INTERVAL if interval is None else interval
    return PlainBar(iterable, total=total, desc=desc, disable=disable, interval=interval,
                    initial=tqdm_options.get("initial", 0))


def reused(what: str, path) -> None:
    """Announce on stderr that a saved result stands in for a run: `reused: <what> from <path>`
    (an identical rerun says so instead of looking like a fresh run)."""
    write(f"reused: {what} from {path}")


def write(line: str) -> None:
    """Print one line to stderr without breaking a terminal's bar."""
    if is_terminal():
        tqdm.write(line, file=sys.stderr)
    else:
        print(line, file=sys.stderr, flush=True)


class PlainBar:
    """tqdm's interface (iterate, update, close, context manager) writing one line to stderr
    every `interval` seconds: no carriage returns, nothing for a phase shorter than that."""

    def __init__(self, iterable=None, *, total=None, desc="", disable=False, interval=PLAIN_INTERVAL, initial=0):
        self.iterable, self.total, self.desc, self.disable = iterable, total, desc, disable
        self.interval, self.n, self.start_n = interval, initial, initial
        self.start = self.last = time.monotonic()

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __len__(self):
        return self.total or 0

    def update(self, k: int = 1) -> None:
        self.n += k
        now = time.monotonic()
        if not self.disable and now - self.last >= self.interval:
            self.last = now
            print(self.line(now), file=sys.stderr, flush=True)

    def line(self, now: float) -> str:
        """`desc: n/total (elapsed s, ~left s left)`."""
        took = now - self.start
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        left = ""
        if self.total and self.n > self.start_n:
            rest = (self.total - self.n) * took / (self.n - self.start_n)
            left = f", ~{rest:.0f} s left"
        return f"{self.desc or 'progress'}: {done} ({took:.0f} s{left})"

    def set_postfix_str(self, *args, **kwargs) -> None:  # tqdm's interface; plain lines omit it
        pass

    def close(self) -> None:
        pass
