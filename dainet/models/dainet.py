"""DAI-Net and its plain DSFD baseline (spec §2, §3, §5).

One class, two variants: ``DAINet(cfg, reflectance=True)`` is DAI-Net (DSFD plus the
reflectance decoder ``ref`` and the interchange / re-decomposition of training);
``reflectance=False`` is the DSFD baseline, without ``ref`` (so its state dict has no
``ref.*`` keys). Parameter names are those of the published checkpoints (spec §13).

``model.backbone`` picks the VGG16 of spec §2 (``vgg.*``, with the L2Norm layers of
of1..of3 and ef1..ef3) or a ResNet (``resnet.*``, :mod:`dainet.models.resnet`): the
published ``DSFD_resnet.py``, whose first shot sees of1..of4 = layer1..layer4 raw and whose
second shot sees ef1..ef6 without any L2Norm. Extras, FPN, FEM and heads are the same
modules on other channel counts. DAI-Net exists on the VGG only (its reflectance decoder
reads VGG's conv1_2 features; the published code has no DAI-Net on a ResNet).

Shapes: images [N, 3, H, W] RGB in [0, 1]; per shot ``loc`` [N, P, 4] (encoded offsets
against the priors of §4, cxcywh) and ``conf`` [N, P, num_classes] (logits), the P priors
in level order, each level's cells row-major.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext

from dainet.jt import jt, nn

from dainet.errors import UserError
from dainet.models.config import ModelConfig
from dainet.models.kernels import UpsampleNearest2x
from dainet.models.layers import FEM, L2Norm, conv2d, conv_relu, run_layers, upsample_product
from dainet.models.resnet import ResNet
from dainet.models.vgg import extra_layers, vgg_layers
from dainet.utils.numerics import mean64

SOURCE_NAMES = ("of1", "of2", "of3", "of4", "of5", "of6")
ENHANCED_NAMES = ("ef1", "ef2", "ef3", "ef4", "ef5", "ef6")


def _head(channels: list[int], out_per_cell: int) -> nn.ModuleList:
    return nn.ModuleList([nn.Conv2d(c, out_per_cell, 3, padding=1) for c in channels])


def _apply_head(convs: nn.ModuleList, sources: list[jt.Var], out_per_cell: int) -> jt.Var:
    """Run one conv per source, NCHW -> NHWC, flatten and concatenate: [N, P, out_per_cell]."""
    n = sources[0].shape[0]
    return jt.concat([conv(s).permute(0, 2, 3, 1).reshape(n, -1, out_per_cell)
                      for conv, s in zip(convs, sources)], dim=1)


def reflectance_decoder(in_channels: int, mid_channels: int) -> nn.Sequential:
    """``ref``: conv 3x3, ReLU, nearest x2, conv 3x3 -> 3, Sigmoid (names ``ref.0.*``, ``ref.3.*``)."""
    return nn.Sequential(nn.Conv2d(in_channels, mid_channels, 3, padding=1), nn.ReLU(),
                         UpsampleNearest2x(),
                         nn.Conv2d(mid_channels, 3, 3, padding=1), nn.Sigmoid())


def global_pool(x: jt.Var) -> jt.Var:
    """[N, C, H, W] -> [N, C] spatial mean (the mutual-alignment descriptor g of §5)."""
    return mean64(x, dims=(2, 3))


class DAINet(nn.Module):
    def __init__(self, cfg: ModelConfig, reflectance: bool = True):
        self.cfg = cfg
        self.reflectance = reflectance
        src = cfg.source_channels                      # of1..of6
        s1, s2, s3 = cfg.l2norm_scales
        eps = cfg.l2norm_eps

        if reflectance and cfg.resnet:
            raise ValueError(f"DAI-Net needs the vgg backbone, got {cfg.backbone} (the params "
                             f"schema refuses the combination)")
        nk = dict(norm=cfg.norm, group_size=cfg.norm_group_size)   # "none" in the paper profile
        if cfg.resnet:   # its own BatchNorm in every block (the published architecture)
            self.resnet = ResNet(cfg.backbone, cfg.ch)
            self._stages = ()
        else:
            self.vgg = nn.Sequential(*vgg_layers(cfg.vgg_layers, cfg.ch(cfg.fc_channels), cfg.fc_dilation, **nk))
            taps = cfg.taps
            starts = (0, taps.shallow + 1) + tuple(t + 1 for t in taps.sources[:-1])
            ends = (taps.shallow,) + taps.sources
            self._stages = tuple(zip(starts, ends))    # x_shallow, of1, of2, of3, of4 (inclusive)
        if cfg.norm_scope == "backbone":
            nk = dict(norm="none")

        if not cfg.resnet:
            self.L2Normof1 = L2Norm(src[0], s1, eps)
            self.L2Normof2 = L2Norm(src[1], s2, eps)
            self.L2Normof3 = L2Norm(src[2], s3, eps)
        self.extras = nn.ModuleList(extra_layers([cfg.ch(c) for c in cfg.extras_cfg], src[3], **nk))

        # top-down: [0] of6 -> conv7 (same width), then [k] maps source 6-k+1 -> source 6-k
        self.fpn_topdown = nn.ModuleList([conv2d(src[5], src[5], 1, **nk)] +
                                         [conv2d(src[k], src[k - 1], 1, **nk) for k in range(5, 0, -1)])
        self.fpn_latlayer = nn.ModuleList([conv2d(src[k], src[k], 1, **nk) for k in range(4, -1, -1)])
        self.fpn_fem = nn.ModuleList([FEM(c, cfg.fem_dilation, **nk) for c in src])
        if not cfg.resnet:
            self.L2Normef1 = L2Norm(src[0], s1, eps)
            self.L2Normef2 = L2Norm(src[1], s2, eps)
            self.L2Normef3 = L2Norm(src[2], s3, eps)

        self.loc_pal1 = _head(src, 4)
        self.conf_pal1 = _head(src, cfg.num_classes)
        self.loc_pal2 = _head(src, 4)
        self.conf_pal2 = _head(src, cfg.num_classes)
        if reflectance:
            self.ref = reflectance_decoder(cfg.shallow_channels, cfg.ch(cfg.ref_channels))

    # -- backbone pieces ---------------------------------------------------------------
    def _vgg(self, x: jt.Var, stage: int) -> jt.Var:
        start, end = self._stages[stage]
        return run_layers(self.vgg[start:end + 1], x)

    def shallow(self, x: jt.Var) -> jt.Var:
        """x_shallow = vgg[0..4](x): [N, 64w, H/2, W/2]; a ResNet's stem (conv1, bn1, ReLU)."""
        return self.resnet.stem(x) if self.cfg.resnet else self._vgg(x, 0)

    def _stem_batchnorms(self) -> list:
        start, end = self._stages[0]
        return [m for layer in self.vgg[start:end + 1] for m in layer.modules() if isinstance(m, nn.BatchNorm)]

    @contextmanager
    def _stem_statistics_kept(self):
        """The stem's BatchNorm running statistics are not updated inside the block
        (momentum 0: ``r + (mean - r) * 0`` is ``r`` exactly); batch statistics still normalise."""
        bns = self._stem_batchnorms()
        saved = [m.momentum for m in bns]
        for m in bns:
            m.momentum = 0.0
        try:
            yield
        finally:
            for m, v in zip(bns, saved):
                m.momentum = v

    def _shallow_streams(self, images: tuple, separate: bool, track_first: bool = True) -> jt.Var:
        """x_shallow of ``images`` (a tuple of [N, 3, H, W]), concatenated on the batch axis.

        ``separate`` with BatchNorm in the stem (params ``train.bn_streams: separate``): each
        stream passes alone, normalised by its own batch statistics, and only the first, when
        ``track_first`` (the dark image: what the detector sees at test time), updates the
        running statistics.
        Otherwise one batched pass (without BatchNorm the two are the same function).
        """
        if not (separate and self._stages and self._stem_batchnorms()):
            return self.shallow(jt.concat(list(images), dim=0))
        outs = []
        for i, x in enumerate(images):
            with nullcontext() if i == 0 and track_first else self._stem_statistics_kept():
                outs.append(self.shallow(x))
        return jt.concat(outs, dim=0)

    def pyramid(self, x_shallow: jt.Var) -> dict[str, jt.Var]:
        """All named maps from x_shallow: of1..of6 (raw) and ef1..ef6 (ef1..ef3 L2-normalised)."""
        if self.cfg.resnet:
            maps = dict(zip(SOURCE_NAMES, self.resnet.stages(x_shallow)))
        else:
            maps, x = {}, x_shallow
            for k in range(4):
                x = self._vgg(x, k + 1)
                maps[SOURCE_NAMES[k]] = x
        x = maps["of4"]
        for k, name in ((0, "of5"), (2, "of6")):
            x = conv_relu(self.extras[k + 1], conv_relu(self.extras[k], x))
            maps[name] = x

        td, lat = self.fpn_topdown, self.fpn_latlayer
        top = [conv_relu(td[0], maps["of6"])]                # conv7
        for k in range(5):                                  # conv6, convfc7_2, conv5, conv4, conv3
            lateral = lat[k](maps[SOURCE_NAMES[4 - k]])
            top.append(nn.relu(upsample_product(conv_relu(td[k + 1], top[-1]), lateral)))
        fpn = top[::-1]                                     # finest first: conv3 .. conv7

        norms = () if self.cfg.resnet else (self.L2Normef1, self.L2Normef2, self.L2Normef3)
        for k, name in enumerate(ENHANCED_NAMES):
            ef = self.fpn_fem[k](fpn[k])
            maps[name] = norms[k](ef) if k < len(norms) else ef
        return maps

    def first_shot_sources(self, maps: dict[str, jt.Var]) -> list[jt.Var]:
        norms = () if self.cfg.resnet else (self.L2Normof1, self.L2Normof2, self.L2Normof3)
        return [norms[k](maps[n]) if k < len(norms) else maps[n] for k, n in enumerate(SOURCE_NAMES)]

    def _shot1(self, maps):
        srcs = self.first_shot_sources(maps)
        return (_apply_head(self.loc_pal1, srcs, 4),
                _apply_head(self.conf_pal1, srcs, self.cfg.num_classes))

    def _shot2(self, maps):
        srcs = [maps[n] for n in ENHANCED_NAMES]
        return (_apply_head(self.loc_pal2, srcs, 4),
                _apply_head(self.conf_pal2, srcs, self.cfg.num_classes))

    def detect_train(self, x_shallow: jt.Var) -> dict[str, jt.Var]:
        """Both shots from x_shallow: loc1 [N, P, 4], conf1 [N, P, K], loc2, conf2."""
        maps = self.pyramid(x_shallow)
        loc1, conf1 = self._shot1(maps)
        loc2, conf2 = self._shot2(maps)
        return {"loc1": loc1, "conf1": conf1, "loc2": loc2, "conf2": conf2}

    # -- public forwards -----------------------------------------------------------------
    def execute(self, x: jt.Var, with_reflectance: bool = True):
        """Test forward: ``(loc2 [N, P, 4], conf2 [N, P, K] logits, R)``.

        R [N, 3, 2*(H//2), 2*(W//2)] is the reflectance of every image in the batch (None
        for DSFD or when ``with_reflectance`` is False, e.g. in multi-scale testing).
        """
        xs = self.shallow(x)
        loc2, conf2 = self._shot2(self.pyramid(xs))
        R = run_layers(self.ref, xs) if (self.reflectance and with_reflectance) else None
        return loc2, conf2, R

    def features(self, x: jt.Var) -> dict[str, jt.Var]:
        """Named intermediate maps for visualisation: x_shallow, of1..of6, ef1..ef6."""
        xs = self.shallow(x)
        return {"x_shallow": xs, **self.pyramid(xs)}

    def forward_train(self, dark: jt.Var, light: jt.Var = None, I_dark: jt.Var = None,
                      I_light: jt.Var = None, separate_streams: bool = False) -> dict[str, jt.Var]:
        """Training forward (§5). DAI-Net: ``(dark, light, I_dark, I_light)``; DSFD: ``(image)``.
        ``separate_streams``: see :meth:`_shallow_streams` (no effect without BatchNorm).

        ``dark`` / ``light`` [N, 3, H, W] (H, W even), ``I_*`` [N, 1, H, W] from the frozen
        decomposer. Returns the detections of the dark image (loc1, conf1, loc2, conf2) and,
        for DAI-Net, R_dark, R_light, R_dark_2, R_light_2 [N, 3, H, W] and the pooled shallow
        features g_dark, g_light, g_dark2, g_light2 [N, C_shallow].
        """
        if not self.reflectance:
            return self.detect_train(self.shallow(dark))
        if light is None or I_dark is None or I_light is None:
            raise TypeError("DAI-Net forward_train needs (dark, light, I_dark, I_light)")
        n, _, h, w = dark.shape
        if h % 2 or w % 2:
            raise UserError(f"DAI-Net training images need an even height and width (the reflectance "
                            f"decoder returns 2*(H//2) x 2*(W//2)); got {h}x{w}: use an even "
                            f"augment.image_size")

        # dark and light share every layer up to x_shallow: one batched pass (unless BatchNorm
        # statistics are kept per stream), one batched ref
        xs = self._shallow_streams((dark, light), separate_streams)
        R = run_layers(self.ref, xs)
        xs_dark, R_dark, R_light = xs[:n], R[:n], R[n:]

        # interchange: the swapped products are inputs, not a gradient path (spec §5.3)
        light2 = (I_light * R_dark).detach()
        dark2 = (I_dark * R_light).detach()
        xs2 = self._shallow_streams((light2, dark2), separate_streams, track_first=False)
        R2 = run_layers(self.ref, xs2)                     # re-decomposition

        g, g2 = global_pool(xs), global_pool(xs2)
        out = self.detect_train(xs_dark)                   # detection on the dark image only
        out.update(R_dark=R_dark, R_light=R_light, R_dark_2=R2[:n], R_light_2=R2[n:],
                   g_dark=g[:n], g_light=g[n:], g_light2=g2[:n], g_dark2=g2[n:])
        return out


def build_model(model_section, reflectance: bool = True) -> DAINet:
    """DAI-Net (``reflectance=True``, params ``train.method: dainet``) or DSFD (``dsfd``), on
    ``model.backbone`` (DAI-Net on a ResNet is refused by the params schema).

    ``model_section``: the params `model` :class:`dainet.params.Section` or a :class:`ModelConfig`.
    Weights are Jittor's defaults; call :func:`dainet.models.init.init_weights` next.
    """
    cfg = model_section if isinstance(model_section, ModelConfig) else model_section.load(ModelConfig)
    return DAINet(cfg, reflectance=reflectance)
