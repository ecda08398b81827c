"""What the command lines share: bad input is one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import argparse
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
    """An error as one line: a remote error's last line (Ray wraps the actor's traceback), whitespace joined."""
    text = str(error).strip()
    if isinstance(error, BaseException) and "Traceback" in text:
        text = text.splitlines()[-1]
    return " ".join(text.split()) or type(error).__name__
