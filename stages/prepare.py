"""Stage ``prepare``: WIDER FACE annotations and DARK FACE labels -> list files.

    python -m stages.prepare --out data/lists --metrics metrics/prepare.json
        [--wider-root DIR] [--darkface-root DIR] [--train-list FILE] [--params params.yaml]

Roots default to params ``data.wider_root`` / ``data.darkface_root``; a non-empty
``data.train_list`` (or ``--train-list``) is a ready-made list used as train.txt.
Every listed image is decoded once; files that are missing or cannot be decoded are
left out, written to ``missing_images.txt`` / ``bad_images.txt`` and counted, and the
stage fails when there are more than ``data.max_missing_images`` / ``data.max_bad_images``.
Boxes entirely outside their image are dropped, boxes partly outside counted and kept
(``dropped_outside_boxes``, ``partly_outside_boxes``); DARK FACE images without a label file
are not listed but counted (``unlabelled_images``). Every count is in the metrics,
totals and ``<split>_<count>``.

Calls :func:`dainet.data.prepare.prepare_lists`.
"""
from __future__ import annotations

import argparse

from dainet import cli
from dainet.params import load_params


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wider-root", help="WIDER FACE release root (default: data.wider_root)")
    ap.add_argument("--darkface-root", help="DARK FACE root with image/ and label/ (default: data.darkface_root)")
    ap.add_argument("--train-list", help="ready-made train list file (default: data.train_list)")
    ap.add_argument("--out", required=True, help="folder for train.txt, val.txt, dark.txt")
    ap.add_argument("--metrics", required=True, help="metrics JSON file")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)

    p = load_params(args.params).section("data")
    roots = {key: getattr(args, key) or p.value(key, str) for key in ("wider_root", "darkface_root", "train_list")}
    max_missing, max_bad = p.value("max_missing_images", int), p.value("max_bad_images", int)
    # after the params: a bad key fails before numpy, Pillow and the data modules load
    from tqdm import tqdm

    from dainet.data.prepare import metrics, prepare_lists
    from dainet.utils.fileio import write_json

    def progress(it, split, total):
        return tqdm(it, total=total, desc=f"prepare: check {split} images", unit="img", dynamic_ncols=True)

    splits = prepare_lists(
        **roots, out=args.out, max_missing_images=max_missing, max_bad_images=max_bad, progress=progress)
    m = metrics(splits)
    write_json(args.metrics, m)
    print("prepare: " + ", ".join(f"{n}.txt {s.stats.images} images / {s.stats.faces} faces"
                                  for n, s in splits.items())
          + f"; dropped {m['dropped_degenerate_boxes']} degenerate boxes, "
            f"{m['dropped_outside_boxes']} boxes outside their image, "
            f"{m['dropped_empty_images']} empty images; kept {m['partly_outside_boxes']} boxes "
            f"partly outside their image; {m['missing_images']} missing, {m['bad_images']} undecodable, "
            f"{m['unlabelled_images']} unlabelled DARK FACE images (not listed)")
    return 0


if __name__ == "__main__":
    cli.run(main)
