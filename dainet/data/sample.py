"""The embedded sample data (stage ``sample``): miniature WIDER FACE and DARK FACE
releases in their official on-disk layouts, generated from a seed::

    <out>/widerface/WIDER_{train,val}/images/<event>/<file>.jpg
    <out>/widerface/wider_face_split/wider_face_{train,val}_bbx_gt.txt
    <out>/widerface/wider_face_split/wider_face_val.mat
    <out>/widerface/eval_tools/ground_truth/wider_face_val.mat, wider_{easy,medium,hard}_val.mat
    <out>/darkface/image/<n>.png, <out>/darkface/label/<n>.txt

Image k of a split is rendered from its own child seed (seed, split, k), so the
files are byte-identical for a given seed, and changing one split's size leaves
the other splits' images unchanged.
"""
from __future__ import annotations

import contextlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np

from dainet.boxes.convert import xywh_to_xyxy
from dainet.data import synth
from dainet.formats.darkface import DarkFaceItem, write_darkface_label
from dainet.formats.wider_mat import write_wider_gt
from dainet.formats.wider_txt import ATTRIBUTES, WiderRecord, write_wider_annotations
from dainet.params import ParamError
from dainet.utils.fileio import write_bytes

# WIDER FACE's first event names; the sample uses the first n_events of them.
EVENT_NAMES = ("Parade", "Handshaking", "Demonstration", "Riot", "Dancing", "Car_Accident",
               "Funeral", "Cheering", "Election_Campain", "Press_Conference", "People_Marching",
               "Meeting", "Group", "Interview", "Traffic", "Stock_Market")
SPLITS = ("train", "val", "dark")       # the child-seed key of each split


@dataclass(frozen=True)
class DifficultyRule:
    """Faces that count at a WIDER difficulty level: valid, at least ``min_height``
    pixels tall, blur and occlusion labels at most the given values (params
    ``sample.difficulty.<level>: [min_height, max_blur, max_occlusion]``)."""
    min_height: float
    max_blur: int
    max_occlusion: int


@dataclass(frozen=True)
class SampleConfig:
    """Params section ``sample``; ``scene`` (:class:`~dainet.data.synth.SceneConfig`, read
    from the same section) is given::

        sample.load(SampleConfig, scene=sample.load(synth.SceneConfig))
    """
    seed: int
    n_train: int
    n_val: int
    n_dark: int
    n_events: int
    jpeg_quality: int
    scene: synth.SceneConfig
    dark: synth.LowLightConfig     # sub-section sample.dark
    # level -> rule, easy to hard. Measured on the real val ground truth: the easy / medium /
    # hard gt_lists hold (nearly) every valid face at least 50 / 30 / 10 px tall. WIDER's own
    # split came from detector recall; size dominates it, and we add blur and occlusion for easy.
    difficulty: dict[str, DifficultyRule]

    def __post_init__(self):
        levels = list(self.difficulty.values())
        for easier, harder in zip(levels, levels[1:]):   # listed easy -> hard: each must contain the previous
            if not (harder.min_height <= easier.min_height and harder.max_blur >= easier.max_blur
                    and harder.max_occlusion >= easier.max_occlusion):
                raise ParamError("difficulty: expected levels from easy to hard with relaxing limits "
                                 "(hard ⊇ medium ⊇ easy)")


def difficulty_masks(boxes_xywh: np.ndarray, attributes: np.ndarray,
                     rules: dict[str, DifficultyRule]) -> dict[str, np.ndarray]:
    """Per level, a bool [n] mask of the faces ([n, 4] xywh boxes, [n, 6] WIDER
    attributes) that count at that level."""
    a = dict(zip(ATTRIBUTES, attributes.T))
    valid = a["invalid"] == 0
    return {level: valid & (boxes_xywh[:, 3] >= r.min_height) & (a["blur"] <= r.max_blur)
            & (a["occlusion"] <= r.max_occlusion) for level, r in rules.items()}


@dataclass
class SampleSet:
    """What :func:`write_sample` wrote."""
    root: Path
    train: list[WiderRecord]
    val: list[WiderRecord]
    dark: list[DarkFaceItem]
    val_keep: dict[str, list[np.ndarray]]   # level -> per val image, bool [n] faces that count


def event_names(n_events: int) -> list[str]:
    """WIDER-style event folder names ``<i>--<Name>``, sorted as WIDER lists them."""
    names = [f"{i}--{EVENT_NAMES[i] if i < len(EVENT_NAMES) else f'Event_{i}'}" for i in range(n_events)]
    return sorted(names)


def image_name(event: str, index: int) -> str:
    """``<event>/<i>_<Name>_<name>_<i>_<index>.jpg``, the WIDER file naming pattern."""
    i, name = event.split("--", 1)
    return f"{event}/{i}_{name}_{name.lower()}_{i}_{index}.jpg"


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(SPLITS.index(split), index)))


def _encode(image_rgb: np.ndarray, ext: str, params: list[int]) -> bytes:
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(image_rgb[..., ::-1]), params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {ext} image")
    return buf.tobytes()


def render_image(cfg: SampleConfig, job: tuple[str, int]) -> tuple[str, int, bytes, synth.Scene]:
    """Image ``k`` of ``split`` as encoded file bytes (jpg, or png for the dark set)
    and its scene (boxes, attributes); depends on (seed, split, k) only."""
    split, k = job
    rng = scene_rng(cfg.seed, split, k)
    scene = synth.render_scene(rng, cfg.scene)
    if split == "dark":
        # PNG level 1: sensor noise barely compresses, higher levels only cost time
        data = _encode(synth.render_low_light(scene.image, rng, cfg.dark), ".png",
                       [cv2.IMWRITE_PNG_COMPRESSION, 1])
    else:
        data = _encode(scene.image, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
    return split, k, data, scene


def write_sample(out: str | Path, cfg: SampleConfig, workers: int = 1,
                 progress: Callable[..., Iterable] | None = None) -> SampleSet:
    """Render and write the sample releases under ``out``.

    ``workers`` > 1 renders in that many processes (same bytes: each image has its
    own seed). ``progress(iterable, total=...)`` wraps the image loop (e.g. ``tqdm``).
    """
    out = Path(out)
    wroot, droot = out / "widerface", out / "darkface"
    events = event_names(cfg.n_events)
    jobs = [(s, k) for s, n in zip(SPLITS, (cfg.n_train, cfg.n_val, cfg.n_dark)) for k in range(n)]
    records: dict[str, list[WiderRecord]] = {"train": [], "val": []}
    dark: list[DarkFaceItem] = []
    with ProcessPoolExecutor(workers) if workers > 1 else contextlib.nullcontext() as pool:
        rendered = (pool.map if pool else map)(partial(render_image, cfg), jobs,
                                               **({"chunksize": 4} if pool else {}))
        if progress is not None:
            rendered = progress(rendered, total=len(jobs))
        for split, k, data, scene in rendered:
            if split == "dark":
                xyxy = xywh_to_xyxy(scene.boxes_xywh).astype(np.float64)
                item = DarkFaceItem(droot / "image" / f"{k + 1}.png",
                                             droot / "label" / f"{k + 1}.txt", xyxy)
                write_bytes(item.image, data)
                write_darkface_label(item.label, item.boxes_xyxy)
                dark.append(item)
            else:
                name = image_name(events[k % len(events)], k)
                write_bytes(wroot / f"WIDER_{split}" / "images" / name, data)
                records[split].append(WiderRecord(name, scene.boxes_xywh.astype(np.float64),
                                                  scene.attributes))
    for split in ("train", "val"):   # WIDER lists images grouped by event
        records[split].sort(key=lambda r: events.index(r.event))
        write_wider_annotations(wroot / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt",
                                records[split])
    masks = [difficulty_masks(r.boxes_xywh, r.attributes, cfg.difficulty) for r in records["val"]]
    keep = {level: [m[level] for m in masks] for level in cfg.difficulty}
    gt = wroot / "eval_tools" / "ground_truth"
    write_wider_gt(gt, records["val"], keep, "val")
    # the official release ships this file in wider_face_split/ too
    write_bytes(wroot / "wider_face_split" / "wider_face_val.mat", (gt / "wider_face_val.mat").read_bytes())
    return SampleSet(out, records["train"], records["val"], dark, keep)
