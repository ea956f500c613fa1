"""The README's figures are those of the committed run (metrics/ as `dvc repro` wrote them)."""
import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIGURE_METRICS = ("eval_wider", "eval_dark", "train", "decomp", "predict_dark")


def metric(name: str) -> dict:
    return json.loads((ROOT / "metrics" / f"{name}.json").read_text())


def committed_metric(name: str) -> dict | None:
    """``metrics/<name>.json`` as committed at HEAD; None outside a git checkout."""
    try:
        text = subprocess.run(["git", "show", f"HEAD:metrics/{name}.json"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return json.loads(text)


def figure_sources() -> list[tuple[str, dict]]:
    """The metrics the README may quote: the working tree's and, when `make repro` rewrote them
    here (another CPU model gives other digits, docs/numerics.md), the committed ones."""
    here = {n: metric(n) for n in FIGURE_METRICS}
    committed = {n: committed_metric(n) for n in FIGURE_METRICS}
    sources = [("working tree", here)]
    if all(committed.values()) and committed != here:
        sources.append(("HEAD", committed))
    return sources


def assert_readme_quotes(readme: str, wider: dict, dark: dict, train: dict, decomp: dict, pred: dict) -> None:
    aps = f"easy **{wider['easy']:.3f}**, medium **{wider['medium']:.3f}**, hard **{wider['hard']:.3f}**"
    assert aps in readme, f"README figures table lacks {aps!r}"
    assert f"| DARK FACE-protocol AP, dark sample ({pred['images']} images) | **{dark['ap']:.3f}** (target 0.30); " \
           f"95 % interval over resampled dark images {dark['ap_ci_low']:.3f}–{dark['ap_ci_high']:.3f} |" in readme
    intervals = ", ".join(f"{wider[f'{s}_ci_low']:.3f}–{wider[f'{s}_ci_high']:.3f}" for s in ("easy", "medium", "hard"))
    assert f"95 % intervals over resampled val images {intervals} |" in readme
    assert (f"best validation loss {train['best_val_loss']:.2f} at iteration {train['best_iteration']}"
            in readme)
    assert f"loss {decomp['first_loss']:.3f} → {decomp['final_loss']:.3f}" in readme


def test_readme_figures_are_the_committed_metrics():
    readme = (ROOT / "README.md").read_text()
    failures = []
    for where, m in figure_sources():
        try:
            assert_readme_quotes(readme, *(m[n] for n in FIGURE_METRICS))
            return
        except AssertionError as exc:
            failures.append(f"{where}: {exc}")
    pytest.fail("README figures are neither the working tree's nor the committed metrics: " + "; ".join(failures))


def test_readme_links_pages_that_exist():
    readme = (ROOT / "README.md").read_text()
    import re
    pages = set(re.findall(r"\b(docs/[a-z_]+\.md|DEVELOPERS\.md)", readme))
    assert "docs/profiles.md" in pages
    assert not [p for p in pages if not (ROOT / p).is_file()]
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme)
    assert pictures and all((ROOT / p).is_file() for p in pictures)


def test_readme_comparison_is_the_committed_compare_output():
    """The DAI-Net / DSFD tables are metrics/compare.md as `python -m dainet compare` wrote it,
    and that file agrees with metrics/compare.json."""
    readme = (ROOT / "README.md").read_text()
    table = (ROOT / "metrics" / "compare.md").read_text()
    assert table in readme, "README's seeds x methods tables differ from metrics/compare.md"
    numbers = metric("compare")
    for key, value in numbers.items():
        if key.endswith("/mean") and not key.startswith("runs/"):
            config, ap, _ = key.rsplit("/", 2)
            assert f"| {config} | {numbers[f'{config}/{ap}/n']} |" in table
            assert f"{value:.3f}" in table.split(f"| {config} |")[1].splitlines()[0]
