"""stages/evaluate.py: prediction folders in both formats -> metrics JSON and PR curve CSVs."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from dainet.cli import run
from dainet.evaluation import evaluate_darkface, evaluate_wider, load_wider_ground_truth

from conftest import stage_main
from helpers import TINY_EVENTS, TINY_KEEPS, write_wider_gt



evaluate_main = stage_main("evaluate")


@pytest.fixture()
def params(tmp_path) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text("evaluate:\n  iou_thresh: 0.5\n  thresholds: 1000\n  max_missing_predictions: 0\n"
                    "  bootstrap: 0\n  bootstrap_seed: 0\n  darkface_xyxy_as_xywh: false\n")
    return path


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_wider_round_trip(tmp_path, params):
    write_wider_gt(tmp_path / "gt", TINY_EVENTS, TINY_KEEPS)
    pred = tmp_path / "pred"
    files = {("0--Parade", "0_a"): ["10 10 20 20 0.9", "60 10 20 20 0.8", "200 200 9 9 0.5"],
             ("0--Parade", "0_b"): [],
             ("1--Handshaking", "1_a"): ["0 0 8 8 0.1"]}
    for (event, name), lines in files.items():
        (pred / event).mkdir(parents=True, exist_ok=True)
        (pred / event / f"{name}.txt").write_text("\n".join([f"{name}.jpg", str(len(lines))] + lines) + "\n")

    out, curves = tmp_path / "metrics" / "wider.json", tmp_path / "plots"
    assert evaluate_main(["wider", "--pred", str(pred), "--gt", str(tmp_path / "gt"), "--out", str(out),
                              "--curves-dir", str(curves), "--params", str(params)]) == 0

    metrics = json.loads(out.read_text())
    direct = evaluate_wider({k: np.array([[float(v) for v in ln.split()] for ln in lines]).reshape(-1, 5)
                             for k, lines in files.items()}, load_wider_ground_truth(tmp_path / "gt"))
    assert list(metrics) == ["easy", "medium", "hard", "missing_predictions"]
    assert metrics == pytest.approx({**{s: r.ap for s, r in direct.items()}, "missing_predictions": 0})
    assert 0.0 < metrics["easy"] < 1.0
    for setting in ("easy", "medium", "hard"):
        rows = read_csv(curves / f"pr_wider_{setting}.csv")
        assert list(rows[0]) == ["threshold", "precision", "recall"]
        assert float(rows[-1]["threshold"]) == 0.0
        assert float(rows[-1]["recall"]) == pytest.approx(direct[setting].curve.recall[-1])
        assert float(rows[-1]["precision"]) == pytest.approx(direct[setting].curve.precision[-1])

    # with evaluate.bootstrap each AP gains its interval over resampled images; the APs stay
    # without a bootstrap the replicates file is its header only (the declared output exists)
    reps = tmp_path / "plots" / "bootstrap" / "wider.csv"
    assert evaluate_main(["wider", "--pred", str(pred), "--gt", str(tmp_path / "gt"), "--out", str(out),
                          "--replicates", str(reps), "--params", str(params)]) == 0
    assert reps.read_text() == "replicate,easy,medium,hard\n"
    # with evaluate.bootstrap each AP gains its interval over resampled images; the APs stay
    params.write_text(params.read_text().replace("bootstrap: 0", "bootstrap: 200"))
    assert evaluate_main(["wider", "--pred", str(pred), "--gt", str(tmp_path / "gt"), "--out", str(out),
                          "--replicates", str(reps), "--params", str(params)]) == 0
    boot = json.loads(out.read_text())
    assert list(boot) == ["easy", "medium", "hard", "easy_ci_low", "easy_ci_high", "medium_ci_low",
                          "medium_ci_high", "hard_ci_low", "hard_ci_high", "missing_predictions"]
    # the replicates written are the evaluator's, exactly, and the interval is theirs
    rows = read_csv(reps)
    assert [int(r["replicate"]) for r in rows] == list(range(200))
    again = evaluate_wider({k: np.array([[float(v) for v in ln.split()] for ln in lines]).reshape(-1, 5)
                            for k, lines in files.items()}, load_wider_ground_truth(tmp_path / "gt"), bootstrap=200)
    for setting in ("easy", "medium", "hard"):
        assert boot[setting] == metrics[setting]
        values = np.array([float(r[setting]) for r in rows])
        np.testing.assert_array_equal(values, again[setting].replicates)
        assert (boot[f"{setting}_ci_low"], boot[f"{setting}_ci_high"]) == pytest.approx(
            tuple(np.nanpercentile(values, [2.5, 97.5])), abs=1e-12)
        assert 0.0 <= boot[f"{setting}_ci_low"] < boot[f"{setting}_ci_high"] <= 1.0


def test_darkface_round_trip(tmp_path, params):
    (tmp_path / "labels").mkdir()
    (tmp_path / "pred").mkdir()
    (tmp_path / "labels" / "1.txt").write_text("2\n10 10 40 40\n100 100 120 120\n")
    (tmp_path / "labels" / "2.txt").write_text("1\n5 5 25 25\n")
    (tmp_path / "pred" / "1.txt").write_text("10 10 40 40 0.9\n300 300 320 320 0.7\n")
    (tmp_path / "pred" / "2.txt").write_text("6 6 25 25 0.4\n")

    out, curves = tmp_path / "darkface.json", tmp_path / "plots"
    assert evaluate_main(["darkface", "--pred", str(tmp_path / "pred"), "--labels",
                              str(tmp_path / "labels"), "--out", str(out), "--curves-dir", str(curves),
                              "--params", str(params)]) == 0

    # normalised 1 / 0.6 / 0: recall 1/3 at precision 1, 2/3 at precision 2/3
    assert json.loads(out.read_text()) == pytest.approx({"ap": 1 / 3 + 1 / 3 * 2 / 3, "missing_predictions": 0})
    rows = read_csv(curves / "pr_darkface.csv")
    assert len(rows) == 1000
    assert float(rows[-1]["precision"]) == pytest.approx(2 / 3)
    assert float(rows[-1]["recall"]) == pytest.approx(2 / 3)

    # the optional params key switches to the official tool's box arithmetic (x2 y2 read as
    # w h): a 5-px box inside a 10-px face is a miss, a 105-px box in a 110-px face a hit
    (tmp_path / "labels2").mkdir()
    (tmp_path / "pred2").mkdir()
    (tmp_path / "labels2" / "1.txt").write_text("1\n100 100 110 110\n")
    (tmp_path / "labels2" / "2.txt").write_text("1\n5 5 25 25\n")
    (tmp_path / "pred2" / "1.txt").write_text("100 100 105 105 0.9\n")
    (tmp_path / "pred2" / "2.txt").write_text("5 5 25 25 0.4\n")
    aps = {}
    for as_xywh in (False, True):
        params.write_text("evaluate:\n  iou_thresh: 0.5\n  thresholds: 1000\n  max_missing_predictions: 0\n"
                          "  bootstrap: 0\n  bootstrap_seed: 0\n"
                          f"  darkface_xyxy_as_xywh: {str(as_xywh).lower()}\n")
        assert evaluate_main(["darkface", "--pred", str(tmp_path / "pred2"), "--labels", str(tmp_path / "labels2"),
                              "--out", str(out), "--params", str(params)]) == 0
        aps[as_xywh] = json.loads(out.read_text())["ap"]
    # xyxy: the 0.9 box misses, the 0.4 box hits -> recall 1/2 at precision 1/2; as xywh both hit
    assert aps == pytest.approx({False: 0.5 * 0.5, True: 1.0})


def test_bad_input_exits_2_naming_file_and_line(tmp_path, params, capsys):
    (tmp_path / "labels").mkdir()
    (tmp_path / "pred").mkdir()
    (tmp_path / "labels" / "1.txt").write_text("1\n10 10 40 40\n")
    (tmp_path / "pred" / "1.txt").write_text("10 10 40 40 0.9\n10 10 40 forty 0.5\n")
    argv = ["darkface", "--pred", str(tmp_path / "pred"), "--labels", str(tmp_path / "labels"),
            "--out", str(tmp_path / "m.json"), "--params", str(params)]
    with pytest.raises(SystemExit) as exc:
        run(evaluate_main, argv)
    assert exc.value.code == 2
    assert "1.txt:2: expected 5 finite numbers" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()

    params.write_text("evaluate:\n  iou_thresh: 0.5\n")
    with pytest.raises(SystemExit):
        run(evaluate_main, argv)
    assert "missing key 'evaluate.thresholds'" in capsys.readouterr().err


def _limit(params: Path, n: int) -> Path:
    params.write_text(f"evaluate:\n  iou_thresh: 0.5\n  thresholds: 1000\n  max_missing_predictions: {n}\n"
                      "  bootstrap: 0\n  bootstrap_seed: 0\n  darkface_xyxy_as_xywh: false\n")
    return params


def _run_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        run(evaluate_main, argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    return err[0]


def test_missing_wider_prediction_files_are_counted_and_limited(tmp_path, params, capsys):
    """A lost prediction file used to score silently as an image without detections."""
    write_wider_gt(tmp_path / "gt", TINY_EVENTS, TINY_KEEPS)
    pred = tmp_path / "pred"
    files = {("0--Parade", "0_a"): ["10 10 20 20 0.9", "60 10 20 20 0.8"],
             ("1--Handshaking", "1_a"): ["0 0 8 8 0.1"]}          # 0--Parade/0_b.txt is missing
    for (event, name), lines in files.items():
        (pred / event).mkdir(parents=True, exist_ok=True)
        (pred / event / f"{name}.txt").write_text("\n".join([name, str(len(lines))] + lines) + "\n")
    out = tmp_path / "wider.json"
    argv = ["wider", "--pred", str(pred), "--gt", str(tmp_path / "gt"), "--out", str(out), "--params", str(params)]

    msg = _run_error(argv, capsys)
    assert msg == (f"error: 1 of 3 evaluated images have no prediction file, the first: "
                   f"{pred / '0--Parade' / '0_b.txt'}; the scheme would score them as images without "
                   f"detections (the official tools stop instead); at most 0 allowed "
                   f"(evaluate.max_missing_predictions); predict every image of the set, those without faces "
                   f"included")
    assert not out.exists()

    assert evaluate_main(argv[:-1] + [str(_limit(params, 1))]) == 0
    metrics = json.loads(out.read_text())
    direct = evaluate_wider({k: np.array([[float(v) for v in ln.split()] for ln in lines])
                             for k, lines in files.items()}, load_wider_ground_truth(tmp_path / "gt"))
    assert metrics == pytest.approx({**{s: r.ap for s, r in direct.items()}, "missing_predictions": 1})


def test_missing_darkface_prediction_files_are_counted_and_limited(tmp_path, params, capsys):
    (tmp_path / "labels").mkdir()
    (tmp_path / "pred").mkdir()
    for stem in ("1", "2", "3"):
        (tmp_path / "labels" / f"{stem}.txt").write_text("1\n10 10 40 40\n")
    (tmp_path / "pred" / "1.txt").write_text("10 10 40 40 0.9\n100 100 120 120 0.5\n")
    (tmp_path / "pred" / "4.txt").write_text("10 10 40 40 0.3\n")   # no label: not evaluated, not missing
    out = tmp_path / "dark.json"
    argv = ["darkface", "--pred", str(tmp_path / "pred"), "--labels", str(tmp_path / "labels"),
            "--out", str(out), "--params", str(_limit(params, 1))]
    msg = _run_error(argv, capsys)
    assert msg.startswith(f"error: 2 of 3 evaluated images have no prediction file, the first: "
                          f"{tmp_path / 'pred' / '2.txt'}; ")
    assert "at most 1 allowed (evaluate.max_missing_predictions)" in msg

    assert evaluate_main(argv[:-1] + [str(_limit(params, 2))]) == 0
    # recall 1/3 at precision 1: the two images without a file count as found nothing
    assert json.loads(out.read_text()) == pytest.approx({"ap": 1 / 3, "missing_predictions": 2})


def test_scores_off_scale_and_inverted_boxes_exit_2_naming_file_and_line(tmp_path, params, capsys):
    """One DARK FACE file's scores times 100 used to change AP silently through the set-wide
    min-max normalisation; inverted boxes and negative sizes were scored too."""
    (tmp_path / "labels").mkdir()
    (tmp_path / "pred").mkdir()
    (tmp_path / "labels" / "1.txt").write_text("2\n10 10 40 40\n100 100 120 120\n")
    (tmp_path / "labels" / "2.txt").write_text("1\n5 5 25 25\n")
    (tmp_path / "pred" / "1.txt").write_text("10 10 40 40 0.9\n300 300 320 320 0.7\n")
    (tmp_path / "pred" / "2.txt").write_text("6 6 25 25 40\n")            # 0.4 times 100
    out = tmp_path / "dark.json"
    argv = ["darkface", "--pred", str(tmp_path / "pred"), "--labels", str(tmp_path / "labels"),
            "--out", str(out), "--params", str(params)]
    assert _run_error(argv, capsys) == (
        f"error: {tmp_path / 'pred' / '2.txt'}:1: score 40 is outside [0, 1] (scores are probabilities; "
        f"the evaluation normalises them over the whole set), got '6 6 25 25 40'")
    (tmp_path / "pred" / "2.txt").write_text("6 6 25 25 0.4\n25 6 6 25 0.3\n")
    assert _run_error(argv, capsys) == (f"error: {tmp_path / 'pred' / '2.txt'}:2: inverted box, x2 < x1 or "
                                        f"y2 < y1 (x1 y1 x2 y2 score), got '25 6 6 25 0.3'")
    assert not out.exists()

    write_wider_gt(tmp_path / "gt", TINY_EVENTS, TINY_KEEPS)
    pred = tmp_path / "wider"
    for event, name, lines in (("0--Parade", "0_a", ["10 10 20 20 0.9", "60 10 -20 20 0.8"]),
                               ("0--Parade", "0_b", []), ("1--Handshaking", "1_a", ["0 0 8 8 0.1"])):
        (pred / event).mkdir(parents=True, exist_ok=True)
        (pred / event / f"{name}.txt").write_text("\n".join([name, str(len(lines))] + lines) + "\n")
    argv = ["wider", "--pred", str(pred), "--gt", str(tmp_path / "gt"), "--out", str(out), "--params", str(params)]
    assert _run_error(argv, capsys) == (f"error: {pred / '0--Parade' / '0_a.txt'}:4: negative box width or "
                                        f"height (x y w h score), got '60 10 -20 20 0.8'")
    assert not out.exists()
