"""The train_decomp and train stages on a tiny profile: outputs, resume, NaN guard, DSFD."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY, stage_main, write_params
from helpers import read_rows, run_dir, train_args

pytestmark = pytest.mark.slow


def test_train_decomp_writes_weights_metrics_curve_and_preview(tmp_path, tiny_data):
    from dainet.weights.checkpoint import load_checkpoint
    lists = tiny_data["lists"]
    rc = stage_main("train_decomp")([
        "--train-list", str(lists / "train.txt"), "--val-list", str(lists / "val.txt"),
        "--out", str(tmp_path / "decomp.ckpt"), "--metrics", str(tmp_path / "decomp.json"),
        "--plots", str(tmp_path / "plots"), "--params", str(tiny_data["params"])])
    assert rc == 0
    ck = load_checkpoint(tmp_path / "decomp.ckpt")
    assert ck["pretrained"] is False and "DecomNet.net1_conv0.weight" in ck["model"]
    m = json.loads((tmp_path / "decomp.json").read_text())
    assert m["iterations"] == TINY["train_decomp.iterations"] and np.isfinite(m["final_loss"])
    rows = read_rows(tmp_path / "plots" / "loss.csv")
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3]
    import cv2
    img = cv2.imread(str(tmp_path / "plots" / "preview.png"))
    assert img.shape[0] == 2 * TINY["train_decomp.preview_size"]  # one row per preview image


def test_train_writes_every_output(tmp_path, tiny_data, weights):
    from dainet.weights.checkpoint import load_checkpoint
    assert stage_main("train")(train_args(tiny_data, weights, tmp_path, tiny_data["params"])) == 0
    rows = read_rows(tmp_path / "plots" / "loss.csv")
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4]
    for term in ("loc1", "conf1", "loc2", "conf2", "ref", "enh", "mutual", "total", "lr", "images_per_s"):
        assert all(np.isfinite(float(r[term])) for r in rows), term
    m = json.loads((tmp_path / "train.json").read_text())
    assert m["iterations"] == 4 and m["device"] == "cpu" and m["method"] == "dainet"
    assert np.isfinite(m["best_val_loss"]) and np.isfinite(m["final_total"])
    live = tmp_path / "plots" / "live"
    assert (live / "plots" / "metrics" / "train" / "loc2.tsv").exists()
    pngs = sorted((live / "plots" / "images").glob("*.png"))
    assert [p.name for p in pngs] == ["train_0000002.png", "train_0000004.png"]
    run = run_dir(tmp_path)
    assert (run / "last.ckpt").exists() and (run / "iter_0000002.ckpt").exists() and (run / "best.ckpt").exists()
    assert len((run / "history.jsonl").read_text().splitlines()) == 4
    assert (tmp_path / "plots" / "loss.csv").read_text().count("iteration,") == 1   # one header
    model = load_checkpoint(tmp_path / "model.ckpt")["model"]
    assert "ref.0.weight" in model and "loc_pal2.5.weight" in model


def test_resumed_run_matches_uninterrupted_run(tmp_path, tiny_data, weights):
    from dainet.weights.checkpoint import load_checkpoint
    full, split = tmp_path / "full", tmp_path / "split"
    assert stage_main("train")(train_args(tiny_data, weights, full, tiny_data["params"])) == 0
    args = train_args(tiny_data, weights, split, tiny_data["params"])
    assert stage_main("train")(args + ["--stop-after", "2"]) == 0     # "killed" after a checkpoint
    assert [int(r["iteration"]) for r in read_rows(split / "plots" / "loss.csv")] == [1, 2]
    half = (run_dir(split) / "last.ckpt").read_bytes()
    assert stage_main("train")(args) == 0                             # resumes at iteration 2
    a, b = read_rows(full / "plots" / "loss.csv"), read_rows(split / "plots" / "loss.csv")
    for r in a + b:
        del r["images_per_s"]      # measured, not computed
    assert a == b                  # the same CSV, bit for bit in every computed column
    ka, kb = load_checkpoint(run_dir(full) / "last.ckpt"), load_checkpoint(run_dir(split) / "last.ckpt")
    assert ka["model"].keys() == kb["model"].keys()
    assert all(np.array_equal(ka["model"][k], kb["model"][k]) for k in ka["model"])
    for ga, gb in zip(ka["optimizer"]["groups"], kb["optimizer"]["groups"]):
        assert all(np.array_equal(x, y) for key in ("values", "m") for x, y in zip(ga[key], gb[key]))
    tsv = Path("plots") / "metrics" / "train" / "loc2.tsv"
    assert (split / "plots" / "live" / tsv).read_text() == (full / "plots" / "live" / tsv).read_text()
    # the resumable state does not grow with the logged rows (it used to hold every one of them)
    import zipfile
    meta = [len(zipfile.ZipFile(__import__("io").BytesIO(data)).read("checkpoint.json"))
            for data in (half, (run_dir(split) / "last.ckpt").read_bytes())]
    assert abs(meta[1] - meta[0]) < 200, meta


def test_changed_params_do_not_resume_a_stale_checkpoint(tmp_path, tiny_data, weights, capsys):
    out = tmp_path / "run"
    assert stage_main("train")(train_args(tiny_data, weights, out, tiny_data["params"]) + ["--stop-after", "2"]) == 0
    other = write_params(tmp_path / "p2.yaml", {**TINY, "train.lr": 1e-4})
    assert stage_main("train")(train_args(tiny_data, weights, out, other)) == 0
    assert "starting over" in capsys.readouterr().out
    assert [int(r["iteration"]) for r in read_rows(out / "plots" / "loss.csv")] == [1, 2, 3, 4]
    # each params set has its own folder: going back to the first resumes it
    assert len([d for d in (out / "ckpt").iterdir() if d.is_dir()]) == 2
    assert stage_main("train")(train_args(tiny_data, weights, out, tiny_data["params"])) == 0
    assert "at iteration 2" in capsys.readouterr().out


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(tmp_path, tiny_data, weights):
    from dainet.training.runstate import TrainingDiverged
    from dainet.weights.checkpoint import load_checkpoint
    params = write_params(tmp_path / "p.yaml", {**TINY, "train.lr": 1e30, "train.checkpoint_every": 1,
                                                "train.max_iter": 6})
    with pytest.raises(TrainingDiverged, match=r"non-finite .*iteration \d+.*last good checkpoint") as err:
        stage_main("train")(train_args(tiny_data, weights, tmp_path, params))
    assert "\n" not in str(err.value)
    last = load_checkpoint(run_dir(tmp_path) / "last.ckpt")
    it = last["loop"]["iteration"]
    assert 1 <= it < 6
    assert all(np.isfinite(v).all() for v in last["model"].values())


def test_dsfd_baseline_trains_without_reflectance(tmp_path, tiny_data, weights):
    from dainet.weights.checkpoint import load_checkpoint
    params = write_params(tmp_path / "p.yaml", {**TINY, "train.method": "dsfd", "train.max_iter": 2,
                                                 "train.clean_warmup_iters": 1})
    assert stage_main("train")(train_args(tiny_data, weights, tmp_path, params)) == 0
    rows = read_rows(tmp_path / "plots" / "loss.csv")
    assert set(rows[0]) >= {"loc1", "conf1", "loc2", "conf2"} and "ref" not in rows[0]
    model = load_checkpoint(tmp_path / "model.ckpt")["model"]
    assert not any(k.startswith("ref.") for k in model)
