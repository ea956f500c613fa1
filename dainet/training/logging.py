"""Training logs: DVCLive step curves and images, a CSV of every logged row, a tqdm bar.

DVCLive writes ``<dir>/plots/metrics/<name>.tsv`` (one curve per loss term, read by
``dvc plots``) and ``<dir>/plots/images/*.png``; the CSV (``iteration, epoch, <terms>,
total, lr, images_per_s``) holds all terms of a row in one file for a single plot.

Nothing here grows with the number of iterations: every row is appended (and flushed)
to the CSV, to DVCLive's TSVs and to the run's *history* -- a JSON-lines file next to
the resumable checkpoint, one row a line at full float precision -- and then
forgotten. The checkpoint records only how many history rows it covers. On resume,
:meth:`TrainLogger.resume` keeps that many rows of the history (the rows logged after
the checkpoint, before the interruption, are replayed by the training itself), rewrites
the CSV and DVCLive's curves from them once, and appending goes on: the files end up
the same as those of an uninterrupted run (bar the measured ``images_per_s``). The
pictures are kept the same way: each is also written to ``images/`` of the run folder
(DVC deletes the stage's outputs before it runs, so DVCLive's copies do not survive a
rerun) and :meth:`TrainLogger.resume` logs them to DVCLive again.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dainet.formats.images import to_uint8
from dainet.utils.fileio import append_text, write_image, write_text


def chw_picture(x) -> np.ndarray:
    """[3, H, W] or [1, H, W] float in [0, 1] (Var or array) -> uint8 RGB [H, W, 3]
    (:func:`dainet.formats.images.to_uint8`): the training pictures (this log's, the
    decomposition preview)."""
    a = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
    if a.shape[0] == 1:
        a = np.repeat(a, 3, axis=0)
    return to_uint8(a.transpose(1, 2, 0))


def picture_row(pictures: dict, index: int = 0) -> np.ndarray:
    """The ``index``-th image of every named batch, side by side (e.g. clean | dark | R_dark | R_light)."""
    return np.concatenate([chw_picture(v[index]) for v in pictures.values()], axis=1)


def read_history(path: str | Path, n_rows: int) -> list[dict]:
    """The first ``n_rows`` rows of a history file (fewer when it is shorter or torn there)."""
    rows = []
    try:
        with open(path) as f:
            for line in f:
                if len(rows) == n_rows:
                    break
                try:
                    row = json.loads(line)
                except ValueError:   # a line torn by a kill: what follows is not trusted
                    break
                if not isinstance(row, dict):
                    break
                rows.append(row)
    except FileNotFoundError:
        pass
    return rows


def _csv_text(rows: list[dict], cols: list[str], header: bool) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    if header:
        w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


class TrainLogger:
    """``history_path``: the run's row history (next to its checkpoint, see the module docstring)."""

    def __init__(self, live_dir: str | Path, csv_path: str | Path, history_path: str | Path,
                 enabled: bool = True, show_progress: bool = True, prefix: str = "train"):
        self.enabled, self.show_progress, self.prefix = enabled, show_progress, prefix
        self.csv_path, self.history_path = Path(csv_path), Path(history_path)
        self.images_dir = self.history_path.parent / "images"   # the run's copies of the pictures
        self.cols: list[str] | None = None   # the CSV header, from the first row
        self.live = None
        if enabled:
            from dvclive import Live
            # no dvc.yaml edits and no experiment commits: the pipeline owns those
            self.live = Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=None, report=None)

    def progress(self, total: int, initial: int):
        return tqdm(total=total, initial=initial, desc=self.prefix, unit="it",
                    disable=not (self.enabled and self.show_progress), dynamic_ncols=True)

    def resume(self, n_rows: int, val_history=()) -> int:
        """Start the logs from the first ``n_rows`` history rows and ``val_history``
        ``(epoch, iteration, loss)``; returns the rows found (fewer than ``n_rows`` when the
        history file lost some: the curves then miss them, training is unaffected)."""
        if not self.enabled:
            return n_rows
        rows = read_history(self.history_path, n_rows)
        write_text(self.history_path, "".join(json.dumps(r) + "\n" for r in rows))
        self.cols = list(rows[0].keys()) if rows else None
        if rows:
            write_text(self.csv_path, _csv_text(rows, self.cols, header=True))
        elif self.csv_path.exists():
            self.csv_path.unlink()          # a fresh run: the header comes with the first row
        for row in rows:
            self._live_row(row)
        for _, iteration, loss in val_history:
            self.val(iteration, loss)
        for png in sorted(self.images_dir.glob("*.png")):   # a fresh run (no rows) starts without
            if rows:
                self.live.log_image(png.name, png)
            else:
                png.unlink()
        return len(rows)

    def row(self, row: dict) -> None:
        if not self.enabled:
            return
        append_text(self.history_path, json.dumps(row) + "\n")
        header = self.cols is None
        if header:
            self.cols = list(row.keys())
        append_text(self.csv_path, _csv_text([row], self.cols, header=header))
        self._live_row(row)

    def _live_row(self, row: dict) -> None:
        self.live.step = int(row["iteration"])
        for k, v in row.items():
            if k not in ("iteration", "epoch"):
                self.live.log_metric(f"{self.prefix}/{k}", float(v))

    def val(self, iteration: int, loss: float) -> None:
        if self.enabled:
            self.live.step = int(iteration)
            self.live.log_metric(f"{self.prefix}/val_loss", float(loss))

    def images(self, iteration: int, pictures: dict) -> None:
        if self.enabled and pictures:
            name, row = f"{self.prefix}_{iteration:07d}.png", picture_row(pictures)
            write_image(self.images_dir / name, row)
            self.live.log_image(name, row)

    def close(self) -> None:
        if self.live is not None:
            self.live.end()
