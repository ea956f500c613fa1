"""Weight I/O without PyTorch: published ``.pth`` files in, our own checkpoints in and out.

Typical use (the convert_weights and train stages)::

    from dainet.weights import read_pth, strip_prefix, backbone_to_model, load_into

    backbone = backbone_to_model(read_pth("vgg16_reducedfc.pth"), "vgg16_reducedfc.pth")
    # {'vgg.0.weight': ndarray[64, 3, 3, 3], 'vgg.0.bias': ..., ...}

    state = strip_prefix(read_pth("DarkFaceZSDA.pth"), "module.", "DarkFaceZSDA.pth")
    load_into(model, state, "DarkFaceZSDA.pth")     # one WeightError listing every misfit

    save_checkpoint("ckpt.dnc", {"model": model.state_dict(), "epoch": 3, "iteration": 5000})
    ckpt = load_checkpoint("ckpt.dnc")

Modules:

* :mod:`dainet.weights.pth` -- read PyTorch ``torch.save`` files (zip format of
  torch >= 1.6 and the legacy format before it) with numpy, zipfile and a restricted
  unpickler that runs no code from the file.
* :mod:`dainet.weights.names` -- find the state dict inside a loaded file, rename keys
  (``module.`` prefix, backbone ``<i>.*`` -> ``vgg.<i>.*``), check names and shapes.
* :mod:`dainet.weights.checkpoint` -- our own checkpoints (zip of ``.npy`` arrays plus a
  JSON tree, no pickle), written atomically; loading a state dict into a Jittor module.

Nothing here imports Jittor: a module is used only through its ``state_dict()`` /
``load_state_dict()`` methods.
"""
from dainet.errors import UserError


class WeightError(UserError):
    """A weights or checkpoint file is unreadable, unsafe, or does not fit the model.

    The message always names the file. Defined here, before the submodules that raise
    it are imported below.
    """


from dainet.weights.pth import load_torch_file, read_pth  # noqa: E402
from dainet.weights.names import (  # noqa: E402
    add_prefix, backbone_to_model, check_state_dict, strip_prefix, unwrap_state_dict)
from dainet.weights.checkpoint import load_checkpoint, load_into, save_checkpoint  # noqa: E402

__all__ = [
    "WeightError", "load_torch_file", "read_pth", "unwrap_state_dict", "strip_prefix",
    "add_prefix", "backbone_to_model", "check_state_dict", "save_checkpoint",
    "load_checkpoint", "load_into",
]
