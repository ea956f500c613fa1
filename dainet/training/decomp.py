"""Training the Retinex decomposition network (spec §6) on (DarkISP(clean), clean) pairs.

The published DAI-Net trains its DecomNet once and freezes it; without that file
(the embedded sample) we train one here. Pairs are random square crops of the
training images, darkened by the same DarkISP as the detector's training.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
from dainet.jt import jt
import numpy as np
from tqdm import tqdm

from dainet.data.darkisp import DarkISPConfig, darken_batch
from dainet.errors import UserError
from dainet.formats.images import read_image
from dainet.formats.lists import read_list
from dainet.losses.retinex import decomposition_loss
from dainet.models.decomp import build_decomposer
from dainet.models.init import init_weights
from dainet.params import Section
from dainet.training.logging import chw_picture
from dainet.weights import load_into, read_pth


@dataclass(frozen=True)
class DecompTrainConfig:
    """Params section `train_decomp`, every key."""
    seed: int
    iterations: int
    batch_size: int
    image_size: int
    lr: float
    w_recon_mutual: float
    w_smooth: float
    w_equal_r: float
    smooth_edge: float
    log_every: int
    src: str             # a published decomp.pth to convert instead of training ("" trains)
    n_preview: int       # val images in plots/decomp/preview.png
    preview_size: int


def random_crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A ``size`` x ``size`` crop (the image is upscaled first when smaller), random flip.

    uint8 [H, W, 3] -> float32 [3, size, size] in [0, 1].
    """
    h, w = image.shape[:2]
    if min(h, w) < size:
        s = size / min(h, w)
        image = cv2.resize(image, (max(size, round(w * s)), max(size, round(h * s))),
                           interpolation=cv2.INTER_LINEAR)
        h, w = image.shape[:2]
    y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    crop = image[y:y + size, x:x + size]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop.transpose(2, 0, 1), dtype=np.float32) / 255.0


def train_decomposer(decomposer, image_paths: list[str], cfg: DecompTrainConfig,
                     darkisp: DarkISPConfig, show_progress: bool = True) -> list[dict]:
    """Adam on the §6 loss; returns the logged rows (iteration, loss, seconds).

    ``image_paths``: the training images, read per batch (a real run usually converts
    the published decomp.pth instead of training).
    """
    if not image_paths:
        raise UserError("train_decomp: the training list holds no images")
    opt = jt.optim.Adam(decomposer.parameters(), lr=cfg.lr)
    rows, t0, window = [], time.perf_counter(), []
    for it in tqdm(range(cfg.iterations), desc="train_decomp", disable=not show_progress):
        rng = np.random.default_rng([cfg.seed, it])
        idx = rng.integers(0, len(image_paths), cfg.batch_size)
        high = jt.array(np.stack([random_crop(read_image(image_paths[i]), cfg.image_size, rng)
                                  for i in idx]))
        low, _ = darken_batch(high, rng, darkisp)
        R, I = decomposer(jt.concat([low, high], dim=0))
        n = cfg.batch_size
        loss = decomposition_loss(R[:n], I[:n], R[n:], I[n:], low, high, cfg.w_recon_mutual,
                                  cfg.w_smooth, cfg.w_equal_r, cfg.smooth_edge)
        opt.step(loss)
        window.append(float(loss.item()))
        if not np.isfinite(window[-1]):
            raise UserError(f"train_decomp: loss became {window[-1]} at iteration {it}; "
                            f"lower train_decomp.lr")
        if (it + 1) % cfg.log_every == 0 or it + 1 == cfg.iterations:
            rows.append({"iteration": it + 1, "loss": float(np.mean(window)),
                         "seconds": time.perf_counter() - t0})
            window = []
    return rows


def decomposition_preview(decomposer, images: list[np.ndarray], size: int) -> np.ndarray:
    """One row per image: input | R | I (uint8 [rows*size, 3*size, 3]) at ``size`` px high."""
    rows = []
    with jt.no_grad():
        for img in images:
            h, w = img.shape[:2]
            s = size / h
            small = cv2.resize(img, (max(2, round(w * s)) // 2 * 2, size), interpolation=cv2.INTER_AREA)
            x = jt.array(small.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)
            R, I = decomposer(x)
            rows.append(np.concatenate([small, chw_picture(R[0]), chw_picture(I[0])], axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    return np.concatenate(rows, axis=0)


@dataclass
class DecompRun:
    """What :func:`train_decomp` made: the eval-mode network, its loss rows (none when
    converted), the input | R | I preview of the validation images, and its source."""
    net: object
    rows: list
    preview: np.ndarray
    src: str
    iterations: int


def train_decomp(params: Section, train_list: str, val_list: str, src: str | None = None) -> DecompRun:
    """The `train_decomp` stage (stages/train_decomp.py calls it): convert the published
    ``src`` (default params ``train_decomp.src``) or, without one, train the decomposer
    on (DarkISP(clean), clean) crops of ``train_list``; preview the first
    ``train_decomp.n_preview`` images of ``val_list``."""
    sec = params.section("train_decomp")
    cfg = sec.load(DecompTrainConfig)
    src = src if src is not None else cfg.src
    jt.set_global_seed(cfg.seed)
    net = build_decomposer(params.section("model"))
    if src:
        load_into(net, read_pth(src), src)
        rows = []
    else:
        init_weights(net, cfg.seed)
        paths = [e.image for e in read_list(train_list)]
        rows = train_decomposer(net, paths, cfg, params.section("darkisp").load(DarkISPConfig))
    net.eval()
    val = read_list(val_list)[: cfg.n_preview]
    preview = decomposition_preview(net, [read_image(e.image) for e in val], size=cfg.preview_size)
    return DecompRun(net=net, rows=rows, preview=preview, src=src, iterations=0 if src else cfg.iterations)
