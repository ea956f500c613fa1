"""Seeds x configurations: finished DVC experiments aggregated, with paired bootstrap intervals.

Input: the records of ``dvc exp show --json`` (:func:`runs_from_exp_show`). A run's
*configuration* is its params (``params.yaml``, flattened to ``section.key``) without
``train.seed``; the label names only the keys whose values differ between the runs compared
(``train.method=dsfd``), or ``all`` when none does. Output (:func:`compare`):

- per configuration and AP: mean, standard deviation (ddof 1) and n over seeds;
- per pair of configurations and AP: the mean of the paired differences (same seed, first
  minus second) with a percentile bootstrap 95 % interval over the shared seeds, and the
  Student-t interval beside it (at five seeds the percentile bootstrap is too narrow);
- per run: its APs and, when the evaluation wrote them (``<ap>_ci_low`` / ``<ap>_ci_high``,
  the bootstrap over test images), the evaluation's own interval.

Pure numpy; no Jittor.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple

import numpy as np

from dainet.errors import UserError

SEED_KEY = "train.seed"
PARAMS_FILE = "params.yaml"
# AP name -> (metrics file, key): the evaluate stages' outputs
APS = {
    "clean_easy": ("metrics/eval_wider.json", "easy"),
    "clean_medium": ("metrics/eval_wider.json", "medium"),
    "clean_hard": ("metrics/eval_wider.json", "hard"),
    "dark": ("metrics/eval_dark.json", "ap"),
}
LEVEL = 0.95


@dataclass(frozen=True)
class Run:
    """One finished experiment: flat params, its APs, and the evaluation's intervals if any."""
    name: str
    params: dict[str, Any]
    aps: dict[str, float]
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def seed(self) -> Any:
        return self.params.get(SEED_KEY)


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists are values (made tuples, hashable)."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
    return out


def _run(name: str, data: dict) -> Run | None:
    """The run of one ``dvc exp show`` record's ``data``; None without params or metrics."""
    params = ((data.get("params") or {}).get(PARAMS_FILE) or {}).get("data")
    metrics = data.get("metrics") or {}
    if not params:
        return None
    aps, intervals = {}, {}
    for ap, (path, key) in APS.items():
        values = (metrics.get(path) or {}).get("data") or {}
        if isinstance(values.get(key), (int, float)):
            aps[ap] = float(values[key])
            lo, hi = values.get(f"{key}_ci_low"), values.get(f"{key}_ci_high")
            if isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
                intervals[ap] = (float(lo), float(hi))
    if not aps:
        return None
    return Run(name, flatten(params), aps, intervals)


def runs_from_exp_show(records: list, include_baseline: bool = False) -> tuple[list[Run], list[str]]:
    """``(runs, skipped)`` from the JSON of ``dvc exp show --json``.

    Experiments (queued or not) whose run finished with metrics become :class:`Run` (an
    executor state other than ``success`` -- queued, running, failed -- is left out); the
    workspace is never one; a baseline commit is one only with ``include_baseline``.
    ``skipped`` names the experiments left out (failed, running, or without APs).
    """
    if not isinstance(records, list):
        raise UserError("dvc exp show --json: expected a list of commits")
    runs, skipped = [], []
    for commit in records:
        if not isinstance(commit, dict) or commit.get("rev") == "workspace":
            continue
        if include_baseline and commit.get("data"):
            run = _run(commit.get("name") or commit["rev"][:7], commit["data"])
            (runs.append(run) if run else skipped.append(commit.get("name") or commit["rev"][:7]))
        for exp in commit.get("experiments") or []:
            # a queued or running experiment shows its params beside its baseline's metrics
            state = (exp.get("executor") or {}).get("state", "success")
            for rev in exp.get("revs") or []:
                name = rev.get("name") or exp.get("name") or str(rev.get("rev"))[:7]
                run = _run(name, rev.get("data") or {}) if state == "success" and not rev.get("error") else None
                (runs.append(run) if run else skipped.append(name))
    return runs, skipped


def configurations(runs: Iterable[Run]) -> dict[str, list[Run]]:
    """Runs grouped by configuration, labels in first-seen order; each group sorted by seed.

    Two runs with one configuration and one seed are an error naming both: a re-run of the
    same experiment would count twice.
    """
    runs = list(runs)
    if not runs:
        raise UserError("no finished experiment with evaluation metrics to compare "
                        "(queue some: dvc exp run --queue -S 'train.seed=0,1,2,3,4' ...)")
    keys = sorted(set().union(*(r.params for r in runs)) - {SEED_KEY})
    varying = [k for k in keys if len({repr(r.params.get(k)) for r in runs}) > 1]
    groups: dict[str, list[Run]] = {}
    for r in runs:
        label = ", ".join(f"{k}={_show(r.params.get(k))}" for k in varying) or "all"
        groups.setdefault(label, []).append(r)
    for label, members in groups.items():
        seen: dict[Any, str] = {}
        for r in members:
            if r.seed in seen:
                raise UserError(f"experiments {seen[r.seed]} and {r.name} are the same configuration "
                                f"({label}) with the same {SEED_KEY} {r.seed}: remove one "
                                f"(dvc exp remove {r.name})")
            seen[r.seed] = r.name
        members.sort(key=lambda r: (str(type(r.seed)), r.seed))
    return groups


def _show(value: Any) -> str:
    return "[" + ", ".join(map(str, value)) + "]" if isinstance(value, tuple) else str(value)


def paired_bootstrap(diffs: np.ndarray, replicates: int, rng: np.random.Generator,
                     level: float = LEVEL) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of ``diffs [n]`` and its percentile bootstrap interval
    (``replicates`` resamples of the n differences with replacement); NaN bounds when n < 2."""
    diffs = np.asarray(diffs, np.float64)
    mean = float(diffs.mean())
    if len(diffs) < 2:
        return mean, math.nan, math.nan
    means = diffs[rng.integers(0, len(diffs), size=(replicates, len(diffs)))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return mean, float(lo), float(hi)


class Difference(NamedTuple):
    """Paired differences of one AP between two configurations (first minus second)."""
    diff: float    # mean over the shared seeds
    lo: float      # percentile bootstrap 95 % interval (NaN when n < 2)
    hi: float
    n: int         # shared seeds
    t_lo: float    # Student-t 95 % interval of the mean (NaN when n < 2): wider than the
    t_hi: float    # bootstrap's at few seeds, which the percentile bootstrap underestimates

    @property
    def excludes_zero(self) -> bool:
        """Both intervals on one side of 0 (a difference the seeds support)."""
        return not math.isnan(self.lo) and (min(self.lo, self.t_lo) > 0 or max(self.hi, self.t_hi) < 0)


def t_interval(diffs: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Student-t interval of the mean of ``diffs`` (n - 1 degrees of freedom)."""
    from scipy import stats

    n = len(diffs)
    if n < 2:
        return math.nan, math.nan
    half = stats.t.ppf(0.5 + level / 2, n - 1) * np.std(diffs, ddof=1) / math.sqrt(n)
    return float(np.mean(diffs) - half), float(np.mean(diffs) + half)


@dataclass
class Comparison:
    groups: dict[str, list[Run]]
    summary: dict[str, dict[str, tuple[float, float, int]]]              # config -> ap -> (mean, std, n)
    pairs: dict[tuple[str, str], dict[str, Difference]]                      # (a, b) -> ap -> Difference

    def to_json(self) -> dict[str, float | int | None]:
        """Flat: ``<config>/<ap>/{mean,std,n}``, ``<a> - <b>/<ap>/{diff,ci_low,ci_high,n}``,
        ``runs/<name>/<ap>`` (and ``.../ci_low``, ``.../ci_high``); NaN where undefined (n < 2),
        which :func:`dainet.utils.fileio.write_json` writes as null."""
        out: dict[str, Any] = {}
        for config, aps in self.summary.items():
            for ap, (mean, std, n) in aps.items():
                out.update({f"{config}/{ap}/mean": mean, f"{config}/{ap}/std": std, f"{config}/{ap}/n": n})
        for (a, b), aps in self.pairs.items():
            for ap, d in aps.items():
                pre = f"{a} - {b}/{ap}"
                out.update({f"{pre}/diff": d.diff, f"{pre}/ci_low": d.lo, f"{pre}/ci_high": d.hi,
                            f"{pre}/t_low": d.t_lo, f"{pre}/t_high": d.t_hi, f"{pre}/n": d.n})
        for members in self.groups.values():
            for r in members:
                for ap, v in r.aps.items():
                    out[f"runs/{r.name}/{ap}"] = v
                    if ap in r.intervals:
                        out[f"runs/{r.name}/{ap}/ci_low"], out[f"runs/{r.name}/{ap}/ci_high"] = r.intervals[ap]
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in out.items()}

    def rows(self) -> list[dict[str, Any]]:
        """One row per run (the plot's data): config, seed, run, each AP."""
        return [{"config": config, "seed": r.seed, "run": r.name, **{ap: r.aps.get(ap, math.nan) for ap in APS}}
                for config, members in self.groups.items() for r in members]

    def to_markdown(self) -> str:
        aps = list(APS)
        lines = ["| configuration | n | " + " | ".join(f"{ap} AP mean ± std" for ap in aps) + " |",
                 "|---|---|" + "---|" * len(aps)]
        for config, stats in self.summary.items():
            n = max(s[2] for s in stats.values())
            cells = [f"{m:.3f} ± {s:.3f}" if n > 1 else f"{m:.3f}" for m, s, _ in
                     (stats.get(ap, (math.nan, math.nan, 0)) for ap in aps)]
            lines.append(f"| {config} | {n} | " + " | ".join(cells) + " |")
        if self.pairs:
            lines += ["", "| difference (same seeds) | n | " + " | ".join(f"{ap} AP [95 % CI]" for ap in aps) + " |",
                      "|---|---|" + "---|" * len(aps)]
            for (a, b), stats in self.pairs.items():
                n = max(d.n for d in stats.values())
                cells = []
                for ap in aps:
                    d = stats.get(ap)
                    if d is None:
                        cells.append("")
                        continue
                    sure = " *" if d.excludes_zero else ""
                    cells.append(f"{d.diff:+.3f} [{d.lo:+.3f}, {d.hi:+.3f}]{sure}" if not math.isnan(d.lo)
                                 else f"{d.diff:+.3f}")
                lines.append(f"| {a} − {b} | {n} | " + " | ".join(cells) + " |")
            if any(not math.isnan(d.lo) for stats in self.pairs.values() for d in stats.values()):
                lines += ["", "Brackets: percentile bootstrap 95 % interval over seeds; \\* both it and the "
                          "Student-t 95 % interval exclude 0."]
        return "\n".join(lines) + "\n"


def compare(runs: Iterable[Run], replicates: int = 10000, seed: int = 0) -> Comparison:
    """Aggregate ``runs`` by configuration and difference every pair over shared seeds."""
    if replicates < 1:
        raise UserError(f"replicates must be >= 1, got {replicates}")
    groups = configurations(runs)
    summary = {}
    for config, members in groups.items():
        summary[config] = {}
        for ap in APS:
            v = np.array([r.aps[ap] for r in members if ap in r.aps], np.float64)
            if len(v):
                summary[config][ap] = (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan, len(v))
    rng = np.random.default_rng(seed)
    pairs = {}
    for a, b in itertools.combinations(groups, 2):
        by_seed = {r.seed: r for r in groups[b]}
        shared = [(r, by_seed[r.seed]) for r in groups[a] if r.seed in by_seed]
        if not shared:
            continue
        pairs[(a, b)] = {}
        for ap in APS:
            d = np.array([ra.aps[ap] - rb.aps[ap] for ra, rb in shared if ap in ra.aps and ap in rb.aps])
            if len(d):
                pairs[(a, b)][ap] = Difference(*paired_bootstrap(d, replicates, rng), len(d), *t_interval(d))
    return Comparison(groups, summary, pairs)


def draw_png(comparison: Comparison, size: tuple[int, int] = (360, 300)) -> np.ndarray:
    """uint8 [H, W, 3] RGB: one panel per AP, each run a dot at its configuration's column
    (seeds spread sideways), the configuration's mean a bar."""
    import cv2

    configs = list(comparison.groups)
    pw, ph = size
    panels = []
    for ap in APS:
        img = np.full((ph, pw, 3), 255, np.uint8)
        top, bottom, left = 30, ph - 30, 40
        y = lambda v: int(round(bottom - (bottom - top) * min(max(v, 0.0), 1.0)))  # noqa: E731
        for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
            cv2.line(img, (left, y(tick)), (pw - 10, y(tick)), (225, 225, 225), 1)
            cv2.putText(img, f"{tick:.2f}", (2, y(tick) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (90, 90, 90), 1)
        cv2.putText(img, f"{ap} AP", (left, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
        step = (pw - left - 10) / max(len(configs), 1)
        for c, config in enumerate(configs):
            cx = int(left + step * (c + 0.5))
            members = [r for r in comparison.groups[config] if ap in r.aps]
            for k, r in enumerate(members):
                dx = int((k - (len(members) - 1) / 2) * min(6, step / (len(members) + 1)))
                cv2.circle(img, (cx + dx, y(r.aps[ap])), 3, (40, 90, 200), -1)
            if ap in comparison.summary[config]:
                m = comparison.summary[config][ap][0]
                cv2.line(img, (int(cx - step / 3), y(m)), (int(cx + step / 3), y(m)), (200, 40, 40), 2)
            cv2.putText(img, str(c + 1), (cx - 4, ph - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
        panels.append(img)
    legend = np.full((18 * len(configs) + 10, pw * len(panels), 3), 255, np.uint8)
    for c, config in enumerate(configs):
        cv2.putText(legend, f"{c + 1}: {config} (n={len(comparison.groups[config])})", (8, 18 * (c + 1)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    return np.concatenate([np.concatenate(panels, axis=1), legend], axis=0)


def main(argv: list[str] | None = None) -> int:
    """``python -m dainet compare``: read the experiments through DVC and write the comparison."""
    import argparse
    import json
    import subprocess
    import sys
    from pathlib import Path

    from dainet.utils.fileio import write_image, write_json, write_text

    ap = argparse.ArgumentParser(prog="python -m dainet compare", description=main.__doc__)
    ap.add_argument("--exp-show", help="a saved `dvc exp show --json` (default: run it here)")
    ap.add_argument("--all-commits", action="store_true", help="experiments of every commit, not only HEAD's")
    ap.add_argument("--include-baseline", action="store_true", help="count the baseline commits as runs too")
    ap.add_argument("--replicates", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0, help="the bootstrap's seed")
    ap.add_argument("--out", default="metrics/compare.json")
    ap.add_argument("--table", default="metrics/compare.md")
    ap.add_argument("--plot", default="plots/compare/compare.png")
    ap.add_argument("--csv", default="plots/compare/runs.csv")
    args = ap.parse_args(argv)
    if args.exp_show:
        try:
            records = json.loads(open(args.exp_show).read())
        except (OSError, ValueError) as exc:
            raise UserError(f"{args.exp_show}: not the JSON of dvc exp show --json ({exc})") from None
    else:
        # the dvc of this environment (`.venv/bin/python -m dainet` without an activated venv)
        beside = Path(sys.executable).parent / "dvc"
        cmd = [str(beside) if beside.is_file() else "dvc", "exp", "show", "--json"] + \
            (["--all-commits"] if args.all_commits else [])
        try:
            done = subprocess.run(cmd, capture_output=True, text=True)
        except FileNotFoundError:
            raise UserError("dvc is not installed here: run `make setup` and `source .venv/bin/activate`") from None
        if done.returncode:
            raise UserError(f"{' '.join(cmd)} failed: {done.stderr.strip().splitlines()[-1:] or done.returncode}")
        records = json.loads(done.stdout)
    runs, skipped = runs_from_exp_show(records, args.include_baseline)
    result = compare(runs, args.replicates, args.seed)
    write_json(args.out, result.to_json())
    write_text(args.table, result.to_markdown())
    rows = result.rows()
    write_text(args.csv, ",".join(rows[0]) + "\n" + "".join(
        ",".join(f"{v:.6f}" if isinstance(v, float) else str(v).replace(",", ";") for v in row.values()) + "\n"
        for row in rows))
    write_image(args.plot, draw_png(result))
    print(f"compare: {len(runs)} runs in {len(result.groups)} configurations"
          + (f"; left out (failed, running or not evaluated): {', '.join(skipped)}" if skipped else "")
          + f"\n{result.to_markdown()}")
    return 0
