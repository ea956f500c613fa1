"""DAI-Net (CVPR 2024) in Jittor: zero-shot day-night domain adaptation for face detection."""
from dainet import runtime as _runtime

_runtime.configure()

__version__ = "0.1.0"
