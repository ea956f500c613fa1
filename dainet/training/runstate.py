"""Where a training run's resumable state lives, and who may write it.

The state (``<root>/<fingerprint>/``: :class:`dainet.training.joint.Checkpoints`) is not a
DVC output: ``dvc checkout``, ``dvc exp apply`` and a stage rerun replace outputs, and would
delete an interrupted run with them. The stage's output is the exported model only.

- :func:`shared_root`: an experiment that DVC runs in a copy of the repository
  (``dvc exp run --temp``, ``dvc queue start``: ``<repo>/.dvc/tmp/exps/<tmp>/``) keeps its
  state in the workspace's root, so it outlives the copy and the run resumes from either.
- :class:`RunLock`: one process at a time writes a run folder (two queued experiments of the
  same params would otherwise write one ``last.ckpt``); a locked folder is never pruned.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from dainet.errors import UserError

EXPERIMENT_COPIES = (".dvc", "tmp", "exps")   # DVC's folder of experiment copies, below the repo


def shared_root(root: str | Path, cwd: str | Path | None = None) -> Path:
    """``root`` as the workspace sees it: a relative ``root`` given in an experiment copy
    ``<repo>/.dvc/tmp/exps/<tmp>/`` is ``<repo>/<root>``; any other ``root`` is as given."""
    root = Path(root)
    if root.is_absolute():
        return root
    here = Path(cwd if cwd is not None else os.getcwd()).resolve()
    parts, n = here.parts, len(EXPERIMENT_COPIES)
    for i in range(len(parts) - n - 1, 0, -1):   # the innermost repo of nested copies
        if parts[i:i + n] == EXPERIMENT_COPIES:
            return Path(*parts[:i]) / root
    return root


class RunLock:
    """An exclusive lock on a run folder (``<folder>/run.lock``, holding the writer's pid),
    held until :meth:`release` or the process ends (the kernel drops it on any exit,
    ``kill -9`` included: no stale locks)."""

    NAME = "run.lock"

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / self.NAME
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock; False when another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def holder(self) -> str:
        """The pid written by the holder (for messages)."""
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"

    def acquire_or_fail(self) -> None:
        if not self.acquire():
            raise UserError(
                f"{self.path.parent}: another process (pid {self.holder()}) is training these params and inputs "
                "now; wait for it, or change train.seed to run a second one")

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @classmethod
    def is_held(cls, folder: str | Path) -> bool:
        """Whether a process holds ``folder``'s lock (this one included, through another
        :class:`RunLock`: flock locks belong to open files)."""
        probe = cls(folder)
        if not probe.path.exists():
            return False
        fd = os.open(probe.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False
