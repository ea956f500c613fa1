"""What a larger dark test set buys: the comparison of the finished experiments, with each
run's dark AP evaluated on the first N dark images, for several N.

The sample renders dark image k from (seed, split, k) alone, so the first N images of the
300-image set are exactly the N-image set; each run's predictions are read back from DVC's
cache (its experiment commit's ``dvc.lock``) and evaluated on the first N labels with the
evaluate stage's bootstrap (``evaluate.bootstrap`` resamples, ``evaluate.bootstrap_seed``).
Printed per N: each configuration's mean, std and its runs' mean interval width; each pair's
paired difference with its interval over seeds, over test images, and over both
(:mod:`dainet.evaluation.compare`). No training, no prediction.

    python bench/test_set_size.py [--sizes 100 200 300] [--rev BASELINE]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml

from dainet.evaluation import evaluate_darkface, read_darkface_labels, read_darkface_predictions
from dainet.evaluation.compare import compare, git_file, runs_from_exp_show
from dainet.params import load_params

CACHE = Path(".dvc/cache/files/md5")


def cached(md5: str) -> Path:
    return CACHE / md5[:2] / md5[2:]


def predictions_of(rev: str, stage: str = "predict@dark") -> dict:
    """The dark predictions of the experiment commit ``rev``, read from DVC's cache."""
    lock = yaml.safe_load(git_file(rev, "dvc.lock"))
    out = lock["stages"][stage]["outs"][0]
    manifest = json.loads(cached(out["md5"]).read_text())
    with tempfile.TemporaryDirectory() as tmp:
        for entry in manifest:
            (Path(tmp) / entry["relpath"]).write_bytes(cached(entry["md5"]).read_bytes())
        return read_darkface_predictions(tmp)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 200, 300])
    ap.add_argument("--rev", help="the experiments of this baseline commit (default HEAD)")
    ap.add_argument("--labels", default="data/sample/darkface/label")
    args = ap.parse_args()
    ev = load_params("params.yaml").section("evaluate")
    boot, seed = ev.value("bootstrap", int), ev.value("bootstrap_seed", int)
    cmd = [str(Path(sys.executable).parent / "dvc"), "exp", "show", "--json"] + (["--rev", args.rev] if args.rev else [])
    runs, _ = runs_from_exp_show(json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout))
    labels = read_darkface_labels(args.labels)
    preds = {r.name: predictions_of(r.rev) for r in runs}
    for n in args.sizes:
        subset = {s: labels[s] for s in sorted(labels, key=int)[:n]}
        sized = []
        for r in runs:
            res = evaluate_darkface({s: p for s, p in preds[r.name].items() if s in subset}, subset,
                                    bootstrap=boot, seed=seed)
            sized.append(replace(r, aps={"dark": res.ap}, intervals={"dark": res.ci},
                                 replicates={"dark": res.replicates}, params={**r.params, "sample.n_dark": n}))
        result = compare(sized)
        print(f"\n## first {n} dark images ({sum(len(v) for v in subset.values())} faces)\n")
        print("| configuration | n | dark AP mean ± std | mean width of a run's interval |\n|---|---|---|---|")
        for config, members in result.groups.items():
            mean, std, k = result.summary[config]["dark"]
            width = np.mean([r.intervals["dark"][1] - r.intervals["dark"][0] for r in members])
            print(f"| {config} | {k} | {mean:.3f} ± {std:.3f} | {width:.3f} |")
        print("\n| difference | seeds (bootstrap) | seeds (t) | test images | seeds and images |\n|---|---|---|---|---|")
        for (a, b), d in result.pairs.items():
            d = d["dark"]
            print(f"| {a} − {b} | {d.diff:+.3f} [{d.lo:+.3f}, {d.hi:+.3f}] | [{d.t_lo:+.3f}, {d.t_hi:+.3f}] "
                  f"| [{d.images_lo:+.3f}, {d.images_hi:+.3f}] | [{d.both_lo:+.3f}, {d.both_hi:+.3f}] |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
