"""Helpers shared by several test files (fixtures live in conftest.py)."""
from __future__ import annotations

import csv
import dataclasses
import os
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import scipy.io
import yaml

from conftest import ROOT
from dainet.boxes.priors import PriorSpec
from dainet.inference.multiscale import MultiScaleConfig
from dainet.models.config import ModelConfig
from dainet.params import load_params

PAPER = ROOT / "params" / "wider.yaml"   # the paper profile: the spec values
# the official WIDER FACE val ground truth: ../shared beside the checkout (a clean clone there
# finds it too), or DAINET_WIDER_VAL_GT; the tests that need it skip without it
REAL_GT = Path(os.environ.get("DAINET_WIDER_VAL_GT", ROOT.parent / "shared" / "data" / "widerface_val_gt"))


@lru_cache(maxsize=None)
def _paper(cls, section: str):
    return load_params(PAPER).section(section).load(cls)


def paper_model(**overrides) -> ModelConfig:
    """The paper network (``params/wider.yaml`` `model`) with ``overrides`` (e.g. ``width=0.5``)."""
    return dataclasses.replace(_paper(ModelConfig, "model"), **overrides)


def paper_predict(**overrides) -> MultiScaleConfig:
    """The spec §10 multi-scale test (``params/wider.yaml`` `predict`) with ``overrides``."""
    return dataclasses.replace(_paper(MultiScaleConfig, "predict"), **overrides)


PAPER_STEPS = (4, 8, 16, 32, 64, 128)
PAPER_SIZES = (16, 32, 64, 128, 256, 512)   # second shot (spec §4)


def paper_feature_sizes(h: int, w: int) -> list[tuple[int, int]]:
    """of1..of6 sizes of the paper backbone, written out: 3x3 pad-1 convs keep the size;
    pool1/pool2 floor, pool3 ('C') ceil, pool4/pool5 floor; extras 3x3 s2 p1: (n-1)//2+1."""
    sizes = []
    h, w = h // 2 // 2, w // 2 // 2
    sizes.append((h, w))
    h, w = -(-h // 2), -(-w // 2)
    sizes.append((h, w))
    for _ in range(2):
        h, w = h // 2, w // 2
        sizes.append((h, w))
    for _ in range(2):
        h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
        sizes.append((h, w))
    return sizes


def prior_spec(steps=PAPER_STEPS, sizes=PAPER_SIZES, clip: bool = False, variances=(0.1, 0.2),
               model: ModelConfig | None = None) -> PriorSpec:
    """The priors of one shot of ``model`` (default: the paper network) without a params file."""
    return PriorSpec(steps=steps, sizes=sizes, variances=variances, clip=clip,
                     downsampling=(model or paper_model()).level_downsampling)


# ------------------------------------------------------------- train stage runs
def train_args(tiny_data, weights, out: Path, params: Path) -> list[str]:
    lists = tiny_data["lists"]
    return ["--train-list", str(lists / "train.txt"), "--val-list", str(lists / "val.txt"),
            "--init", str(weights / "init.ckpt"), "--decomp", str(weights / "decomp.ckpt"),
            "--checkpoints", str(out / "ckpt"), "--out", str(out / "model.ckpt"),
            "--metrics", str(out / "train.json"), "--plots", str(out / "plots"), "--params", str(params)]


# Runs stages/train.py with argv[3:], sending itself signal argv[2] in the middle of
# iteration argv[1] (from 0): the tests of stopping and resuming.
SELF_SIGNAL = """
import importlib.util, os, sys
import dainet.training.loop as loop
from dainet.cli import run
at, signum = int(sys.argv[1]), int(sys.argv[2])
real, calls = loop.total_loss, [0]
def total_loss(terms):  # the signal arrives in the middle of iteration `at` (from 0)
    if calls[0] == at:
        os.kill(os.getpid(), signum)
    calls[0] += 1
    return real(terms)
loop.total_loss = total_loss
spec = importlib.util.spec_from_file_location("train", "stages/train.py")
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
run(mod.main, sys.argv[3:])
"""


def read_rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def run_dir(out: Path) -> Path:
    """The one run folder (``<fingerprint>/``) below a run's ``--checkpoints``."""
    runs = [d for d in (out / "ckpt").iterdir() if d.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


# ------------------------------------------------------------- WIDER ground truth
def write_wider_gt(folder: Path, events: dict, keeps: dict) -> None:
    """A tiny ground-truth folder with the official .mat nesting: {event: {image: boxes}}
    and {setting: {event: {image: 1-based indices}}}."""
    def cells(items):
        out = np.empty((len(items), 1), dtype=object)
        for i, item in enumerate(items):
            out[i, 0] = item
        return out

    names = list(events)
    face = {"event_list": cells([np.array([e]) for e in names]),
            "file_list": cells([cells([np.array([n]) for n in events[e]]) for e in names]),
            "face_bbx_list": cells([cells([np.asarray(b, np.int32).reshape(-1, 4)
                                           for b in events[e].values()]) for e in names])}
    folder.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(folder / "wider_face_val.mat", face)
    for setting, per_event in keeps.items():
        gt_list = cells([cells([np.asarray(per_event[e][n], np.uint8).reshape(-1, 1)
                                for n in events[e]]) for e in names])
        scipy.io.savemat(folder / f"wider_{setting}_val.mat", {**face, "gt_list": gt_list})


TINY_EVENTS = {"0--Parade": {"0_a": [[10, 10, 20, 20], [60, 10, 20, 20]], "0_b": [[5, 5, 40, 40]]},
               "1--Handshaking": {"1_a": [[0, 0, 8, 8]]}}
TINY_KEEPS = {"easy": {"0--Parade": {"0_a": [1], "0_b": [1]}, "1--Handshaking": {"1_a": []}},
              "medium": {"0--Parade": {"0_a": [1, 2], "0_b": [1]}, "1--Handshaking": {"1_a": []}},
              "hard": {"0--Parade": {"0_a": [1, 2], "0_b": [1]}, "1--Handshaking": {"1_a": [1]}}}


# ------------------------------------------------------------- predict / visualize inputs
WIDTH = 0.125
IMAGE_HW = (96, 128)


def write_narrow_params(path: Path, **sections) -> Path:
    """The project's params.yaml at model width 0.125, with section overrides."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"]["width"] = WIDTH
    params["model"]["norm"] = "none"   # the tests' checkpoints are the paper network at WIDTH
    params["predict"]["top_k"] = 5000  # the spec value, as the tests' paper_predict()
    for name, values in sections.items():
        params[name].update(values)
    path.write_text(yaml.safe_dump(params))
    return path


def write_images(folder: Path, names: list[str], hw=IMAGE_HW, seed=0) -> list[Path]:
    """Smooth random colour images (JPEG) with a bright blob, so detections vary per image."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        small = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
        img = cv2.resize(small, hw[::-1], interpolation=cv2.INTER_CUBIC)
        cv2.circle(img, (int(rng.integers(20, hw[1] - 20)), int(rng.integers(20, hw[0] - 20))), 14,
                   (230, 200, 180), -1)
        cv2.imwrite(str(folder / name), img)
        paths.append(folder / name)
    return paths


def write_list_file(path: Path, images: list[Path]) -> Path:
    # the boxes are only there to make it a valid list: predict ignores them
    path.write_text("".join(f"{p} 1 10 10 20 20 1\n" for p in images))
    return path
