"""Jittor datasets over a training list file (spec §11 format, boxes xywh pixels).

Both datasets yield batches ``(images, targets)``:

* ``images``  float32 ``[N, 3, S, S]``, RGB in [0, 1];
* ``targets`` float32 ``[N, G, 5]`` rows ``(x1, y1, x2, y2, label)``, boxes normalised xyxy,
  label 1 for a face; G is the largest face count in the batch and the padding rows are
  ``(0, 0, 0, 0, -1)``.

:class:`WiderFaceDataset` augments (spec §7) with a generator seeded by
``(seed, epoch, index)`` -- the same sample is produced whatever the worker, the
number of workers or the order of loading, so runs are reproducible and a resumed
run sees the same data. The shuffle order is likewise a function of ``(seed, epoch)``.

Multi-process (MPI) training: Jittor's ``Dataset`` shards by itself under ``mpirun``:
every rank computes the same global order and takes its slice of each global batch.
``batch_size`` here is the batch *per process*; under MPI the Jittor-level batch is
``batch_size * world_size`` so each rank still receives ``batch_size`` samples.

Images are read by :func:`dainet.formats.images.read_image`, the project's one reader
(the ``prepare`` stage has already decoded every listed image with its policy).

Workers (``num_workers > 0``) are processes forked at the first iteration; they keep
the dataset state of that moment, so :meth:`WiderFaceDataset.set_epoch` restarts them.
A :class:`UserError` inside a worker (an image that became unreadable after
``prepare``, no face left after augmentation) would end the run with the worker's
traceback (Jittor prints it and interrupts the main process); instead the worker sends
the message as its batch and iterating raises it as a ``UserError`` in the main
process, as with ``num_workers = 0``.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

import cv2
import numpy as np

from dainet.jt import jt
from jittor.dataset import Dataset  # noqa: E402 (Jittor configured by dainet.jt)

from dainet.boxes.matcher import PAD_LABEL, pad_targets  # noqa: F401 (PAD_LABEL: the padding rows' label)
from dainet.data.augment import Augmenter, AugmentConfig, drop_small, resize_square
from dainet.errors import UserError
from dainet.formats.images import ImageReadError, read_image
from dainet.formats.lists import ListEntry, read_list


class _WorkerError(str):
    """A UserError's message produced in a worker process, sent in place of a sample / batch."""


def collate_detection(samples: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Stack ``(image uint8 [S, S, 3], boxes [n, 4] normalised xyxy)`` samples.

    Returns images float32 [N, 3, S, S] in [0, 1] and targets float32 [N, G, 5]
    (:func:`~dainet.boxes.matcher.pad_targets`: G = max n, at least 1; padding rows are
    boxes 0 with label ``PAD_LABEL``).
    """
    images = np.stack([img for img, _ in samples]).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    targets = pad_targets([np.concatenate([np.asarray(b, np.float32).reshape(-1, 4),
                                           np.ones((len(b), 1), np.float32)], axis=1)
                           for _, b in samples])
    return np.ascontiguousarray(images), targets


class _EpochOrder:
    """Jittor sampler: a permutation fixed by (seed, epoch), optionally starting mid-epoch."""

    def __init__(self, n: int, seed: int, shuffle: bool):
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.epoch, self.start = 0, 0

    def order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.n)

    def __iter__(self):
        return iter(self.order()[self.start:].tolist())

    def __len__(self):
        return self.n - self.start


def _face_boxes_xyxy(entry: ListEntry) -> np.ndarray:
    """[n, 4] float32 pixel xyxy of the entry's faces (label 1) with positive width and height."""
    keep = (entry.labels == 1) & (entry.boxes_xywh[:, 2] > 0) & (entry.boxes_xywh[:, 3] > 0)
    return entry.boxes_xyxy[keep].astype(np.float32)


class _ListImages(Dataset):
    """Entries of a list file, image reading and collation shared by both datasets."""

    def __init__(self, list_file: str | Path, image_size: int, batch_size: int, num_workers: int,
                 drop_last: bool, keep_faceless: bool):
        if batch_size < 1:
            raise UserError(f"batch_size must be at least 1, got {batch_size}")
        # Under MPI Jittor splits each (global) batch across ranks.
        super().__init__(batch_size=batch_size * jt.world_size, shuffle=False, drop_last=drop_last,
                         num_workers=num_workers)
        self.list_file = Path(list_file)
        self.image_size = image_size
        entries = read_list(self.list_file)
        boxes = [_face_boxes_xyxy(e) for e in entries]
        keep = [i for i, b in enumerate(boxes) if keep_faceless or len(b)]
        if not keep:
            raise UserError(f"{self.list_file}: no image with a face (boxes need w > 0 and h > 0)")
        self.images = [entries[i].image for i in keep]
        self.boxes_xyxy = [boxes[i] for i in keep]      # pixels, per image [n, 4]
        self.lines = [entries[i].line for i in keep]   # for messages
        missing = [(ln, p) for ln, p in zip(self.lines, self.images) if not Path(p).is_file()]
        if missing:
            ln, p = missing[0]
            raise UserError(f"{self.list_file}:{ln}: image not found: {p}"
                            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        self.set_attrs(total_len=len(self.images))
        self._owner_pid = os.getpid()   # workers are other processes (see __getitem__)

    @property
    def num_images(self) -> int:
        """Images in use; note ``len()`` of a Jittor dataset is its number of batches per epoch."""
        return len(self.images)

    @property
    def rank(self) -> int:
        return jt.rank

    @property
    def world_size(self) -> int:
        return jt.world_size

    def load_image(self, index: int) -> np.ndarray:
        """uint8 [H, W, 3] RGB of entry ``index``."""
        try:
            return read_image(self.images[index])
        except ImageReadError as exc:
            raise UserError(f"{self.list_file}:{self.lines[index]}: cannot read image {exc.path} "
                            f"({exc.reason})") from None

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(image uint8 [S, S, 3], boxes [n, 4] normalised xyxy)`` of entry ``index``."""
        raise NotImplementedError

    def _worker_main(self, worker_id, buffer, status):
        """A worker process (Jittor's loop) that ignores SIGINT: a Ctrl-C reaches the whole
        process group, and a worker that it ended would signal the main process a second time
        (Jittor's workers send SIGINT to their parent on any exception), interrupting the run
        before it saves its state. The main process stops the run, then the workers."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        super()._worker_main(worker_id, buffer, status)

    def __getitem__(self, index: int):
        if os.getpid() == self._owner_pid:
            return self.sample(int(index))
        try:   # in a worker: a UserError travels to the main process as the batch
            return self.sample(int(index))
        except UserError as exc:
            return _WorkerError(str(exc))

    def collate_batch(self, batch):
        failed = [s for s in batch if isinstance(s, _WorkerError)]
        return str(failed[0]) if failed else collate_detection(batch)

    def __iter__(self):
        for batch in super().__iter__():
            if isinstance(batch, str):   # a worker's UserError (see collate_batch)
                raise UserError(batch)
            yield batch


class WiderFaceDataset(_ListImages):
    """Augmented training samples from a list file; images without a face are left out.

    ``ds[i]`` is ``(image uint8 [S, S, 3] RGB, boxes [n, 4] normalised xyxy)``, n >= 1;
    iterating gives collated batches (see the module docstring). When augmentation
    leaves no face, another image is drawn with the same seeded generator (up to
    ``max_redraws`` times).
    """

    def __init__(self, list_file: str | Path, augment: AugmentConfig, seed: int = 0, batch_size: int = 4,
                 shuffle: bool = True, num_workers: int = 0, drop_last: bool = True, max_redraws: int = 100):
        if seed < 0:
            raise UserError(f"seed must be >= 0, got {seed}")
        super().__init__(list_file, augment.image_size, batch_size, num_workers, drop_last,
                         keep_faceless=False)
        self.augment = Augmenter(augment)
        self.seed, self.epoch, self.max_redraws = seed, 0, max_redraws
        self.sampler = _EpochOrder(len(self.images), seed, shuffle)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> "WiderFaceDataset":
        """Use epoch ``epoch``'s order and augmentation; skip ``start_batch`` batches (resume)."""
        self.epoch = self.sampler.epoch = epoch
        self.sampler.start = start_batch * self.batch_size  # the Jittor-level (global) batch
        self.reset()  # forked workers hold the old epoch: restart them
        return self

    def sample_rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = self.sample_rng(index)
        first = index
        for _ in range(self.max_redraws + 1):
            out = self.augment(self.load_image(index), self.boxes_xyxy[index], rng)
            if out is not None:
                return out
            index = int(rng.integers(len(self.images)))
        raise UserError(f"{self.list_file}:{self.lines[first]}: no face survived augmentation in "
                        f"{self.max_redraws + 1} draws; are most faces below augment.min_face?")


class ValDataset(_ListImages):
    """Deterministic validation samples: the whole image resized to S x S (bilinear).

    Faces below ``min_face`` x ``min_face`` after the resize are dropped, as in
    training; images are kept even when no face is left (all-padding targets).
    """

    def __init__(self, list_file: str | Path, image_size: int, min_face: float, batch_size: int = 4,
                 num_workers: int = 0):
        super().__init__(list_file, image_size, batch_size, num_workers, drop_last=False,
                         keep_faceless=True)
        self.min_face = min_face

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image, boxes = resize_square(self.load_image(index), self.boxes_xyxy[index], self.image_size,
                                     cv2.INTER_LINEAR)
        boxes = drop_small(boxes, self.min_face)
        return image, (boxes / np.float32(self.image_size)).astype(np.float32)
