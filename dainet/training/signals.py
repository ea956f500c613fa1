"""Stopping a training run at a safe point: on SIGTERM / SIGINT, or when the process that
started it ends (:class:`StopSignals`)."""
from __future__ import annotations

import os
import signal
import sys
import threading


class StopSignals:
    """What asks the loop to stop at its next safe point (the current iteration completes,
    ``last.ckpt`` is written, the run ends: ``stopped_by``):

    - SIGTERM, SIGINT (Ctrl-C, to the process or its group): a second signal of either kind
      interrupts at once (SIGINT: ``KeyboardInterrupt``; SIGTERM: exit status 143);
    - with ``watch_parent``, the end of the process that started this one (``dvc repro``
      stopped by a SIGTERM of its own, as ``docker stop`` sends to PID 1, leaves its stage
      running as an orphan): seen at the next safe point, reported as SIGHUP (status 129).

    While installed, a child process that dies by a signal (a data worker hit by the same
    Ctrl-C) is left to Python: Jittor's own SIGCHLD handler would end this process at once,
    status 1, before the state is saved. Installed only from the main thread."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, watch_parent: bool = False):
        self.signum: int | None = None
        self._previous = {}
        self._parent = os.getppid() if watch_parent else None

    def _handle(self, signum, frame):
        if self.signum is None:
            self.signum = signum
            return
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    def requested(self) -> int | None:
        """The signal that asks for a stop (None: go on)."""
        if self.signum is None and self._parent is not None and os.getppid() != self._parent:
            print(f"train: the process that started this one (pid {self._parent}) has ended; "
                  "saving the state and stopping", file=sys.stderr, flush=True)
            self.signum = signal.SIGHUP
        return self.signum

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
            self._previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}
