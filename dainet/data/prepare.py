"""Stage ``prepare``: WIDER FACE annotations and DARK FACE labels -> list files (spec §11).

Writes ``<out>/train.txt`` and ``<out>/val.txt`` (train.txt from a ready-made list
when one is given; both WIDER annotation files must exist otherwise), ``<out>/dark.txt``,
``<out>/missing_images.txt`` (one path a line) and ``<out>/bad_images.txt`` (``path<TAB>reason``
a line: files that exist but cannot be decoded), both empty when nothing is wrong.
Boxes with w <= 0 or h <= 0 are dropped; list image paths are the image files as found
under the given roots. Every listed image is decoded once here
(:func:`dainet.formats.images.check_image`, the policy of the reader training and
prediction use), so a list never holds an image they cannot read; the same check gives
each image's size, against which boxes entirely outside the image (no overlap with
``[0, W) x [0, H)``) are dropped and boxes partly outside are counted, kept as annotated
(the reference's lists keep them; the training crops clip them). Then
images left without a box are dropped. DARK FACE images without a label file are not
listed, only counted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from dainet.boxes.convert import xyxy_to_xywh
from dainet.errors import UserError
from dainet.formats.darkface import DarkFaceItem, read_darkface, unlabelled_darkface_images
from dainet.formats.images import ImageReadError, check_images
from dainet.formats.lists import ListEntry, read_list, write_list
from dainet.formats.wider_txt import WiderRecord, read_wider_annotations
from dainet.utils.fileio import write_text

WIDER_SPLITS = ("train", "val")


@dataclass
class SplitStats:
    """Counts for one list; ``images`` and ``faces`` are what the list holds."""
    images: int = 0
    faces: int = 0
    zero_face_images: int = 0          # annotated with a count of 0
    dropped_degenerate_boxes: int = 0  # w <= 0 or h <= 0
    dropped_outside_boxes: int = 0     # entirely outside the image (no overlap with it)
    partly_outside_boxes: int = 0      # partly outside the image (kept as annotated)
    dropped_empty_images: int = 0      # no box left (zero-face images included)
    missing_images: int = 0            # image file not found (not listed)
    bad_images: int = 0                # image file found but not decodable (not listed)
    unlabelled_images: int = 0         # DARK FACE image without a label file (not listed)

    def as_metrics(self, prefix: str = "") -> dict[str, int]:
        return {prefix + k: v for k, v in vars(self).items()}


@dataclass
class Split:
    name: str
    source: Path                       # annotation / label root / list file it came from
    entries: list[ListEntry]
    stats: SplitStats
    missing: list[str] = field(default_factory=list)
    bad: list[ImageReadError] = field(default_factory=list)
    unlabelled: list[str] = field(default_factory=list)


def wider_paths(wider_root: str | Path, split: str) -> tuple[Path, Path]:
    """(annotation file, image folder) of a WIDER FACE split under its release root."""
    root = Path(wider_root)
    return (root / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt",
            root / f"WIDER_{split}" / "images")


def wider_entries(records: list[WiderRecord], image_dir: str | Path) -> list[ListEntry]:
    """One list entry per record, boxes as annotated (nothing dropped), image paths
    joined onto ``image_dir``."""
    return [ListEntry(str(Path(image_dir) / r.name), r.boxes_xywh.astype(np.float32),
                      np.ones(len(r.boxes_xywh), np.int64)) for r in records]


def darkface_entries(items: list[DarkFaceItem]) -> list[ListEntry]:
    """DARK FACE xyxy labels -> list entries with xywh boxes (w = x2 - x1)."""
    return [ListEntry(str(it.image), xyxy_to_xywh(it.boxes_xyxy).astype(np.float32),
                      np.ones(len(it.boxes_xyxy), np.int64)) for it in items]


def drop_degenerate(entries: list[ListEntry]) -> tuple[list[ListEntry], SplitStats]:
    """Drop boxes with w <= 0 or h <= 0, then entries left without a box."""
    stats = SplitStats(zero_face_images=sum(len(e.boxes_xywh) == 0 for e in entries))
    kept = []
    for e in entries:
        ok = (e.boxes_xywh[:, 2] > 0) & (e.boxes_xywh[:, 3] > 0)
        stats.dropped_degenerate_boxes += int((~ok).sum())
        if ok.any():
            kept.append(ListEntry(e.image, e.boxes_xywh[ok], e.labels[ok], e.line))
        else:
            stats.dropped_empty_images += 1
    stats.images, stats.faces = len(kept), sum(len(e.boxes_xywh) for e in kept)
    return kept, stats


def drop_missing(entries: list[ListEntry], stats: SplitStats) -> tuple[list[ListEntry], list[str]]:
    """Remove entries whose image file does not exist; updates ``stats``."""
    present = [Path(e.image).is_file() for e in entries]
    missing = [e.image for e, ok in zip(entries, present) if not ok]
    kept = [e for e, ok in zip(entries, present) if ok]
    stats.missing_images = len(missing)
    stats.images, stats.faces = len(kept), sum(len(e.boxes_xywh) for e in kept)
    return kept, missing


def drop_bad(entries: list[ListEntry], stats: SplitStats, progress: Callable[[Iterable], Iterable] = iter
             ) -> tuple[list[ListEntry], list[ImageReadError], list[tuple[int, int]]]:
    """Remove entries whose image cannot be decoded; updates ``stats``. Returns the kept
    entries, the errors and the kept images' ``(width, height)``."""
    results = check_images([e.image for e in entries], progress)
    bad = [r for r in results if isinstance(r, ImageReadError)]
    kept = [(e, r) for e, r in zip(entries, results) if not isinstance(r, ImageReadError)]
    stats.bad_images = len(bad)
    stats.images, stats.faces = len(kept), sum(len(e.boxes_xywh) for e, _ in kept)
    return [e for e, _ in kept], bad, [size for _, size in kept]


def fit_to_images(entries: list[ListEntry], sizes: list[tuple[int, int]], stats: SplitStats
                  ) -> list[ListEntry]:
    """Drop the boxes entirely outside their image (no overlap with ``[0, W) x [0, H)``),
    count those partly outside (kept as annotated), then drop the entries left without a
    box; updates ``stats``. Expects boxes with w, h > 0 (:func:`drop_degenerate` first)."""
    kept = []
    for e, (width, height) in zip(entries, sizes):
        x, y, w, h = e.boxes_xywh.astype(np.float64).T
        outside = (x + w <= 0) | (y + h <= 0) | (x >= width) | (y >= height)
        partly = ~outside & ((x < 0) | (y < 0) | (x + w > width) | (y + h > height))
        stats.dropped_outside_boxes += int(outside.sum())
        stats.partly_outside_boxes += int(partly.sum())
        if outside.all():
            stats.dropped_empty_images += 1
        elif outside.any():
            kept.append(ListEntry(e.image, e.boxes_xywh[~outside], e.labels[~outside], e.line))
        else:
            kept.append(e)
    stats.images, stats.faces = len(kept), sum(len(e.boxes_xywh) for e in kept)
    return kept


Progress = Callable[[Iterable, str, int], Iterable]   # (iterable, split name, total) -> iterable


def _no_progress(it: Iterable, name: str, total: int) -> Iterable:
    return it


def _finish(name: str, source: Path, entries: list[ListEntry], check_images: bool,
            progress: Progress = _no_progress) -> Split:
    kept, stats = drop_degenerate(entries)
    missing: list[str] = []
    bad: list[ImageReadError] = []
    if check_images:
        kept, missing = drop_missing(kept, stats)
        n = len(kept)
        kept, bad, sizes = drop_bad(kept, stats, lambda it: progress(it, name, n))
        kept = fit_to_images(kept, sizes, stats)
    return Split(name, source, kept, stats, missing, bad)


def prepare_wider_split(wider_root: str | Path, split: str, check_images: bool = True,
                        progress: Progress = _no_progress) -> Split | None:
    """Parse one WIDER split; ``None`` when its annotation file does not exist."""
    ann, image_dir = wider_paths(wider_root, split)
    if not ann.is_file():
        return None
    return _finish(split, ann, wider_entries(read_wider_annotations(ann), image_dir), check_images,
                   progress)


def prepare_train_list(list_file: str | Path, check_images: bool = True,
                       progress: Progress = _no_progress) -> Split:
    """A ready-made (HLA-Face / DSFD style) list, validated and cleaned like a parsed one."""
    return _finish("train", Path(list_file), read_list(list_file, unique=True), check_images,
                   progress)


def prepare_darkface(darkface_root: str | Path, check_images: bool = True,
                     progress: Progress = _no_progress) -> Split:
    """DARK FACE's labelled images; those without a label file are counted
    (``unlabelled_images``) and named in :attr:`Split.unlabelled`, not listed."""
    root = Path(darkface_root)
    split = _finish("dark", root, darkface_entries(read_darkface(root)), check_images, progress)
    split.unlabelled = [str(p) for p in unlabelled_darkface_images(root)]
    split.stats.unlabelled_images = len(split.unlabelled)
    return split


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def prepare_lists(wider_root: str | Path, darkface_root: str | Path | None, out: str | Path,
                  train_list: str | Path | None = None, max_missing_images: int = 0,
                  max_bad_images: int = 0, progress: Progress = _no_progress) -> dict[str, Split]:
    """Build every list, write ``<out>/missing_images.txt`` and ``<out>/bad_images.txt``,
    fail when more images are missing or undecodable than allowed, then write
    ``<out>/<split>.txt``. ``progress(iterable, split, total)`` wraps each split's image
    check. Returns the splits."""
    out = Path(out)
    parsed = [split for split in WIDER_SPLITS if not (split == "train" and train_list)]
    for split in parsed:   # before any work: the later stages need every list
        ann = wider_paths(wider_root, split)[0]
        if not ann.is_file():
            alternative = " (or set data.train_list to a ready-made list)" if split == "train" else ""
            raise UserError(f"{ann}: WIDER FACE annotation file not found; {split}.txt is made from it"
                            + alternative)
    splits: dict[str, Split] = {}
    if train_list:
        splits["train"] = prepare_train_list(train_list, progress=progress)
    for split in parsed:
        splits[split] = prepare_wider_split(wider_root, split, progress=progress)
    if darkface_root:
        splits["dark"] = prepare_darkface(darkface_root, progress=progress)

    missing = [m for s in splits.values() for m in s.missing]
    bad = [b for s in splits.values() for b in s.bad]
    write_text(out / "missing_images.txt", "".join(f"{m}\n" for m in missing))
    write_text(out / "bad_images.txt", "".join(f"{b.path}\t{b.reason}\n" for b in bad))
    if len(missing) > max_missing_images:
        where = ", ".join(f"{s.stats.missing_images} in {s.source}" for s in splits.values() if s.missing)
        raise UserError(f"{_plural(len(missing), 'image file')} missing ({where}); at most "
                        f"{max_missing_images} allowed (data.max_missing_images); "
                        f"see {out / 'missing_images.txt'}")
    if len(bad) > max_bad_images:
        where = ", ".join(f"{s.stats.bad_images} in {s.source}" for s in splits.values() if s.bad)
        raise UserError(f"{_plural(len(bad), 'image file')} cannot be decoded ({where}), the first: {bad[0]}; "
                        f"at most {max_bad_images} allowed (data.max_bad_images); "
                        f"see {out / 'bad_images.txt'}")
    for s in splits.values():
        if not s.entries:
            raise UserError(f"{s.source}: no image with a valid face is left for {s.name}.txt")
        write_list(out / f"{s.name}.txt", s.entries)
    return splits


def metrics(splits: dict[str, Split]) -> dict[str, int]:
    """Flat metrics: totals over all lists, then ``<split>_<count>`` for each list."""
    total = SplitStats()
    for s in splits.values():
        for k, v in vars(s.stats).items():
            setattr(total, k, getattr(total, k) + v)
    out = total.as_metrics()
    for name, s in splits.items():
        out.update(s.stats.as_metrics(f"{name}_"))
    return out
