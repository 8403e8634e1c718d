"""Cross-fusion module (paper Sec. 4.3, after Hong et al. 2020, IEEE TGRS 59, 4340, "More Diverse Means Better").

The paper: "A cross-fusion module consists in a set of parallel inception blocks, each processing modalities one by
one (hence cross) for improved feature blending. The cross-fused feature maps pass through a common convolution
layer prior to being concatenated." Hong et al.'s code (``MDL-RS_CNNs/Cross_fusion_CNNs.py``, two modalities)
runs the fusion layer of modality 1 (weights W1) on modality 1's maps *and* on modality 2's, and W2 likewise; per
modality it sums the two responses, ``[W1(x1) + W1(x2), W2(x2) + W2(x1)]``, concatenates them and applies a 1x1
conv to the concatenation.

How that maps here, with ``M`` modalities whose branches ran blocks ``0 .. f-1`` of the 8-block trunk:

1. *Parallel inception blocks*: one per modality, its block ``f`` -- the block its branch would have run next, of
   the branch's width. The module therefore *is* block ``f`` of every path and the depth stays 8 inception blocks
   (blocks ``f+1 .. 7`` are common). If the trunk pools before block ``f`` (extremely early fusion, ``f`` = 0), every
   modality's maps are pooled first.
2. *Processing modalities one by one*: block ``k`` (one set of weights) is applied to every modality's maps
   ``x_j``, as Hong's W1 is applied to x1 and x2: M^2 block evaluations, batched per block over the inputs (hence
   the paper's remark that concatenation is cheaper).
3. Per block, the responses to the inputs are *averaged*, ``y_k = mean_j block_k(x_j)`` (Hong: summed). Why: these
   networks have no batch norm (Hong's do), and a sum of M ReLU maps (M = 8 to 21 here) would scale the
   activations by ~M from the start; the mean is the sum up to a constant factor.
4. *Common convolution prior to concatenation*: one 1x1 conv + ReLU whose weights are shared by all modalities is
   applied to each ``y_k``; the M results are concatenated in modality order and go to the first common block.
   This follows the paper's order (Hong's code concatenates first and convolves the concatenation, i.e. a conv not
   shared between modalities). The conv keeps the block's width (``c`` -> ``c``; Hong's maps 2 x 128 -> 128).
5. Dropped modalities (modality dropout, the drop test of Sec. 7.4) are left out of every mean, so the others'
   fused maps change and nothing derived from the dropped bands remains; the dropped modality's block still runs
   on the other modalities' maps. With every modality dropped the means are zero.
6. Not taken from Hong et al.: batch norm, and their auxiliary outputs (each modality alone through all blocks)
   tied to the main output by an MSE term of the loss, which the paper does not mention.
7. Block ``k`` can read ``x_j`` only if both have the same number of maps: all modalities must have the same branch
   width (the paper's cross-fusion network has 2-band modalities only), otherwise this raises ``ValueError``.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import Inception, scale


class CrossFusion(nn.Module):
    """Cross-fusion of ``M`` modalities' maps: the fusion-stage inception block of each modality applied to every
    modality's maps and averaged, a 1x1 conv shared by all modalities, then concatenation (module docstring).

    Parameters
    ----------
    chans : list of int
        Maps per modality coming out of the branches (all equal).
    mults : list of float
        Channel multiplier of each modality's branch (the width of its block here).
    widths : dict
        Base inception widths (``red``, ``b3``, ``b5``, ``pool``, ``b1``).
    pool : bool
        Average-pool 2x2 (ceil mode) before the blocks, where the trunk pools before this block.
    """

    def __init__(self, chans: list[int], mults: list[float], widths: dict, pool: bool):
        super().__init__()
        if len(set(chans)) != 1 or len(set(mults)) != 1:
            raise ValueError(
                f"cross fusion needs modalities of one branch width (got maps {chans}): each modality's block reads "
                "every modality's maps; use modalities of one size"
            )
        self.pool = nn.AvgPool2d(2, 2, ceil_mode=True) if pool else nn.Identity()
        self.blocks = nn.ModuleList(Inception(chans[0], **{k: scale(v, m) for k, v in widths.items()}) for m in mults)
        c = self.blocks[0].out_chans
        self.shared = nn.Sequential(nn.Conv2d(c, c, 1), nn.ReLU())
        self.out_chans = c * len(chans)

    def cross(self, feats: list[torch.Tensor], keep=None) -> list[torch.Tensor]:
        """Per modality ``k``, the mean over the kept modalities ``j`` of block ``k`` on ``x_j``: list of (B, c, h, w).

        ``feats``: M tensors (B, C, H, W); ``keep``: indices of the modalities not dropped (default all).
        """
        keep = range(len(feats)) if keep is None else list(keep)
        b = feats[0].shape[0]
        if not keep:
            shape = self.pool(feats[0][:, :1]).shape[2:]
            zero = feats[0].new_zeros(b, self.blocks[0].out_chans, *shape)
            return [zero] * len(self.blocks)
        x = self.pool(torch.cat([feats[j] for j in keep], 0))  # the kept modalities one after the other on the batch
        return [block(x).unflatten(0, (len(keep), b)).mean(0) for block in self.blocks]

    def forward(self, feats: list[torch.Tensor], keep=None) -> torch.Tensor:
        """Fused maps (B, ``out_chans``, h, w): each modality's cross-fused maps through the shared conv, then
        concatenated in modality order."""
        return torch.cat([self.shared(y) for y in self.cross(feats, keep)], 1)
