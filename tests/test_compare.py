"""`python -m dainet compare` on fabricated `dvc exp show --json` records (no training)."""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from dainet.cli import run
from dainet.errors import UserError
from dainet.evaluation import compare as cmp


def record(name, method, seed, dark, easy=0.5, lr=1e-3, error=None, ci=None, state=None):
    """One experiment as `dvc exp show --json` nests it."""
    dark_json = {"ap": dark, "missing_predictions": 0}
    if ci:
        dark_json.update(ap_ci_low=ci[0], ap_ci_high=ci[1])
    data = {"params": {"params.yaml": {"data": {"train": {"method": method, "seed": seed, "lr": lr,
                                                          "lr_steps": [1, 2]}}}},
            "metrics": {"metrics/eval_wider.json": {"data": {"easy": easy, "medium": easy - 0.1, "hard": easy - 0.2}},
                        "metrics/eval_dark.json": {"data": dark_json}}}
    return {"revs": [{"rev": f"{abs(hash(name)):040x}"[:40], "name": name, "data": None if error else data,
                      "error": error}], "name": name,
            "executor": None if state is None else {"state": state, "name": "dvc-task"}}


def exp_show(experiments, baseline_dark=0.44):
    base = record("main", "dainet", 0, baseline_dark)["revs"][0]
    return [{"rev": "workspace", "name": None, "data": base["data"], "error": None, "experiments": None},
            {**base, "name": "main", "experiments": experiments}]


GRID = [record(f"dai-{s}", "dainet", s, 0.40 + 0.02 * s, easy=0.6 + 0.02 * s) for s in range(5)] + \
       [record(f"dsfd-{s}", "dsfd", s, 0.40 + 0.02 * s - 0.01 * (s % 2), easy=0.5 + 0.02 * s) for s in range(5)]


def test_runs_are_the_finished_experiments_only():
    # a running experiment shows its own params beside its baseline's metrics: not a run yet
    records = exp_show(GRID + [record("broken", "dsfd", 7, 0.1, error={"msg": "failed"}),
                               record("running", "dsfd", 8, 0.44, state="running"),
                               record("done", "dsfd", 9, 0.2, state="success")])
    runs, skipped = cmp.runs_from_exp_show(records)
    assert [r.name for r in runs] == [f"dai-{s}" for s in range(5)] + [f"dsfd-{s}" for s in range(5)] + ["done"]
    assert skipped == ["broken", "running"]
    assert runs[0].params["train.lr_steps"] == (1, 2) and runs[3].seed == 3
    with_base, _ = cmp.runs_from_exp_show(records, include_baseline=True)
    assert with_base[0].name == "main" and len(with_base) == 12


def test_mean_std_n_per_configuration_labelled_by_what_differs():
    runs, _ = cmp.runs_from_exp_show(exp_show(GRID))
    result = cmp.compare(runs, replicates=2000)
    assert list(result.groups) == ["train.method=dainet", "train.method=dsfd"]   # lr is the same everywhere
    darks = 0.40 + 0.02 * np.arange(5)
    mean, std, n = result.summary["train.method=dainet"]["dark"]
    assert (mean, n) == (pytest.approx(darks.mean()), 5) and std == pytest.approx(darks.std(ddof=1))


def test_differences_are_paired_by_seed_with_a_bootstrap_interval():
    runs, _ = cmp.runs_from_exp_show(exp_show(GRID[::-1]))   # order must not matter: seeds pair
    result = cmp.compare(runs, replicates=4000, seed=1)
    # the seed effect (0.02 per seed) cancels in pairs; what is left is 0 or +0.01
    diff, lo, hi, n, t_lo, t_hi = result.pairs[("train.method=dsfd", "train.method=dainet")]["dark"][:6]
    d = -0.01 * (np.arange(5) % 2)
    assert n == 5 and diff == pytest.approx(d.mean())
    assert -0.01 - 1e-12 <= lo <= diff <= hi <= 1e-12 and hi - lo < 0.0101
    # Student-t: mean -0.004, sd 0.00548, t(0.975, 4) = 2.776 -> half width 0.0068, crossing 0
    assert (t_lo, t_hi) == pytest.approx((-0.004 - 0.0068, -0.004 + 0.0068), abs=1e-4)
    assert not result.pairs[("train.method=dsfd", "train.method=dainet")]["dark"].excludes_zero
    # clean: the seeds spread each configuration (std 0.03), every pair differs by exactly 0.1
    diff, lo, hi, _, t_lo, t_hi = result.pairs[("train.method=dsfd", "train.method=dainet")]["clean_easy"][:6]
    assert diff == pytest.approx(-0.1) and lo == pytest.approx(-0.1) and hi == pytest.approx(-0.1)
    assert t_lo == pytest.approx(-0.1) and t_hi == pytest.approx(-0.1)
    row = next(ln for ln in result.to_markdown().splitlines() if ln.startswith("| train.method=dsfd − "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2].endswith("] *") and not cells[5].endswith("*")      # clean_easy yes, dark no


def test_one_seed_has_no_interval_and_writes_null():
    runs, _ = cmp.runs_from_exp_show(exp_show([record("a", "dainet", 0, 0.4), record("b", "dsfd", 0, 0.3)]))
    result = cmp.compare(runs, replicates=100)
    diff, lo, hi, n, t_lo, _ = result.pairs[("train.method=dainet", "train.method=dsfd")]["dark"][:6]
    assert diff == pytest.approx(0.1) and math.isnan(lo) and math.isnan(hi) and n == 1 and math.isnan(t_lo)
    assert math.isnan(result.summary["train.method=dsfd"]["dark"][1])


def test_the_same_configuration_and_seed_twice_is_refused_naming_both():
    runs, _ = cmp.runs_from_exp_show(exp_show(GRID + [record("again", "dsfd", 2, 0.3)]))
    with pytest.raises(UserError, match=r"experiments dsfd-2 and again are the same configuration "
                                        r"\(train\.method=dsfd\) with the same train\.seed 2"):
        cmp.compare(runs)


def test_the_command_writes_json_table_csv_and_picture(tmp_path, capsys):
    src = tmp_path / "exps.json"
    grid = GRID[:-1] + [record("dsfd-4", "dsfd", 4, 0.47, easy=0.5, ci=(0.41, 0.52))]
    src.write_text(json.dumps(exp_show(grid)))
    out = {k: tmp_path / name for k, name in
           (("out", "c.json"), ("table", "c.md"), ("plot", "c.png"), ("csv", "runs.csv"))}
    with pytest.raises(SystemExit) as exc:
        run(cmp.main, ["--exp-show", str(src), "--replicates", "500"] +
            [a for k, p in out.items() for a in (f"--{k}", str(p))])
    assert exc.value.code == 0
    metrics = json.loads(out["out"].read_text())
    assert metrics["train.method=dsfd/dark/n"] == 5
    assert metrics["runs/dsfd-4/dark/ci_low"] == 0.41 and "runs/dsfd-3/dark/ci_low" not in metrics
    assert set(metrics) >= {"train.method=dainet - train.method=dsfd/dark/ci_high"}
    assert out["table"].read_text().startswith("| configuration | n |")
    header, *rows = out["csv"].read_text().splitlines()
    assert header == "config,seed,run,clean_easy,clean_medium,clean_hard,dark" and len(rows) == 10
    assert cv2.imread(str(out["plot"])).shape[1] == 4 * 360
    assert "10 runs in 2 configurations" in capsys.readouterr().out


def test_nothing_to_compare_is_one_line(tmp_path, capsys):
    src = tmp_path / "exps.json"
    src.write_text(json.dumps(exp_show([])))
    with pytest.raises(SystemExit) as exc:
        run(cmp.main, ["--exp-show", str(src), "--out", str(tmp_path / "c.json")])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and err.startswith("error: no finished experiment") and "\n" not in err
    src.write_text("{not json")
    with pytest.raises(SystemExit):
        run(cmp.main, ["--exp-show", str(src)])
    assert capsys.readouterr().err.startswith(f"error: {src}: not the JSON of dvc exp show --json")


def reps_csv(values: dict[str, np.ndarray]) -> str:
    cols = list(values)
    return "replicate," + ",".join(cols) + "\n" + "".join(
        f"{b}," + ",".join(repr(float(values[c][b])) for c in cols) + "\n" for b in range(len(values[cols[0]])))


def grid_with_replicates(dsfd_shift=0.0, dsfd_params=None):
    """GRID's records (dsfd's dark AP moved by ``dsfd_shift``, its params updated by
    ``dsfd_params``) and a reader of their replicates files. Replicate b is one image resample
    for every run: the test set's luck (0.05 per resample) is shared by all runs, the two
    detectors disagree by 0.004 per resample."""
    rng = np.random.default_rng(0)
    chance, disagree = rng.normal(0, 0.05, 400), rng.normal(0, 0.004, 400)
    records, files = [], {}
    for s in range(5):
        for method in ("dainet", "dsfd"):
            dark = 0.40 + 0.02 * s + ((dsfd_shift - 0.01 * (s % 2)) if method == "dsfd" else 0)
            r = record(f"{method}-{s}", method, s, dark)
            if method == "dsfd" and dsfd_params:
                r["revs"][0]["data"]["params"]["params.yaml"]["data"].update(dsfd_params)
            records.append(r)
            files[r["revs"][0]["rev"]] = {
                "plots/bootstrap/dark.csv": reps_csv({"ap": dark + chance + (disagree if method == "dsfd" else 0)}),
                "plots/bootstrap/wider.csv": "replicate,easy,medium,hard\n"}   # no bootstrap: header only
    runs = cmp.runs_from_exp_show(exp_show(records))[0]
    return cmp.with_replicates(runs, lambda rev, path: files.get(rev, {}).get(path)), disagree


def test_differences_over_the_test_images_pair_replicates_and_need_the_same_images():
    runs, disagree = grid_with_replicates()
    assert runs[0].replicates["dark"].shape == (400,) and "clean_easy" not in runs[0].replicates
    d = cmp.compare(runs, replicates=4000).pairs[("train.method=dainet", "train.method=dsfd")]["dark"]
    seeds = 0.01 * (np.arange(5) % 2)                  # dainet - dsfd per seed
    assert d.diff == pytest.approx(seeds.mean())
    # images: the seeds' mean difference on each resample; the 0.05 luck of the test set cancels
    assert (d.images_lo, d.images_hi) == pytest.approx(tuple(np.percentile(seeds.mean() - disagree, [2.5, 97.5])))
    assert d.images_hi - d.images_lo < 0.02
    # both: wider than either source alone
    assert d.both_lo < min(d.lo, d.images_lo) and d.both_hi > max(d.hi, d.images_hi) - 1e-9
    assert not d.survives_images
    clean = cmp.compare(runs, replicates=100).pairs[("train.method=dainet", "train.method=dsfd")]["clean_easy"]
    assert math.isnan(clean.images_lo)                 # no replicates: no image interval
    assert "| difference, test images resampled | n |" in cmp.compare(runs, replicates=100).to_markdown()

    # a large, steady difference survives both
    runs, _ = grid_with_replicates(dsfd_shift=-0.1)
    result = cmp.compare(runs, replicates=2000)
    d = result.pairs[("train.method=dainet", "train.method=dsfd")]["dark"]
    assert d.both_lo > 0.09 and d.survives_images and "†" in result.to_markdown()
    assert result.to_json()["train.method=dainet - train.method=dsfd/dark/both_low"] == round(d.both_lo, 6)

    # different test images (sample.n_dark differs): the runs do not pair over images
    runs, _ = grid_with_replicates(dsfd_params={"sample": {"n_dark": 300}})
    d = next(iter(cmp.compare(runs, replicates=100).pairs.values()))["dark"]
    assert not math.isnan(d.lo) and math.isnan(d.images_lo) and math.isnan(d.both_lo)


def test_a_bad_replicates_file_is_one_line_naming_run_file_and_line():
    assert cmp.parse_replicates("replicate,ap\n0,0.5\n1,nan\n", "f")["ap"][1] != 0.5
    with pytest.raises(UserError, match=r"^dai-0:plots/x.csv:3: expected replicate 1 and 1 numbers, got '2,0.4'$"):
        cmp.parse_replicates("replicate,ap\n0,0.5\n2,0.4\n", "dai-0:plots/x.csv")
    with pytest.raises(UserError, match=r"^f:1: expected the header"):
        cmp.parse_replicates("ap\n0.5\n", "f")


def test_git_file_reads_a_commit_and_says_none_without_the_file(tmp_path, monkeypatch):
    import subprocess
    monkeypatch.chdir(tmp_path)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git + ["init", "-q"], check=True)
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "a.csv").write_text("replicate,ap\n0,0.5\n")
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-qm", "x"], check=True)
    rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    (tmp_path / "plots" / "a.csv").write_text("changed")
    assert cmp.git_file(rev, "plots/a.csv") == "replicate,ap\n0,0.5\n"
    assert cmp.git_file(rev, "plots/b.csv") is None


def test_the_command_asks_dvc_for_the_baseline_and_reads_each_runs_replicates(tmp_path, monkeypatch, capsys):
    import subprocess
    calls = []
    records = exp_show(GRID)
    reps = {r["revs"][0]["rev"]: f"replicate,ap\n0,{0.4 + i / 100}\n1,{0.41 + i / 100}\n" for i, r in enumerate(GRID)}

    def fake_run(cmd, capture_output=True, text=True, **kw):
        calls.append(cmd)
        if cmd[:2] == ["git", "show"]:
            rev, path = cmd[2].split(":", 1)
            found = reps.get(rev) if path == "plots/bootstrap/dark.csv" else None
            return subprocess.CompletedProcess(cmd, 0 if found else 128, found or "", "")
        return subprocess.CompletedProcess(cmd, 0, json.dumps(records), "")
    monkeypatch.setattr(subprocess, "run", fake_run)
    out = tmp_path / "c.json"
    with pytest.raises(SystemExit) as exc:
        run(cmp.main, ["--rev", "abc1234", "--replicates", "200", "--out", str(out), "--table", str(tmp_path / "c.md"),
                       "--plot", str(tmp_path / "c.png"), "--csv", str(tmp_path / "r.csv")])
    assert exc.value.code == 0
    assert calls[0][-5:] == ["exp", "show", "--json", "--rev", "abc1234"]
    assert sum(c[:2] == ["git", "show"] for c in calls) == 2 * len(GRID)   # both replicates files of each run
    assert "train.method=dainet - train.method=dsfd/dark/images_low" in json.loads(out.read_text())
    src = tmp_path / "bad.json"
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 0, "WARNING: x\n", ""))
    with pytest.raises(SystemExit):
        run(cmp.main, ["--out", str(src)])
    assert "printed no JSON" in capsys.readouterr().err
