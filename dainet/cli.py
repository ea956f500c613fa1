"""Shared stage-script plumbing: turn :class:`UserError` into one line and exit 2."""
from __future__ import annotations

import sys
from typing import Callable

from dainet.errors import UserError


def run(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> None:
    """Call ``main(argv)``; a UserError prints ``error: <message>`` and exits 2."""
    try:
        rc = main(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(rc or 0)
