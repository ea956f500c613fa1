"""Reading helpers shared by the text formats: decoding a file, numbered lines, counts
and rows of numbers, every error a :class:`UserError` naming the file and the line."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from dainet.errors import UserError


def read_text(path: str | Path, what: str) -> str:
    """The text of ``path`` (UTF-8, a leading BOM dropped); a :class:`UserError`
    ``"<path>: cannot read <what> (<reason>)"`` when it cannot be read."""
    try:
        return Path(path).read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise UserError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: cannot read {what} (not UTF-8 text: {exc.reason} "
                        f"at byte {exc.start})") from None


def numbered_lines(text: str) -> list[tuple[int, str]]:
    """``(1-based line, stripped text)`` of the non-blank lines (``\\n`` or ``\\r\\n``)."""
    return [(i, s) for i, s in enumerate((ln.strip() for ln in text.splitlines()), 1) if s]


def content_lines(path: str | Path, what: str = "file") -> list[str]:
    """The lines of a text file without its trailing blank lines (line k of the file is
    item k - 1); a :class:`UserError` when it cannot be read."""
    return read_text(path, what).rstrip().splitlines()


def parse_number_rows(lines: Sequence[str], n_cols: int, path: str | Path,
                      first_lineno: int) -> np.ndarray:
    """Lines of ``n_cols`` whitespace-separated finite numbers -> ``[K, n_cols]`` float64.

    ``first_lineno`` is the 1-based file line number of ``lines[0]``, for the message
    of the :class:`UserError` raised on the first malformed line.
    """
    if len(lines) == 0:
        return np.zeros((0, n_cols), np.float64)
    try:
        rows = np.array([ln.split() for ln in lines], dtype=np.float64)
        if rows.ndim == 2 and rows.shape[1] == n_cols and np.isfinite(rows).all():
            return rows
    except ValueError:
        pass
    # Slow path, only on bad input: find the offending line for the message.
    for k, ln in enumerate(lines):
        tokens = ln.split()
        try:
            values = [float(t) for t in tokens]
        except ValueError:
            values = None
        if values is None or len(values) != n_cols or not np.isfinite(values).all():
            raise UserError(f"{path}:{first_lineno + k}: expected {n_cols} finite numbers, "
                            f"got {ln.strip()!r}")
    raise AssertionError("unreachable: numpy rejected rows that parse one by one")


def parse_count(line: str, path: str | Path, lineno: int) -> int:
    """A non-negative integer count line (``"12"``) or a :class:`UserError`."""
    try:
        n = int(line.strip())
    except ValueError:
        n = -1
    if n < 0:
        raise UserError(f"{path}:{lineno}: expected a box count, got {line.strip()!r}")
    return n


def format_number(v: float) -> str:
    """An integer-valued number without a decimal point, any other as ``repr``."""
    v = float(v)
    return str(int(v)) if v.is_integer() else repr(v)
