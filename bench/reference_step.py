"""The published PyTorch DAI-Net training step on the CPU, part by part (run by bench/versus.py).

Runs under a scratch interpreter with torch, never the project's: the project has no torch.
``python bench/reference_step.py REFERENCE_DIR SIZE BATCH STEPS PARTS``, where REFERENCE_DIR is a
checkout of ZPDu/DAI-Net (f9f78ff). The step is train.py's loop body: DarkISP per image, the
RetinexNet on both images, the DAI-Net forward, both shots' MultiBoxLoss, EnhanceLoss, the
reflectance L1+SSIM terms, backward, clip_grad_norm_(35) and SGD. Its ``.cuda()`` calls are made
no-ops so it runs on the CPU; nothing else is changed. Prints one JSON line: median seconds of
each part (``PARTS`` 1) or of the whole step (``PARTS`` 0) after one warm-up step.
"""
from __future__ import annotations

import json
import sys
import time


def main() -> None:
    ref, size, batch, steps, parts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
    sys.path.insert(0, ref)
    sys.argv = sys.argv[:1]  # the reference's modules parse no arguments, but keep argv clean
    import numpy as np
    import torch
    import torch.nn.functional as F
    torch.Tensor.cuda = lambda self, *a, **k: self            # the published code calls .cuda()
    torch.nn.Module.cuda = lambda self, *a, **k: self
    from torchmetrics.functional import structural_similarity_index_measure as ssim
    from data.config import cfg
    from layers.modules import MultiBoxLoss, EnhanceLoss
    from models.factory import build_net
    from models.enhancer import RetinexNet
    from utils.DarkISP import Low_Illumination_Degrading

    torch.manual_seed(0)
    np.random.seed(0)
    net = build_net("train", cfg.NUM_CLASSES, "dark")
    net_enh = RetinexNet()
    net_enh.eval()
    net.train()
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-4, momentum=0.9, weight_decay=5e-4)
    criterion, criterion_enhance = MultiBoxLoss(cfg, True), EnhanceLoss()
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.random((batch, 3, size, size), dtype=np.float32))
    targets = [torch.tensor([[0.1, 0.1, 0.3, 0.3, 1], [0.5, 0.5, 0.9, 0.8, 1]]) for _ in range(batch)]

    def one_step():
        t, t0 = {}, time.perf_counter()

        def lap(name):
            nonlocal t0
            now = time.perf_counter()
            t[name], t0 = now - t0, now
        img_dark = torch.empty(images.shape)
        for i in range(batch):
            img_dark[i], _ = Low_Illumination_Degrading(images[i])
        lap("darkisp")
        R_dark_gt, I_dark = net_enh(img_dark)
        R_light_gt, I_light = net_enh(images)
        lap("decomposition")
        out, out2, loss_mutual = net(img_dark, images, I_dark.detach(), I_light.detach())
        R_dark, R_light, R_dark_2, R_light_2 = out2
        optimizer.zero_grad()
        lap("forward")
        l1, c1 = criterion(out[:3], targets)
        l2, c2 = criterion(out[3:], targets)
        lap("multibox")
        enh = criterion_enhance([R_dark, R_light, R_dark_2, R_light_2, I_dark.detach(), I_light.detach()],
                                images, img_dark) * 0.1
        enh2 = (F.l1_loss(R_dark, R_dark_gt.detach()) + F.l1_loss(R_light, R_light_gt.detach())
                + (1. - ssim(R_dark, R_dark_gt.detach())) + (1. - ssim(R_light, R_light_gt.detach())))
        loss = l1 + c1 + l2 + c2 + enh2 + enh + loss_mutual
        lap("other_losses")
        loss.backward()
        lap("backward")
        torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm=35, norm_type=2)
        optimizer.step()
        lap("clip_step")
        return t

    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        t = one_step()
        t["total"] = time.perf_counter() - t0
        if i:
            times.append(t)
    keys = list(times[0]) if parts else ["total"]
    print(json.dumps({"threads": torch.get_num_threads(), "torch": torch.__version__,
                      **{k: float(np.median([t[k] for t in times])) for k in keys}}))


if __name__ == "__main__":
    main()
