"""Training list files: the format lives in :mod:`dainet.formats.lists`.

Kept as an import path for ``stages/visualize.py``, ``stages/train_decomp.py``,
``tests/test_learning.py`` and ``bench/augment.py``.
"""
from dainet.formats.lists import ListEntry, format_entry, parse_line, read_list, write_list

__all__ = ["ListEntry", "format_entry", "parse_line", "read_list", "write_list"]
