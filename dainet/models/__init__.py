"""DAI-Net / DSFD (VGG16 backbone) and the Retinex decomposition network, in Jittor."""
from dainet.models.config import ModelConfig
from dainet.models.dainet import DAINet, build_model
from dainet.models.decomp import RetinexDecomposer, build_decomposer
from dainet.models.init import init_weights

__all__ = ["ModelConfig", "DAINet", "build_model", "RetinexDecomposer", "build_decomposer", "init_weights"]
