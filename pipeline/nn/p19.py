"""Pasquet et al. (2019) network, as their public code defines it."""

from __future__ import annotations

from torch import nn

from .blocks import Inception, init_weights, pooled_size, scale
from .heads import PhotozHead

# (1x1 reduction, branch width, has 5x5 branch) per block; None marks a 2x2 average pooling.
LAYOUT = (None, (48, 64, True), (64, 92, True), None, (92, 128, True), (92, 128, True), None, (92, 128, False))


class P19(nn.Module):
    """5x5 conv (64, PReLU), pooling, 5 inception blocks (PReLU), flatten, E(B-V), FC 1096 -> 1096 -> n_bins.

    Each block's pool branch is 1x1 (reduction width) then 3x3 average pooling, its plain 1x1 branch has the
    branch width, as in P19's code. At 64x64 with 5 bands the flattened latent has 348 x 8 x 8 = 22,272 features.
    A linear regression output on the last hidden layer keeps the interface uniform. ``width`` scales every conv
    and FC width.
    """

    def __init__(self, bands, n_bins: int, image_size: int = 64, width: float = 1.0):
        super().__init__()
        self.bands = list(bands)
        c = scale(64, width)
        layers = [nn.Conv2d(len(self.bands), c, 5, padding=2), nn.PReLU()]
        for spec in LAYOUT:
            if spec is None:
                layers.append(nn.AvgPool2d(2, 2, ceil_mode=True))
                continue
            red, br, with5 = scale(spec[0], width), scale(spec[1], width), spec[2]
            block = Inception(c, red, br, br if with5 else 0, red, br, act="prelu", pool_first=False)
            layers.append(block)
            c = block.out_chans
        layers.append(nn.Flatten())
        self.features = nn.Sequential(*layers)
        n_feat = c * pooled_size(image_size, 3) ** 2
        self.head = PhotozHead(n_feat, [scale(1096, width)] * 2, n_bins)
        init_weights(self)

    def forward_features(self, x):
        return self.features(x)

    def forward(self, x, ebv):
        return self.head(self.forward_features(x), ebv)
