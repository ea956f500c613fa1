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
  the bootstrap over test images), the evaluation's own interval;
- per pair, when both configurations were evaluated on the same images (equal ``sample.*``,
  ``data.*`` and ``evaluate.*`` params) and their runs' bootstrap replicates can be read
  (``plots/bootstrap/*.csv``, written by the evaluate stages): the interval of the mean paired
  difference over the test images (seeds fixed, the images resampled: replicate b of every run
  is the same resample) and over seeds and images together (both resampled at once). The first
  says whether the difference is more than the chance of this test set, the second whether it
  survives both the seeds and the test set.

Pure numpy; no Jittor.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, NamedTuple

import numpy as np

from dainet.errors import UserError
from dainet.evaluation.common import LEVEL, percentile_interval

SEED_KEY = "train.seed"
PARAMS_FILE = "params.yaml"
# AP name -> (metrics file, key): the evaluate stages' outputs
APS = {
    "clean_easy": ("metrics/eval_wider.json", "easy"),
    "clean_medium": ("metrics/eval_wider.json", "medium"),
    "clean_hard": ("metrics/eval_wider.json", "hard"),
    "dark": ("metrics/eval_dark.json", "ap"),
}
# AP name -> (bootstrap replicates file, column): the evaluate stages' --replicates
REPLICATES = {
    "clean_easy": ("plots/bootstrap/wider.csv", "easy"),
    "clean_medium": ("plots/bootstrap/wider.csv", "medium"),
    "clean_hard": ("plots/bootstrap/wider.csv", "hard"),
    "dark": ("plots/bootstrap/dark.csv", "ap"),
}
# params that define the test images and their resamples: runs pair over images only if equal
TEST_SET_PREFIXES = ("sample.", "data.", "evaluate.")


@dataclass(frozen=True)
class Run:
    """One finished experiment: flat params, its APs, and the evaluation's intervals and
    bootstrap replicates (``ap -> [B]``) if any; ``rev`` its commit."""
    name: str
    params: dict[str, Any]
    aps: dict[str, float]
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    rev: str | None = None
    replicates: dict[str, np.ndarray] = field(default_factory=dict)

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


def _run(name: str, data: dict, rev: str | None = None) -> Run | None:
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
    return Run(name, flatten(params), aps, intervals, rev)


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
            run = _run(commit.get("name") or commit["rev"][:7], commit["data"], commit.get("rev"))
            (runs.append(run) if run else skipped.append(commit.get("name") or commit["rev"][:7]))
        for exp in commit.get("experiments") or []:
            # a queued or running experiment shows its params beside its baseline's metrics
            state = (exp.get("executor") or {}).get("state", "success")
            for rev in exp.get("revs") or []:
                name = rev.get("name") or exp.get("name") or str(rev.get("rev"))[:7]
                ok = state == "success" and not rev.get("error")
                run = _run(name, rev.get("data") or {}, rev.get("rev")) if ok else None
                (runs.append(run) if run else skipped.append(name))
    return runs, list(dict.fromkeys(skipped))   # a running experiment may show more than one rev


def parse_replicates(text: str, source: str) -> dict[str, np.ndarray]:
    """The columns of an evaluate stage's replicates CSV (``replicate,<ap>...``) as float64
    arrays, the ``replicate`` column left out; UserError naming ``source`` and the line."""
    lines = text.splitlines()
    if not lines:
        raise UserError(f"{source}: empty, expected the header replicate,<ap>...")
    header = lines[0].split(",")
    if header[0] != "replicate":
        raise UserError(f"{source}:1: expected the header replicate,<ap>..., got {lines[0]!r}")
    rows = []
    for k, line in enumerate(lines[1:], start=2):
        cells = line.split(",")
        try:
            if len(cells) != len(header) or int(cells[0]) != k - 2:
                raise ValueError
            rows.append([float(c) for c in cells[1:]])
        except ValueError:
            raise UserError(f"{source}:{k}: expected replicate {k - 2} and {len(header) - 1} numbers, "
                            f"got {line!r}") from None
    values = np.array(rows, np.float64).reshape(len(rows), len(header) - 1)
    return {name: values[:, j] for j, name in enumerate(header[1:])}


def with_replicates(runs: Iterable[Run], read: Callable[[str, str], str | None]) -> list[Run]:
    """``runs`` with their bootstrap replicates: ``read(rev, path)`` gives a file's text at a
    run's commit, or None where it has none (a run from before the replicates existed)."""
    out = []
    for r in runs:
        files = {path: read(r.rev, path) if r.rev else None for path in dict.fromkeys(p for p, _ in REPLICATES.values())}
        tables = {path: parse_replicates(text, f"{r.name}:{path}") for path, text in files.items() if text is not None}
        reps = {ap: tables[path][column] for ap, (path, column) in REPLICATES.items()
                if column in tables.get(path, {}) and len(tables[path][column])}
        out.append(replace(r, replicates=reps))
    return out


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
    return (mean, *percentile_interval(means, level))


def image_intervals(diffs: np.ndarray, replicates: int, rng: np.random.Generator,
                    level: float = LEVEL) -> tuple[float, float, float, float]:
    """``(images_lo, images_hi, both_lo, both_hi)`` from ``diffs [n, B]``: seed i's paired
    difference on image resample b (replicate b of both runs, the same resample; a NaN column
    is a resample without a counted face and is left out).

    Images: the mean over the n seeds of each column, its percentile interval over the B
    resamples. Both: ``replicates`` draws of n seeds with replacement and one resample each,
    the mean difference of the drawn seeds on it (NaN bounds for both when n < 2).
    """
    diffs = np.asarray(diffs, np.float64)
    diffs = diffs[:, ~np.isnan(diffs).any(axis=0)]
    n, b = diffs.shape
    if not b:
        return math.nan, math.nan, math.nan, math.nan
    images = percentile_interval(diffs.mean(axis=0), level)
    if n < 2:
        return (*images, math.nan, math.nan)
    seeds = rng.integers(0, n, size=(replicates, n))
    columns = rng.integers(0, b, size=(replicates, 1))
    return (*images, *percentile_interval(diffs[seeds, columns].mean(axis=1), level))


class Difference(NamedTuple):
    """Paired differences of one AP between two configurations (first minus second)."""
    diff: float    # mean over the shared seeds
    lo: float      # percentile bootstrap 95 % interval (NaN when n < 2)
    hi: float
    n: int         # shared seeds
    t_lo: float    # Student-t 95 % interval of the mean (NaN when n < 2): wider than the
    t_hi: float    # bootstrap's at few seeds, which the percentile bootstrap underestimates
    images_lo: float = math.nan   # percentile interval over resampled test images, seeds fixed
    images_hi: float = math.nan   # (NaN: not evaluated on the same images, or no replicates)
    both_lo: float = math.nan     # seeds and test images resampled together
    both_hi: float = math.nan

    @property
    def excludes_zero(self) -> bool:
        """Both intervals on one side of 0 (a difference the seeds support)."""
        return not math.isnan(self.lo) and (min(self.lo, self.t_lo) > 0 or max(self.hi, self.t_hi) < 0)

    @property
    def survives_images(self) -> bool:
        """The seeds-and-images interval on one side of 0 (and the seeds' own, above)."""
        return self.excludes_zero and not math.isnan(self.both_lo) and (self.both_lo > 0 or self.both_hi < 0)


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
                if not math.isnan(d.images_lo):
                    out.update({f"{pre}/images_low": d.images_lo, f"{pre}/images_high": d.images_hi,
                                f"{pre}/both_low": d.both_lo, f"{pre}/both_high": d.both_hi})
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
        lines += self._images_markdown(aps)
        return "\n".join(lines) + "\n"

    def _images_markdown(self, aps: list[str]) -> list[str]:
        """The differences' intervals over the test images, where the runs were paired over them."""
        pairs = {k: v for k, v in self.pairs.items() if any(not math.isnan(d.images_lo) for d in v.values())}
        if not pairs:
            return []
        lines = ["", "| difference, test images resampled | n | " +
                 " | ".join(f"{ap} AP [images] [seeds and images]" for ap in aps) + " |",
                 "|---|---|" + "---|" * len(aps)]
        for (a, b), stats in pairs.items():
            cells = []
            for ap in aps:
                d = stats.get(ap)
                if d is None or math.isnan(d.images_lo):
                    cells.append("")
                    continue
                both = f" [{d.both_lo:+.3f}, {d.both_hi:+.3f}]" if not math.isnan(d.both_lo) else ""
                cells.append(f"{d.diff:+.3f} [{d.images_lo:+.3f}, {d.images_hi:+.3f}]{both}"
                             + (" †" if d.survives_images else ""))
            lines.append(f"| {a} − {b} | {max(d.n for d in stats.values())} | " + " | ".join(cells) + " |")
        return lines + ["", "First brackets: percentile interval over the bootstrap resamples of the test "
                        "images, seeds fixed (the same resample for every run); second: seeds and images "
                        "resampled together; † the second and both seed intervals exclude 0."]


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
        same_images = all(ra.params.get(k) == rb.params.get(k) for ra, rb in shared
                          for k in set(ra.params) | set(rb.params) if k.startswith(TEST_SET_PREFIXES))
        for ap in APS:
            both = [(ra, rb) for ra, rb in shared if ap in ra.aps and ap in rb.aps]
            if not both:
                continue
            d = np.array([ra.aps[ap] - rb.aps[ap] for ra, rb in both])
            diff = Difference(*paired_bootstrap(d, replicates, rng), len(d), *t_interval(d))
            reps = [(ra.replicates.get(ap), rb.replicates.get(ap)) for ra, rb in both]
            if same_images and all(x is not None and y is not None for x, y in reps) \
                    and len({len(x) for pair in reps for x in pair}) == 1:
                diff = diff._replace(**dict(zip(("images_lo", "images_hi", "both_lo", "both_hi"),
                                                image_intervals(np.array([x - y for x, y in reps]),
                                                                replicates, rng))))
            pairs[(a, b)][ap] = diff
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


def git_file(rev: str, path: str) -> str | None:
    """The text of ``path`` at commit ``rev`` (an experiment's commit: the evaluate stages'
    replicates are git-tracked outputs), or None where the commit has no such file."""
    import subprocess

    done = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


def main(argv: list[str] | None = None) -> int:
    """``python -m dainet compare``: read the experiments through DVC and write the comparison."""
    import argparse
    import json
    import subprocess
    import sys
    from pathlib import Path

    from dainet.evaluation.common import write_csv
    from dainet.utils.fileio import write_image, write_json, write_text

    ap = argparse.ArgumentParser(prog="python -m dainet compare", description=main.__doc__)
    ap.add_argument("--exp-show", help="a saved `dvc exp show --json` (default: run it here)")
    ap.add_argument("--all-commits", action="store_true", help="experiments of every commit, not only HEAD's")
    ap.add_argument("--rev", help="the experiments of this baseline commit (default HEAD)")
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
            (["--all-commits"] if args.all_commits else []) + (["--rev", args.rev] if args.rev else [])
        try:
            done = subprocess.run(cmd, capture_output=True, text=True)
        except FileNotFoundError:
            raise UserError("dvc is not installed here: run `make setup` and `source .venv/bin/activate`") from None
        if done.returncode:
            raise UserError(f"{' '.join(cmd)} failed: {done.stderr.strip().splitlines()[-1:] or done.returncode}")
        try:
            records = json.loads(done.stdout)
        except ValueError as exc:
            raise UserError(f"{' '.join(cmd)} printed no JSON ({exc}): {done.stdout.strip()[:200]!r}") from None
    runs, skipped = runs_from_exp_show(records, args.include_baseline)
    if not args.exp_show:
        runs = with_replicates(runs, git_file)
    result = compare(runs, args.replicates, args.seed)
    write_json(args.out, result.to_json())
    write_text(args.table, result.to_markdown())
    rows = result.rows()
    write_csv(args.csv, [{k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()} for row in rows])
    write_image(args.plot, draw_png(result))
    print(f"compare: {len(runs)} runs in {len(result.groups)} configurations"
          + (f"; left out (failed, running or not evaluated): {', '.join(skipped)}" if skipped else "")
          + f"\n{result.to_markdown()}")
    return 0
