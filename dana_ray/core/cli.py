"""What the command lines share: bad input is one line on stderr and exit code 2, never a traceback; an error
is told in one line (``one_line``) wherever it is reported; library notes go through ``logging`` and the
command lines show them on stderr (``show_notes``)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import NoReturn

#: Exit codes of the command lines (the README's table): 0 only when everything asked for finished.
EXIT_FAILED = 1        # trials failed or never ran: the experiment folder shows which
EXIT_BAD_INPUT = 2     # refused before anything launched (grid, options, storage, data, a name in use)
EXIT_INTERRUPTED = 130  # stopped by SIGINT or SIGTERM (128 + SIGINT, the shell's convention); resumable


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, ``error: ...``, on stderr, with exit code 2."""

    def error(self, message: str) -> NoReturn:
        fail(f"{self.prog}: {message} (see --help)")


def fail(message: str) -> NoReturn:
    """Print ``error: message`` as one line on stderr and exit with code 2."""
    raise SystemExit(bad_input(message))


def bad_input(error: BaseException | str) -> int:
    """Print ``error: ...`` as one line on stderr; return the exit code for bad input (2)."""
    print(f"error: {one_line(error)}", file=sys.stderr)
    return EXIT_BAD_INPUT


def one_line(error: BaseException | str) -> str:
    """An error as one line, whitespace joined: a remote error's last line (Ray wraps an actor's or task's
    traceback and its own account around the cause, which comes last), else the whole message; an error
    with no message, its type's name."""
    text = str(error).strip()
    remote = isinstance(error, BaseException) and type(error).__module__.startswith("ray.")
    if isinstance(error, BaseException) and ("Traceback" in text or remote) and text:
        text = text.splitlines()[-1]
    return " ".join(text.split()) or type(error).__name__


class _Note(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"note: {record.getMessage()}"


def show_notes(level: int = logging.INFO) -> None:
    """Show dana_ray's log records (the library's notes) on stderr as ``note: ...`` lines: what a command line
    calls first. Idempotent."""
    logger = logging.getLogger("dana_ray")
    if not any(getattr(h, "_dana_notes", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_Note())
        handler._dana_notes = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
