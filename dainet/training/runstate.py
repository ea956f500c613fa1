"""A training run's resumable state: what identifies a run, where its state lives, who may
write it, and how it is saved and resumed.

- :func:`fingerprint` / :func:`path_params` / :func:`code_digest`: the run's key, from
  everything that decides the optimisation path (params, input weights and lists, process
  count, the code the `train` stage runs).
- :class:`Checkpoints`: ``<root>/<fingerprint>/`` -- ``last.ckpt`` (resumable), ``prev.ckpt``,
  ``iter_<n>.ckpt``, ``best.ckpt``, ``history.jsonl``; resuming, corrupt files set aside,
  old runs pruned.
- :func:`shared_root`: an experiment that DVC runs in a copy of the repository
  (``dvc exp run --temp``, ``dvc queue start``: ``<repo>/.dvc/tmp/exps/<tmp>/``) keeps its
  state in the workspace's root, so it outlives the copy and the run resumes from either.
- :class:`RunLock`: one process at a time writes a run folder (two queued experiments of the
  same params would otherwise write one ``last.ckpt``); a locked folder is never pruned.

The state is not a DVC output: ``dvc checkout``, ``dvc exp apply`` and a stage rerun replace
outputs, and would delete an interrupted run with them. The stage's output is the exported
model only.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dainet.errors import UserError
from dainet.training.ema import WeightAverage
from dainet.training.optim import load_optimizer_state, optimizer_state
from dainet.utils.fileio import remove_stale_temps
from dainet.utils.imports import ROOT, import_closure
from dainet.weights import WeightError, check_state_dict
from dainet.weights.checkpoint import load_checkpoint, load_into, save_checkpoint


STAGE_MODULE = ROOT / "dainet" / "training" / "stage.py"   # what the `train` stage runs
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


class TrainingDiverged(UserError):
    """The loss or the weights became NaN or infinite; nothing non-finite is saved, the last good checkpoint is kept."""


def fingerprint(*parts) -> str:
    """Hash of everything a checkpoint's validity depends on (params, init weights)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


# Params `train` keys that do not change the optimisation path: how often to log, save
# pictures and checkpoints, where to run, how many loader processes (every sample is
# seeded by (seed, epoch, index) whatever the worker), and when to stop.
NOT_ON_PATH = ("device", "num_workers", "log_every", "image_every", "checkpoint_every",
               "max_iter", "max_epochs", "processes", "mpi_hostfile")   # the rank count enters as `world`
# Keys that only one lr schedule reads.
SCHEDULE_ONLY = {"step": ("lr_steps", "lr_gamma"), "cosine": ("lr_final_fraction",)}


def path_params(train: dict, total: int) -> dict:
    """The params `train` that decide the optimisation path up to any iteration: the resume key.

    Left out (:data:`NOT_ON_PATH`): a run may be resumed with other log, picture or
    checkpoint intervals, another device or worker count, and a raised ``max_iter`` /
    ``max_epochs`` continues it -- except under the ``cosine`` schedule, whose lr at every
    iteration depends on the total (:func:`~dainet.training.schedule.cosine_lr`): there the
    total enters the key as ``schedule_total``, so another total is another run. The
    ``step`` schedule does not depend on the total. Keys read only by the other schedule
    are left out too.
    """
    schedule = train.get("lr_schedule")
    other = [k for name, keys in SCHEDULE_ONLY.items() if name != schedule for k in keys]
    key = {k: v for k, v in train.items() if k not in NOT_ON_PATH and k not in other}
    if schedule == "cosine":
        key["schedule_total"] = int(total)
    return key


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def code_digest(entry: Path = STAGE_MODULE, root: Path = ROOT) -> str:
    """Hash of the source of ``entry`` and of every ``dainet`` file it may run (its static
    import closure, :func:`dainet.utils.imports.import_closure`), by path under ``root``.

    Part of the run fingerprint: a run folder written by other code is not resumed (DVC
    reruns `train` when its code changes; resuming the old code's finished run would hand
    back the old result as the new one's). Code `train` never runs (evaluation, inference)
    is not in it, so an interrupted run still resumes after an edit there.
    """
    h = hashlib.sha256()
    for path in sorted({entry, *import_closure(entry, root)}):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


@dataclass
class LoopState:
    """Counters of the loop: bounded, whatever the number of iterations (the log rows
    themselves are in the run's history file, see :mod:`dainet.training.logging`)."""
    iteration: int = 0
    best_val: float = math.inf
    best_iteration: int = -1
    val_history: list = field(default_factory=list)  # (epoch, iteration, val_loss): one per epoch end
    log_rows: int = 0                # rows logged so far (the history rows this state covers)
    last_row: dict = field(default_factory=dict)     # the latest logged row (final_* metrics)
    images_per_s_sum: float = 0.0    # over the logged rows (the mean in the metrics)
    stopped_by: int | None = None    # the signal that ended this session early, if one did


RUN_NAME = re.compile(r"^[0-9a-f]{16}$")   # a run folder: the fingerprint
KEEP_RUNS = 4   # run folders kept below the checkpoints root (the current one and 3 more)


class Checkpoints:
    """The resumable state of one run, in ``<root>/<fingerprint>/``.

    ``last.ckpt`` (weights, optimiser buffers, loop counters) is written at every epoch
    end, every ``train.checkpoint_every`` iterations and when a signal stops the run;
    the one it replaces becomes ``prev.ckpt`` (the fallback when ``last.ckpt`` is found
    corrupt). Also there: ``iter_<n>.ckpt`` (weights at every ``checkpoint_every``, spec
    §9), ``best.ckpt`` (the best by validation loss) and ``history.jsonl`` (the logged
    rows). Runs of other params or weights have their own folders, so switching params
    back resumes the earlier run; the :data:`KEEP_RUNS` most recently used run folders
    are kept, older ones removed at the start of a run.
    """

    def __init__(self, root: str | Path, key: str):
        self.root, self.key = Path(root), key
        self.folder = self.root / key
        self.last, self.prev = self.folder / "last.ckpt", self.folder / "prev.ckpt"
        self.best, self.history = self.folder / "best.ckpt", self.folder / "history.jsonl"
        self.saved_at: int | None = None   # the iteration last.ckpt holds (None: none written or read)
        self.lock = RunLock(self.folder)

    def prepare(self) -> None:
        """At the start of the run (the writing process only): create and lock the run folder
        (:class:`~dainet.training.runstate.RunLock`: a UserError when another process trains
        it), drop temp files a killed writer left in it and the run folders beyond
        :data:`KEEP_RUNS` that no process is training."""
        self.lock.acquire_or_fail()
        for p in remove_stale_temps(self.folder):
            print(f"train: removed {p}, left by an interrupted write")
        os.utime(self.folder)   # most recently used
        runs = sorted((d for d in self.root.iterdir() if d.is_dir() and RUN_NAME.match(d.name)),
                      key=lambda d: d.stat().st_mtime, reverse=True)
        for old in [d for d in runs if d != self.folder][KEEP_RUNS - 1:]:
            if RunLock.is_held(old):   # a queued experiment training now
                continue
            shutil.rmtree(old, ignore_errors=True)
            print(f"train: removed {old}, the state of an older run (the {KEEP_RUNS} most recent runs are kept)")

    def _set_aside(self, path: Path, why: str) -> None:
        aside = path.with_suffix(".corrupt")
        os.replace(path, aside)
        print(f"train: {path} {why}; set aside as {aside}")

    def _read(self, path: Path, net, opt, average: WeightAverage | None = None) -> LoopState:
        """The state in ``path``, put into ``net`` and ``opt`` (``WeightError`` when unusable:
        nothing is changed then, every part being checked before anything is loaded)."""
        ck = load_checkpoint(path)
        if ck.get("fingerprint") != self.key:
            raise WeightError(f"{path}: holds the state of other params or weights")
        try:
            state = LoopState(**ck["loop"])
            model, optim = ck["model"], ck["optimizer"]
        except (KeyError, TypeError) as exc:
            raise WeightError(f"{path}: incomplete resumable state ({exc})") from None
        if average is not None:
            saved = ck.get("average")
            if not isinstance(saved, dict) or "arrays" not in saved:
                raise WeightError(f"{path}: holds no weight average")
            if saved["arrays"] is not None:   # checked before anything is loaded
                check_state_dict({k: tuple(v.shape) for k, v in net.state_dict().items()}, saved["arrays"],
                                 f"{path} (weight average)")
        load_into(net, model, str(path))   # checks every name and shape first
        load_optimizer_state(opt, optim, str(path))   # idem
        if average is not None:
            average.restore(ck["average"], str(path))
        state.stopped_by = None
        return state

    def load(self, net, opt, average: WeightAverage | None = None) -> LoopState | None:
        """The saved state of this run (``last.ckpt``, else ``prev.ckpt``), or None: start over;
        ``average`` (:class:`~dainet.training.ema.WeightAverage`) is restored with it."""
        tried = []
        for path in (self.last, self.prev):
            if not path.exists():
                continue
            try:
                state = self._read(path, net, opt, average)
            except WeightError as exc:
                self._set_aside(path, f"cannot be resumed ({str(exc).removeprefix(f'{path}: ')})")
                tried.append(path.name)
                continue
            self.saved_at = state.iteration
            print(f"train: resuming {path} at iteration {state.iteration}"
                  + (f" ({' and '.join(tried)} set aside)" if tried else ""))
            return state
        if tried:
            print(f"train: no usable resumable state in {self.folder} ({' and '.join(tried)} set aside "
                  "as *.corrupt); starting over")
        elif self.root.is_dir() and any(d.is_dir() and RUN_NAME.match(d.name) and d.name != self.key
                                        for d in self.root.iterdir()):   # rank 0 alone creates the root
            print(f"train: {self.root} holds only runs of other params or weights; starting over in {self.folder}")
        return None

    def save(self, net, opt, state: LoopState, periodic: bool, buffers: dict | None = None,
             average: WeightAverage | None = None) -> None:
        """Write ``last.ckpt`` (the previous one becomes ``prev.ckpt``); refuses non-finite weights.

        ``buffers`` (:func:`buffer_state`) replaces what the model holds besides its trained
        weights (BatchNorm statistics), when those were read earlier than the weights;
        ``average`` (:class:`~dainet.training.ema.WeightAverage`) is saved with the state."""
        arrays = {k: v.numpy() for k, v in net.state_dict().items()}
        if buffers is not None:
            arrays.update(buffers)
        bad = [k for k, a in arrays.items() if np.issubdtype(a.dtype, np.inexact) and not np.isfinite(a).all()]
        if bad:   # the loss was finite, the update was not
            raise TrainingDiverged(
                f"weights became non-finite in the step of iteration {state.iteration} ({len(bad)} "
                f"tensors, e.g. {bad[0]}; the loss was finite) and were not saved; {self.kept()}. "
                "Lower train.lr or check the data")
        self.folder.mkdir(parents=True, exist_ok=True)
        payload = {"fingerprint": self.key, "model": arrays, "optimizer": optimizer_state(opt),
                   "loop": asdict(state)}
        if average is not None:
            payload["average"] = average.state()
        if self.last.exists():
            os.replace(self.last, self.prev)
        save_checkpoint(self.last, payload)
        self.saved_at = state.iteration
        if periodic:
            save_checkpoint(self.folder / f"iter_{state.iteration:07d}.ckpt",
                            {"model": arrays, "iteration": state.iteration, "fingerprint": self.key})

    def kept(self) -> str:
        """What a diverged run leaves: the phrase for its message."""
        if self.saved_at is None or not self.last.exists():
            return "no checkpoint had been written yet"
        return f"the last good checkpoint {self.last} (iteration {self.saved_at}) is kept"
