"""Baseline single-modality inception network (Treyer et al. 2023 lineage; paper Sec. 3.2).

Widths: the inception blocks use the stated defaults (1x1 reductions 101, 3x3/5x5 branches 156, pool branch 101,
1x1 branch 109: 522 maps). Not given by the paper, chosen here: stem 96 (5x5, PReLU) and 96 (3x3, tanh) maps,
valid 3x3 convs of 512 maps down to 96 maps of 1x1, and two FC layers of 2304 after E(B-V) is appended (97).
The paper does not list the stem, tail or FC widths; the tail and FC widths were set so that 9 bands, 64x64 and
180 bins give 19.22 M parameters against the paper's 19.03 M (with a 256-map tail and 1024-wide FC layers it was
9.76 M). They cost little compute: the tail works on 8x8 maps, the FC layers on one vector.
"""

from __future__ import annotations

from torch import nn

from .blocks import N_BLOCKS, POOL_BEFORE, Stem, ValidTail, inception_stage, init_weights, pooled_size, scale
from .heads import PhotozHead

BLOCK = {"red": 101, "b3": 156, "b5": 156, "pool": 101, "b1": 109}
STEM = (96, 96)
TAIL_MID, LATENT = 512, 96
HIDDEN = (2304, 2304)


def make_tail_and_head(in_chans: int, image_size: int, n_bins: int, width: float):
    """Valid-conv tail to ``LATENT`` 1x1 maps and the FC head; shared by the baseline and multimodal nets."""
    tail = ValidTail(in_chans, pooled_size(image_size, len(POOL_BEFORE)), scale(TAIL_MID, width), scale(LATENT, width))
    head = PhotozHead(tail.out_chans, [scale(h, width) for h in HIDDEN], n_bins)
    return tail, head


class Baseline(nn.Module):
    """Stem, 8 inception blocks (pooling before blocks 1, 4, 6), valid tail, E(B-V), classification + regression.

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
