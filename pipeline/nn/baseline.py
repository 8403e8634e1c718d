"""Baseline single-modality inception network (Treyer et al. 2023 lineage; paper Sec. 3.2).

Widths: :mod:`pipeline.nn.widths` (9 bands, 64x64, 180 bins: 19.01 M parameters, the paper's 19.03 M).
"""

from __future__ import annotations

from torch import nn

from .blocks import N_BLOCKS, POOL_BEFORE, Stem, ValidTail, inception_stage, init_weights, pooled_size, scale
from .heads import PhotozHead
from .widths import BLOCK, HIDDEN, LATENT, STEM


def make_tail_and_head(in_chans: int, image_size: int, n_bins: int, width: float):
    """Valid-conv tail to ``LATENT`` 1x1 maps and the FC head; the same in the baseline and multimodal nets."""
    tail = ValidTail(in_chans, pooled_size(image_size, len(POOL_BEFORE)), scale(LATENT, width))
    head = PhotozHead(tail.out_chans, [scale(h, width) for h in HIDDEN], n_bins)
    return tail, head


class Baseline(nn.Module):
    """Stem, 8 inception blocks (pooling before blocks 1, 4, 6), valid tail and pooling, E(B-V), two outputs.

    ``forward(x, ebv)`` takes ``x`` (B, n_bands, H, W) and ``ebv`` (B,) or (B, 1); returns (logits (B, n_bins),
    z_reg (B,)).
    """

    def __init__(self, bands, n_bins: int, image_size: int = 64, width: float = 1.0):
        super().__init__()
        self.bands = list(bands)
        self.stem = Stem(len(self.bands), scale(STEM[0], width), scale(STEM[1], width))
        self.blocks, c = inception_stage(self.stem.out_chans, 0, N_BLOCKS, BLOCK, width)
        self.tail, self.head = make_tail_and_head(c, image_size, n_bins, width)
        init_weights(self)

    def forward_features(self, x):
        return self.tail(self.blocks(self.stem(x)))

    def forward(self, x, ebv):
        return self.head(self.forward_features(x), ebv)
