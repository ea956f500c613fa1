"""What training memory and disk grow with: measured figures, printed (no asserts).

    python bench/memory.py [--images 3000] [--size 128] [--iters 4 16] [--rows 3000] [--root DIR]

1. Validation pass, per image: peak RSS (``VmHWM``, each case in a fresh process) of
   reading a list of N generated images (spec §11 format) through ``ValDataset`` at
   ``--size`` px -- every batch held (``list(ds)``, what the train stage did before) or
   one batch at a time (what it does now) -- minus the peak of building the dataset alone.
2. Training, per iteration: the train stage on this script's tiny profile (:data:`TINY`:
   a narrow network on 128 px crops of a 12-image generated sample;
   ``log_every`` 1, ``checkpoint_every`` 1) for each of ``--iters``: size of
   ``last.ckpt`` and of its JSON tree, of the history file, and the peak RSS of the
   stage process; growth per iteration between the two runs.
3. Logging, per row: the time to log rows (CSV, DVCLive, history) at the start and after
   ``--rows`` rows.

``--root`` runs part 2 with another checkout's ``stages/train.py`` and ``dainet``
(e.g. ``git archive <commit> | tar -x -C DIR``) to measure it before a change.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# params.yaml with these dotted keys replaced: the run of part 2 (a few iterations in seconds).
TINY = {
    "sample.n_train": 12, "sample.n_val": 6, "sample.n_dark": 6, "sample.n_events": 2,
    "sample.image_side": [128, 192], "sample.face_size": [16, 72], "sample.faces_per_image": [1, 3],
    "model.width": 0.125, "augment.image_size": 128,
    "train.batch_size": 2, "train.max_epochs": 100, "train.device": "cpu", "train.clean_warmup_iters": 2,
}

VAL_CHILD = r"""
import sys
from dainet.data.dataset import ValDataset
mode, path, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
ds = ValDataset(path, size, 1.0, batch_size=4)
n = 0
if mode == "list":            # every batch in memory, then read
    batches = list(ds)
    for images, targets in batches:
        n += len(images)
elif mode == "stream":        # one batch at a time
    for images, targets in ds:
        n += len(images)
print(n)
"""


def peak_of(argv: list[str], env: dict | None = None, cwd: Path = ROOT) -> tuple[int, str]:
    """Peak RSS (KiB) of a command run alone: measured through a fresh Python parent, so the
    ``RUSAGE_CHILDREN`` maximum holds that one child only."""
    wrapper = ("import resource, subprocess, sys\n"
               "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
               "sys.stderr.write(p.stderr[-3000:]) if p.returncode else None\n"
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
               "print(p.stdout, end='')\n"
               "sys.exit(p.returncode)")
    p = subprocess.run([sys.executable, "-c", wrapper, *argv], cwd=cwd, env=env, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"{' '.join(argv[:4])} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    first, _, rest = p.stdout.partition("\n")
    return int(first), rest


def write_val_list(folder: Path, n: int) -> Path:
    """``n`` small JPEGs (64-96 px, one bright box each) and their list file."""
    import cv2
    import numpy as np
    from dainet.formats.lists import ListEntry, write_list
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    entries = []
    for i in range(n):
        h, w = int(rng.integers(64, 97)), int(rng.integers(64, 97))
        img = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
        x, y, s = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2)), int(rng.integers(12, 30))
        img[y:y + s, x:x + s] = 220
        path = folder / f"{i:05d}.jpg"
        cv2.imwrite(str(path), img)
        entries.append(ListEntry(str(path), np.array([[x, y, s, s]], np.float32), np.array([1])))
    write_list(folder / "val.txt", entries)
    return folder / "val.txt"


def bench_validation(tmp: Path, n: int, size: int) -> None:
    val = write_val_list(tmp / "val", n)
    peaks = {m: peak_of([sys.executable, "-c", VAL_CHILD, m, str(val), str(size)])[0]
             for m in ("none", "list", "stream")}
    per_image = {m: (peaks[m] - peaks["none"]) * 1024 / n for m in ("list", "stream")}
    batch_bytes = size * size * 3 * 4
    print(f"validation pass, {n} images at {size} px (one image float32 = {batch_bytes / 1e3:.0f} kB):")
    print(f"  peak RSS: dataset only {peaks['none'] / 1024:.0f} MiB, all batches held {peaks['list'] / 1024:.0f} MiB, "
          f"streamed {peaks['stream'] / 1024:.0f} MiB")
    print(f"  above the dataset: held {per_image['list'] / 1e3:.1f} kB per image; streamed "
          f"{(peaks['stream'] - peaks['none']) / 1024:.1f} MiB in all (a batch of 4 is {4 * batch_bytes / 2**20:.1f} MiB), "
          f"i.e. {per_image['stream'] / 1e3:.2f} kB per image")
    paper = 3226 * 640 * 640 * 3 * 4 * per_image["list"] / batch_bytes
    print(f"  at the paper's 3,226 validation images of 640 px, held: ~{paper / 1e9:.1f} GB")


def tiny_inputs(tmp: Path):
    """The generated sample, its lists and seeded initial weights of :data:`TINY` under ``tmp``."""
    import dainet.jt  # noqa: F401  (configures Jittor before it loads)
    from dainet.data.prepare import prepare_lists
    from dainet.data.sample import SampleConfig, write_sample
    from dainet.data.synth import SceneConfig
    from dainet.models import build_model
    from dainet.models.decomp import build_decomposer
    from dainet.models.init import init_weights
    from dainet.params import load_params, write_overrides
    from dainet.weights.checkpoint import save_checkpoint
    params = write_overrides(tmp / "params.yaml", TINY, ROOT / "params.yaml")
    p = load_params(params)
    write_sample(tmp / "sample", p.section("sample").load(SampleConfig, scene=p.section("sample").load(SceneConfig)))
    prepare_lists(tmp / "sample" / "widerface", tmp / "sample" / "darkface", tmp / "lists")
    save_checkpoint(tmp / "init.ckpt", {"model": init_weights(build_model(p.section("model")), 0, "kaiming").state_dict()})
    save_checkpoint(tmp / "decomp.ckpt", {"model": init_weights(build_decomposer(p.section("model")), 0).state_dict()})


def bench_training(tmp: Path, iters: list[int], code_root: Path) -> None:
    from dainet.params import write_overrides
    tiny_inputs(tmp)
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    figures = []
    for n in iters:
        out = tmp / f"run{n}"
        params = write_overrides(tmp / f"p{n}.yaml", {**TINY, "train.max_iter": n, "train.log_every": 1,
                                                      "train.checkpoint_every": 1, "train.image_every": 0},
                                 ROOT / "params.yaml")
        argv = [sys.executable, str(code_root / "stages" / "train.py"),
                "--train-list", str(tmp / "lists" / "train.txt"), "--val-list", str(tmp / "lists" / "val.txt"),
                "--init", str(tmp / "init.ckpt"), "--decomp", str(tmp / "decomp.ckpt"),
                "--checkpoints", str(out / "ckpt"), "--out", str(out / "model.ckpt"),
                "--metrics", str(out / "train.json"), "--plots", str(out / "plots"), "--params", str(params)]
        peak, _ = peak_of(argv, env=env, cwd=code_root)
        last = next((out / "ckpt").rglob("last.ckpt"))
        meta = zipfile.ZipFile(last).read("checkpoint.json")
        loop = json.loads(meta)["tree"]["loop"]
        lists = {k: len(v["__tuple__"] if isinstance(v, dict) else v) for k, v in loop.items()
                 if isinstance(v, list) or (isinstance(v, dict) and "__tuple__" in v)}
        history = sum(p.stat().st_size for p in (out / "ckpt").rglob("history.jsonl"))
        figures.append((n, last.stat().st_size, len(meta), history, peak))
        print(f"training, {n} iterations: last.ckpt {last.stat().st_size} B (JSON tree {len(meta)} B; "
              f"lists in its loop state: {lists}), history file {history} B, peak RSS {peak / 1024:.0f} MiB")
    (a, sa, ta, ha, pa), (b, sb, tb, hb, pb) = figures[0], figures[-1]
    d = b - a
    print(f"  per iteration: last.ckpt {(sb - sa) / d:+.1f} B (JSON tree {(tb - ta) / d:+.1f} B), "
          f"history file {(hb - ha) / d:+.1f} B on disk, peak RSS {(pb - pa) / d:+.1f} KiB")
    print("  (val_history: one entry per epoch end, bounded by train.max_epochs; a list that grows with "
          "every logged row would reach 15,000 rows in each checkpoint of the paper's 150k iterations)")


def bench_logger(tmp: Path, rows: int) -> None:
    from dainet.training.logging import TrainLogger
    log = TrainLogger(tmp / "log" / "live", tmp / "log" / "loss.csv", tmp / "log" / "history.jsonl",
                      show_progress=False)
    log.resume(0)
    terms = ("loc1", "conf1", "loc2", "conf2", "ref", "enh", "mutual", "total")

    def timed(start: int, count: int) -> float:
        t = time.perf_counter()
        for i in range(start, start + count):
            log.row({"iteration": i, "epoch": 0, **{k: 1.0 / i for k in terms}, "lr": 1e-3, "images_per_s": 5.0})
        return (time.perf_counter() - t) / count
    first = timed(1, 100)
    timed(101, rows - 200)
    late = timed(rows - 99, 100)
    log.close()
    print(f"logging: {first * 1e3:.2f} ms per row for rows 1-100, {late * 1e3:.2f} ms for rows "
          f"{rows - 99}-{rows} (ratio {late / first:.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--iters", type=int, nargs=2, default=[4, 16])
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--root", type=Path, default=ROOT, help="checkout whose train stage part 2 runs")
    ap.add_argument("--skip", nargs="*", default=[], choices=("validation", "training", "logging"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "validation" not in args.skip:
            bench_validation(tmp, args.images, args.size)
        if "training" not in args.skip:
            bench_training(tmp, sorted(args.iters), args.root.resolve())
        if "logging" not in args.skip:
            bench_logger(tmp, args.rows)


if __name__ == "__main__":
    main()
