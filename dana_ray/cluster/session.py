"""Joining or starting Ray for a command line, and saying where its dashboard is and how to get in.

Ray 2.60 turns token authentication on for every Ray instance that ``ray.init`` starts, writes the token to
``~/.ray/auth_token`` and logs a warning about it each time. The dashboard then answers 401 until the browser
gives the token. A command line that starts Ray says this once, as one line with the dashboard's real address
(the port is 8265 unless another Ray instance holds it), in place of Ray's warning.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

#: Ray's setting for token authentication (``token`` or ``disabled``), and where its token is kept.
AUTH_MODE_ENV = "RAY_AUTH_MODE"
TOKEN_FILE = "~/.ray/auth_token"

_TOKEN_LOGGER = "ray._private.authentication.authentication_token_setup"
_TOKEN_WARNING = "Token authentication is enabled for this Ray cluster"


class _DropTokenWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_TOKEN_WARNING)


@contextlib.contextmanager
def token_warning_replaced() -> Iterator[None]:
    """Ray's warning that it turned token authentication on is dropped inside; ``dashboard_line`` says it."""
    log, drop = logging.getLogger(_TOKEN_LOGGER), _DropTokenWarning()
    log.addFilter(drop)
    try:
        yield
    finally:
        log.removeFilter(drop)


def init_ray(**options: Any) -> str | None:
    """``ray.init(**options)``: joins ``RAY_ADDRESS`` or a cluster on this machine, else starts Ray here.
    Returns ``dashboard_line`` for the dashboard it reports (None without one)."""
    import ray

    with token_warning_replaced():
        context = ray.init(**options)
    return dashboard_line(context.dashboard_url)


def dashboard_line(address: str | None) -> str | None:
    """One line: where the dashboard is and, under token authentication, how to get in."""
    if not address:
        return None
    url = address if "://" in address else f"http://{address}"
    if os.environ.get(AUTH_MODE_ENV, "").lower() != "token":
        return f"Ray dashboard: {url}"
    return (
        f"Ray dashboard: {url} (it asks for Ray's token: `ray get-auth-token`, or the file {TOKEN_FILE}; "
        f"Ray turns token authentication on by default, {AUTH_MODE_ENV}=disabled turns it off)"
    )
