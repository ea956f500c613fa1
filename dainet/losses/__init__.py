"""Training losses: multibox detection, SSIM, smoothness, enhancement, reflectance, mutual KL."""
