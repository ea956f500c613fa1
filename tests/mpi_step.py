"""One DSFD training step under Jittor's MPI mode, for tests/test_mpi.py.

    mpirun -np 2 python tests/mpi_step.py OUT          # each rank: its own batch, one step
    python tests/mpi_step.py OUT --reference           # one process: the mean of both ranks' losses

Each rank (or the reference) writes its weights after the step to OUT/<name>.npz.
"""
import sys
from pathlib import Path

import dainet.jt  # noqa: F401  (configures Jittor before it loads)
import jittor as jt
import numpy as np

from dainet.boxes.priors import PriorSpec
from dainet.losses.multibox import MultiBoxLoss
from dainet.models import build_model
from dainet.models.init import init_weights
from dainet.training.optim import clip_grad_norm, make_optimizer
from helpers import paper_model

SIZE, WORLD = 128, 2


def batch(rank: int):
    """Rank ``rank``'s data: a random image and one face box (different per rank)."""
    rng = np.random.default_rng(100 + rank)
    image = rng.random((1, 3, SIZE, SIZE), dtype=np.float32)
    x, y = rng.uniform(0.1, 0.5, 2)
    return jt.array(image), jt.array(np.array([[[x, y, x + 0.3, y + 0.3, 1]]], np.float32))


def loss_of(net, multibox, priors, rank):
    image, targets = batch(rank)
    out = net.forward_train(image)
    l1, c1 = multibox(out["loc1"], out["conf1"], priors[0], targets)
    l2, c2 = multibox(out["loc2"], out["conf2"], priors[1], targets)
    return l1 + c1 + l2 + c2


def main() -> None:
    out, reference = Path(sys.argv[1]), "--reference" in sys.argv
    cfg = paper_model(width=0.125)
    net = init_weights(build_model(cfg, reflectance=False), 0, "kaiming")
    opt = make_optimizer(net, "sgd", 1e-2, 0.1, 0.9, 5e-4)
    multibox = MultiBoxLoss(0.35, 3, (0.1, 0.2))
    steps, sizes = [4, 8, 16, 32, 64, 128], ([8, 16, 32, 64, 128, 256], [16, 32, 64, 128, 256, 512])
    priors = [jt.array(PriorSpec(steps, s, (0.1, 0.2), False, cfg.level_downsampling).priors((SIZE, SIZE)))
              for s in sizes]
    if reference:
        loss = sum(loss_of(net, multibox, priors, r) for r in range(WORLD)) / WORLD
        name = "reference"
    else:
        assert jt.in_mpi and jt.world_size == WORLD, "run under mpirun -np 2"
        loss = loss_of(net, multibox, priors, jt.rank)
        name = f"rank{jt.rank}"
    opt.backward(loss)              # under MPI: gradients averaged over the ranks
    clip_grad_norm(opt, 35.0)
    opt.step()
    np.savez(out / f"{name}.npz", **{k: v.numpy() for k, v in net.state_dict().items()})


if __name__ == "__main__":
    main()
