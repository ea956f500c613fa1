"""Training logs: DVCLive step curves and images, a CSV of every logged row, a tqdm bar.

DVCLive writes ``<dir>/plots/metrics/<name>.tsv`` (one curve per loss term, read by
``dvc plots``) and ``<dir>/plots/images/*.png``; the CSV (``iteration, epoch, <terms>,
total, lr, images_per_s``) holds all terms of a row in one file for a single plot.
On resume the rows saved in the checkpoint are replayed, so the logs are continuous.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dainet.utils.fileio import write_text


def to_uint8_image(x) -> np.ndarray:
    """[3, H, W] or [1, H, W] float in [0, 1] (Var or array) -> uint8 [H, W, 3]."""
    a = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
    if a.shape[0] == 1:
        a = np.repeat(a, 3, axis=0)
    return (np.clip(a.transpose(1, 2, 0), 0, 1) * 255 + 0.5).astype(np.uint8)


def picture_row(pictures: dict, index: int = 0) -> np.ndarray:
    """The ``index``-th image of every named batch, side by side (e.g. clean | dark | R_dark | R_light)."""
    return np.concatenate([to_uint8_image(v[index]) for v in pictures.values()], axis=1)


class TrainLogger:
    def __init__(self, live_dir: str | Path, csv_path: str | Path, enabled: bool = True,
                 show_progress: bool = True, prefix: str = "train"):
        self.enabled, self.show_progress, self.prefix = enabled, show_progress, prefix
        self.csv_path = Path(csv_path)
        self.rows: list[dict] = []
        self.live = None
        if enabled:
            from dvclive import Live
            # no dvc.yaml edits and no experiment commits: the pipeline owns those
            self.live = Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=None, report=None)

    def progress(self, total: int, initial: int):
        return tqdm(total=total, initial=initial, desc=self.prefix, unit="it",
                    disable=not (self.enabled and self.show_progress), dynamic_ncols=True)

    def replay(self, rows: list[dict]) -> None:
        for row in rows:
            self.row(row)

    def row(self, row: dict) -> None:
        if not self.enabled:
            return
        self.rows.append(dict(row))
        self.live.step = int(row["iteration"])
        for k, v in row.items():
            if k not in ("iteration", "epoch"):
                self.live.log_metric(f"{self.prefix}/{k}", float(v))
        self._write_csv()

    def val(self, iteration: int, loss: float) -> None:
        if self.enabled:
            self.live.step = int(iteration)
            self.live.log_metric(f"{self.prefix}/val_loss", float(loss))

    def images(self, iteration: int, pictures: dict) -> None:
        if self.enabled and pictures:
            self.live.log_image(f"{self.prefix}_{iteration:07d}.png", picture_row(pictures))

    def _write_csv(self) -> None:
        cols = list(self.rows[0].keys())
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in self.rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
        write_text(self.csv_path, buf.getvalue())

    def close(self) -> None:
        if self.live is not None:
            self.live.end()
