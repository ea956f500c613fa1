"""The README's figures are those of the committed run (metrics/ as `dvc repro` wrote them)."""
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def metric(name: str) -> dict:
    return json.loads((ROOT / "metrics" / f"{name}.json").read_text())


def test_readme_figures_are_the_committed_metrics():
    readme = (ROOT / "README.md").read_text()
    wider, dark, train, decomp, pred = (metric(n) for n in ("eval_wider", "eval_dark", "train", "decomp",
                                                            "predict_dark"))
    aps = f"easy **{wider['easy']:.3f}**, medium **{wider['medium']:.3f}**, hard **{wider['hard']:.3f}**"
    assert aps in readme, f"README figures table lacks {aps!r}"
    assert f"| DARK FACE-protocol AP, dark sample ({pred['images']} images) | **{dark['ap']:.3f}** (target 0.30); " \
           f"95 % interval over resampled dark images {dark['ap_ci_low']:.3f}–{dark['ap_ci_high']:.3f} |" in readme
    intervals = ", ".join(f"{wider[f'{s}_ci_low']:.3f}–{wider[f'{s}_ci_high']:.3f}" for s in ("easy", "medium", "hard"))
    assert f"95 % intervals over resampled val images {intervals} |" in readme
    assert (f"best validation loss {train['best_val_loss']:.2f} at iteration {train['best_iteration']}"
            in readme)
    assert f"loss {decomp['first_loss']:.3f} → {decomp['final_loss']:.3f}" in readme


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
