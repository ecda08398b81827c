"""What the command lines share: bad input is one line on stderr and exit code 2, never a traceback; an error
is told in one line (``one_line``) wherever it is reported; library notes go through ``logging`` and the
command lines show them on stderr (``show_notes``)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import sys
import textwrap
from collections.abc import Iterator
from typing import NoReturn

#: Exit codes of the command lines (the README's table): 0 only when everything asked for finished.
EXIT_FAILED = 1  # trials failed or never ran: the experiment folder shows which
EXIT_BAD_INPUT = 2  # refused before anything launched (grid, options, storage, data, a name in use)
EXIT_INTERRUPTED = 130  # stopped by SIGINT or SIGTERM (128 + SIGINT, the shell's convention); resumable


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, ``error: ...``, on stderr, with exit code 2."""

    def error(self, message: str) -> NoReturn:
        fail(f"{self.prog}: {message} (see --help)")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with the description's lines kept as written (its examples), every default shown, and no
    name broken at its hyphen (``gap-aware``)."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def plain(doc: str) -> str:
    """A docstring as ``--help`` shows it: no reST markup (double backquotes, ``::``, roles like
    ``:func:`x```, ``**bold**``), each line as written."""
    text = re.sub(r":[a-z]+:`([^`]+)`", r"\1", doc)
    text = text.replace("``", "").replace("**", "")
    return re.sub(r"::$", ":", text, flags=re.MULTILINE).strip()


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


class _Notes(logging.Handler):
    """dana_ray's log records as ``note: ...`` lines on whatever ``sys.stderr`` is when one is written."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(f"note: {record.getMessage()}", file=sys.stderr, flush=True)
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def show_notes(level: int = logging.INFO) -> Iterator[None]:
    """While in it, dana_ray's log records (the library's notes: a stale lock taken over, a checkpoint that
    could not be read, a pooled server replaced) are shown on stderr as ``note: ...`` lines: a command line
    runs inside it. Nested uses show each note once."""
    logger = logging.getLogger("dana_ray")
    if any(isinstance(h, _Notes) for h in logger.handlers):
        yield
        return
    handler, level_before = _Notes(), logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level_before)
