"""Training loops: Retinex decomposition (§6) and DAI-Net joint training (§9)."""
