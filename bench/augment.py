"""Training-data throughput: JPEG decode + §7 augmentation + collation, images/s on one core.

Synthetic 1024x768 JPEGs with 1-12 faces each are written to a temporary folder and
read through :class:`dainet.data.dataset.WiderFaceDataset` with ``num_workers=0`` and
OpenCV limited to one thread, so the figure is per core (workers scale it up to the
number of cores). One run, no repetition: it prints a single figure.

    python bench/augment.py [--params params.yaml] [--images 200]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from dainet.data.augment import AugmentConfig
from dainet.data.dataset import WiderFaceDataset
from dainet.formats.lists import ListEntry, write_list
from dainet.params import load_params


def synthetic_list(folder: Path, n_images: int, size_wh=(1024, 768), seed: int = 0) -> Path:
    """Noisy textured JPEGs with random face-sized rectangles; returns the list file."""
    rng = np.random.default_rng(seed)
    w, h = size_wh
    entries = []
    for i in range(n_images):
        image = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 3)
        n = int(rng.integers(1, 13))
        sides = np.exp(rng.uniform(np.log(8), np.log(300), n)).astype(int)
        xy = rng.uniform(0, 1, (n, 2)) * (np.array([w, h]) - sides[:, None])
        for (x, y), s in zip(xy.astype(int), sides):
            image[y:y + s, x:x + s] = rng.integers(0, 256, 3)
        path = folder / f"{i:05d}.jpg"
        cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        boxes = np.concatenate([xy.astype(int), sides[:, None], sides[:, None]], axis=1)
        entries.append(ListEntry(str(path), boxes.astype(np.float32), np.ones(n, np.int64)))
    write_list(folder / "list.txt", entries)
    return folder / "list.txt"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--images", type=int, default=200, help="images to load and augment")
    ap.add_argument("--batch-size", type=int, default=4)
    args = ap.parse_args(argv)
    cfg = load_params(args.params).section("augment").load(AugmentConfig)
    cv2.setNumThreads(1)  # per-core figure
    with tempfile.TemporaryDirectory() as tmp:
        list_file = synthetic_list(Path(tmp), min(args.images, 50))
        ds = WiderFaceDataset(list_file, cfg, seed=0, batch_size=args.batch_size, drop_last=False)
        ds.set_attrs(keep_numpy_array=True)  # the loader's work only, not the host->device copy
        next(iter(ds))  # warm-up: first imports and allocations
        done, start = 0, time.perf_counter()
        epoch = 0
        while done < args.images:
            for images, _ in ds.set_epoch(epoch):
                done += len(images)
                if done >= args.images:
                    break
            epoch += 1
        seconds = time.perf_counter() - start
    print(f"augment: {done / seconds:.1f} images/s per core "
          f"(1024x768 JPEG -> {cfg.image_size}x{cfg.image_size}, {done} images, {seconds:.2f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
