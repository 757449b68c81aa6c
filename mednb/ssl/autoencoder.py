"""Denoising autoencoder (Vincent et al., ICML 2008): reconstruct the clean image from a corrupted
one (Gaussian noise of sd ``noise`` in [0,1] units and a random fraction ``drop`` of pixels zeroed).
The decoder is :class:`mednb.ssl.base.Decoder` (features → input size); loss MSE in normalized units.
"""
from __future__ import annotations

import torch.nn.functional as F

from ..engine import normalize
from .base import Decoder, Pretext, rand, randn


class Autoencoder(Pretext):
    name, family, paper = "autoencoder", "generative", "Vincent et al., ICML 2008 (denoising AE)"

    def __init__(self, model, in_channels, size, dims, noise: float = 0.1, drop: float = 0.25):
        super().__init__(model, in_channels, size, dims)
        self.noise, self.drop = float(noise), float(drop)
        self.decoder = Decoder(self.feat_dim, self.feat_side, in_channels, size, dims)

    def corrupt(self, x, generator=None):
        y = x + self.noise * randn(x.shape, generator, x.device)
        keep = rand(x.shape, generator, x.device) >= self.drop
        return (y * keep).clamp(0, 1)

    def restore(self, x01):
        return self.decoder(self.encode(x01))

    def loss(self, x, idx, generator=None):
        return F.mse_loss(self.restore(self.corrupt(x, generator)), normalize(x)), {}
