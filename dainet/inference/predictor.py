"""DAI-Net / DSFD as a detector for the multi-scale test, and the predict loop (spec §10).

:func:`make_detect_fn` turns a network into the ``detect_fn`` that
:func:`dainet.inference.multi_scale_detect` calls once per test scale::

    image float32 [h, w, 3] RGB in [0, 1]
      -> jt input [1, 3, h, w]
      -> net(x, with_reflectance=False) under jt.no_grad()   (second shot: loc2, conf2)
      -> dainet.boxes.detect with the second-shot priors of an h x w input
      -> [K, 5] (x1, y1, x2, y2 in that image's pixels, score)

:func:`predict_images` runs it over an image set and writes WIDER or DARK FACE
prediction files: every image is decode-checked first, so unreadable ones are reported
and counted -- and too many of them fail the run -- before any image is predicted or
any file written; :func:`check_skipped` fails a run that skipped more images than allowed;
:func:`predict` is the `predict` stage (stages/predict.py calls it), and
:func:`detector_from_params` the network the `visualize` stage draws with.

This module imports Jittor (the rest of :mod:`dainet.inference` does not): import it
as ``dainet.inference.predictor``, after ``dainet``.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from dainet.jt import jt

from dainet.boxes.convert import normalised_to_pixels
from dainet.boxes.detect import detect
from dainet.boxes.priors import PriorSpec
from dainet.errors import UserError
from dainet.formats.images import IMAGE_SUFFIXES, ImageReadError, check_images, read_image
from dainet.formats.lists import read_list
from dainet.formats.predictions import FORMATS, write_darkface_prediction, write_wider_prediction
from dainet.inference.multiscale import DetectFn, MultiScaleConfig, multi_scale_detect
from dainet.models import build_model
from dainet.models.config import ModelConfig
from dainet.params import Section
from dainet.runtime import use_device
from dainet.weights import WeightError, load_checkpoint, load_into

METHODS = ("dainet", "dsfd")


# ----------------------------------------------------------------------------- network

def load_detector(weights: str | Path, model_section) -> tuple["jt.nn.Module", str]:
    """``(net, method)`` from one of our checkpoints (``{"model": state, "method": ...}``).

    ``method`` (``dainet`` when absent) decides the variant: DAI-Net has the reflectance
    decoder ``ref.*``, the DSFD baseline has none. The net is in eval mode.
    """
    ckpt = load_checkpoint(weights)
    state = ckpt.get("model")
    if not isinstance(state, dict):
        raise WeightError(f"{weights}: checkpoint has no 'model' state dict")
    method = ckpt.get("method", "dainet")
    if method not in METHODS:
        raise WeightError(f"{weights}: checkpoint method {method!r} is none of {'|'.join(METHODS)}")
    net = build_model(model_section, reflectance=method == "dainet")
    load_into(net, state, str(weights))
    net.eval()
    return net, method


def image_to_input(image_rgb: np.ndarray) -> jt.Var:
    """``[h, w, 3]`` float32 RGB in [0, 1] -> ``[1, 3, h, w]`` (spec §1: NCHW, no mean)."""
    return jt.array(np.ascontiguousarray(image_rgb.transpose(2, 0, 1)[None], dtype=np.float32))


def make_detect_fn(net, priors: PriorSpec, cfg: MultiScaleConfig) -> DetectFn:
    """The single-pass detector ``image [h, w, 3] float32 -> [K, 5]`` (pixels of that image).

    Thresholds are ``cfg``'s (params ``predict.conf_thresh``, ``nms_thresh``, ``top_k``,
    ``keep_top_k``). An input too small for the backbone (a side under ~28 px, where
    a level would have no cell) gives no box: the reference would crash on it, and the
    multi-scale test then simply gets nothing from that scale.
    """
    priors.check()

    def detect_fn(image_rgb: np.ndarray) -> np.ndarray:
        hw = image_rgb.shape[:2]
        if not priors.fits(hw):
            return np.zeros((0, 5), np.float32)
        with jt.no_grad():
            loc, conf, _ = net(image_to_input(image_rgb), with_reflectance=False)
            dets = detect(loc, conf, priors.priors(hw), priors.variances, cfg.conf_thresh, cfg.nms_thresh, cfg.top_k,
                          cfg.keep_top_k)[0]
        return normalised_to_pixels(dets, hw)

    return detect_fn


def reflectance(net, image_rgb: np.ndarray) -> np.ndarray:
    """DAI-Net's reflectance R ``[3, 2*(h//2), 2*(w//2)]`` in [0, 1] of one float32 image."""
    if not getattr(net, "reflectance", False):
        raise ValueError("the network has no reflectance decoder (a DSFD baseline)")
    with jt.no_grad():
        _, _, R = net(image_to_input(image_rgb), with_reflectance=True)
        return R[0].numpy()


def feature_maps(net, image_rgb: np.ndarray, layers: Iterable[str]) -> dict[str, np.ndarray]:
    """Named maps ``{layer: [C, h', w']}`` of one float32 image (see ``DAINet.features``)."""
    with jt.no_grad():
        maps = net.features(image_to_input(image_rgb))
        unknown = [name for name in layers if name not in maps]
        if unknown:
            raise KeyError(f"unknown feature layers {unknown}; known: {', '.join(maps)}")
        return {name: maps[name][0].numpy() for name in layers}


# ------------------------------------------------------------------------ image sets

def list_images(list_path: str | Path) -> list[Path]:
    """The images of a list file (spec §11); its boxes are ignored."""
    return [Path(e.image) for e in read_list(list_path)]


def folder_images(folder: str | Path) -> list[Path]:
    """Every image file under ``folder`` (recursive, by suffix), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: image folder not found")
    images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise UserError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in it or below it")
    return images


def prediction_key(image: Path, fmt: str) -> tuple[str, ...]:
    """What names an image's prediction file: WIDER ``(event, stem)`` with the event the
    image's folder (``WIDER_val/images/<event>/<name>.jpg``); DARK FACE ``(stem,)``."""
    if fmt == "wider":
        if not image.parent.name:
            raise UserError(f"{image}: a WIDER prediction needs the image inside an event folder")
        return (image.parent.name, image.stem)
    if fmt == "darkface":
        return (image.stem,)
    raise ValueError(f"unknown prediction format {fmt!r} (expected {'|'.join(FORMATS)})")


def check_unique_outputs(images: list[Path], fmt: str) -> None:
    """Two images must not write the same prediction file (one would overwrite the other)."""
    seen: dict[tuple, Path] = {}
    for image in images:
        key = prediction_key(image, fmt)
        if key in seen:
            raise UserError(f"{seen[key]} and {image} would both write the prediction file "
                            f"{'/'.join(key)}.txt ({fmt} format)")
        seen[key] = image


def write_prediction(out_dir: str | Path, image: Path, dets_xyxy_score: np.ndarray, fmt: str) -> Path:
    if fmt == "wider":
        event, _ = prediction_key(image, fmt)
        return write_wider_prediction(out_dir, event, image.name, dets_xyxy_score)
    return write_darkface_prediction(out_dir, image.name, dets_xyxy_score)


# ---------------------------------------------------------------------------- the loop

@dataclass
class PredictStats:
    images: int = 0            # images detected and written
    skipped_images: int = 0    # unreadable, reported on stderr
    boxes: int = 0
    seconds: float = 0.0       # read + detect + write of the written images
    skipped: list[ImageReadError] = field(default_factory=list)   # why each was skipped

    def metrics(self, single_scale: bool) -> dict:
        """The flat metrics JSON of the predict stage."""
        n = max(self.images, 1)
        return {"images": self.images, "skipped_images": self.skipped_images,
                "seconds_per_image": round(self.seconds / n, 4),
                "boxes_per_image": round(self.boxes / n, 3), "single_scale": bool(single_scale)}


def _skip(stats: PredictStats, exc: ImageReadError) -> None:
    print(f"predict: skipped {exc}", file=sys.stderr)
    stats.skipped_images += 1
    stats.skipped.append(exc)


def predict_images(images: list[Path], detect_fn: DetectFn, cfg: MultiScaleConfig, out_dir: str | Path,
                   fmt: str, progress: Callable[[Iterable], Iterable] = iter,
                   max_skipped: int | None = None) -> PredictStats:
    """Detect faces in every image (multi-scale per ``cfg``) and write one file per image.

    Every image is decode-checked first (:func:`~dainet.formats.images.check_images`,
    the policy of the reader): an unreadable image is reported on stderr (path and
    reason), counted in ``skipped_images`` and writes no file. More than ``max_skipped``
    of them (None: no limit), or no readable image at all, is a :class:`UserError`
    (:func:`check_skipped`) raised before any image is predicted or any file written.
    ``progress`` wraps the iterable of readable images (e.g. ``tqdm``). Seconds include
    Jittor's compile of new input shapes.
    """
    if not images:
        raise UserError("no images to predict")
    if fmt not in FORMATS:
        raise UserError(f"unknown prediction format {fmt!r} (expected {'|'.join(FORMATS)})")
    check_unique_outputs(images, fmt)
    stats = PredictStats()
    readable = []
    for image, result in zip(images, check_images(images)):
        if isinstance(result, ImageReadError):
            _skip(stats, result)
        else:
            readable.append(image)
    if stats.skipped_images:
        check_skipped(stats, len(images) if max_skipped is None else max_skipped, total=len(images),
                      before=True)
    for image in progress(readable):
        start = time.perf_counter()
        try:
            rgb = read_image(image)   # checked above; fails only if the file changed since
        except ImageReadError as exc:
            _skip(stats, exc)
            continue
        dets = multi_scale_detect(rgb, detect_fn, cfg)
        write_prediction(out_dir, image, dets, fmt)
        stats.seconds += time.perf_counter() - start
        stats.images += 1
        stats.boxes += len(dets)
    return stats


def check_skipped(stats: PredictStats, max_skipped: int, total: int | None = None,
                  before: bool = False) -> None:
    """Fail (UserError) when more than ``max_skipped`` images were skipped as unreadable
    (params ``predict.max_skipped_images``), or when no image could be read at all.
    ``total``: the images of the run (default: skipped + predicted); ``before``: the
    check before predicting (the message says that nothing was predicted)."""
    n = stats.skipped_images
    total = n + stats.images if total is None else total
    after = "; nothing was predicted" if before else ""
    if n > max_skipped:
        raise UserError(f"{n} of {total} images {'are' if before else 'were skipped as'} unreadable, the first: "
                        f"{stats.skipped[0]}; at most {max_skipped} allowed (predict.max_skipped_images)"
                        + after)
    if n and n == total:
        raise UserError(f"no image could be read: all {n} were skipped, the first: {stats.skipped[0]}"
                        + after)


# ---------------------------------------------------------------------------- the stage

def detector_from_params(params: Section, weights: str | Path, cfg: MultiScaleConfig):
    """``(net, method, device, detect_fn)``: the checkpoint's network on the device that
    :func:`dainet.runtime.use_device` picks, detecting against the second-shot priors."""
    priors = PriorSpec.for_shot(params.section("priors"), params.section("model").load(ModelConfig), shot=2)
    device = use_device()
    net, method = load_detector(weights, params.section("model"))
    return net, method, device, make_detect_fn(net, priors, cfg)


def predict(params: Section, weights: str | Path, out_dir: str | Path, fmt: str,
            list_path: str | Path | None = None, images_dir: str | Path | None = None,
            single_scale: bool = False, progress: Callable[[Iterable], Iterable] = iter) -> dict:
    """The `predict` stage: detect faces in the images of ``list_path`` (or of the folder
    ``images_dir``) with the checkpoint ``weights``, write one ``fmt`` file per image
    below ``out_dir``, fail past ``predict.max_skipped_images`` unreadable images, and
    return the stage's metrics (:meth:`PredictStats.metrics` plus method, device)."""
    cfg = params.section("predict").load(MultiScaleConfig)
    max_skipped = cfg.max_skipped_images
    if single_scale:
        cfg = dataclasses.replace(cfg, single_scale=True)
    images = list_images(list_path) if list_path else folder_images(images_dir)
    _, method, device, detect_fn = detector_from_params(params, weights, cfg)
    stats = predict_images(images, detect_fn, cfg, out_dir, fmt, progress=progress, max_skipped=max_skipped)
    check_skipped(stats, max_skipped)   # images that became unreadable after the check
    return {**stats.metrics(cfg.single_scale), "method": method, "device": device}
