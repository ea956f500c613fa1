"""Jittor, configured: ``from dainet.jt import jt, nn``.

Jittor reads its compiler, CUDA and oneDNN settings from the environment once, when it is
first imported, so :func:`dainet.runtime.configure` must run before that. Every module of
``dainet`` that needs Jittor imports it from here, and only these imports configure the
runtime: importing anything else (``dainet.schema``, ``dainet.params``, the evaluation)
changes no environment variable, file or path.
"""
from dainet.runtime import configure

configure()

import jittor as jt  # noqa: E402  (after configure)
from jittor import nn  # noqa: E402

__all__ = ["jt", "nn"]
