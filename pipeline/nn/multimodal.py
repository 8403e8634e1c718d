"""Multimodal inception network (paper Sec. 4): one branch per modality, fusion, then the common blocks.

Width rule: a branch for a modality of ``s`` bands out of ``n`` uses ``width * s / n`` times the baseline widths
(never below 4 maps), so a single all-band modality with fusion after 0 blocks *is* the baseline. Branches run
as a Python loop of separate modules (a grouped-conv form was not implemented).
"""

from __future__ import annotations

import torch
from torch import nn

from .baseline import BLOCK, STEM, make_tail_and_head
from .blocks import N_BLOCKS, Inception, Stem, inception_stage, init_weights, scale
from .modalities import modalities, modality_name

#: Fusion stage -> number of inception blocks run in the parallel branches.
FUSION = {"extremely_early": 0, "very_early": 1, "early": 2, "middle": 4, "late": 6}
FUSION_TYPES = ("concat", "cross")


class CrossFusion(nn.Module):
    """Cross-fusion (after Hong et al. 2020): per modality, an inception block over all modalities' maps, the
    modality's own maps first; a 1x1 conv shared by all modalities; then concatenation."""

    def __init__(self, chans: list[int], mult: float):
        super().__init__()
        total = sum(chans)
        self.blocks = nn.ModuleList(Inception(total, **{k: scale(v, mult) for k, v in BLOCK.items()}) for _ in chans)
        c = self.blocks[0].out_chans
        self.shared = nn.Sequential(nn.Conv2d(c, c, 1), nn.ReLU())
        self.out_chans = c * len(chans)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        outs = []
        for i, block in enumerate(self.blocks):
            outs.append(self.shared(block(torch.cat(feats[i:] + feats[:i], 1))))
        return torch.cat(outs, 1)


class Multimodal(nn.Module):
    """Parallel modality branches, concat or cross fusion, common inception blocks, valid tail and heads.

    Parameters
    ----------
    bands : list of str
        Bands sorted by wavelength (the input channel order).
    n_bins : int
        Number of redshift classes.
    image_size : int
        Input cutout size in pixels (>= 16).
    width : float
        Multiplier on every channel count.
    size, orders : int, list of int
        Modality size and orders (see :func:`pipeline.nn.modalities`).
    fusion : str
        One of ``FUSION``; the total depth stays 8 blocks with pooling before blocks 1, 4 and 6.
    fusion_type : {"concat", "cross"}
    all_bands_modality : bool
        Add a modality holding all bands (paper Sec. 7.3).
    modality_dropout : int
        In training, zero the features of 0..k random modalities per batch (paper Sec. 7.4).
    drop_modalities : list of str
        Modality names whose features are always zeroed (the test-time dropout of Sec. 7.4).
    """

    def __init__(self, bands, n_bins, image_size=64, width=1.0, size=2, orders=(1,), fusion="early",
                 fusion_type="concat", all_bands_modality=False, modality_dropout=0, drop_modalities=()):  # fmt: skip
        super().__init__()
        if fusion not in FUSION:
            raise ValueError(f"unknown fusion {fusion!r}: valid are {', '.join(FUSION)}")
        if fusion_type not in FUSION_TYPES:
            raise ValueError(f"unknown fusion_type {fusion_type!r}: valid are {', '.join(FUSION_TYPES)}")
        self.bands = list(bands)
        n = len(self.bands)
        mods = modalities(self.bands, size, list(orders) if not isinstance(orders, int) else orders)
        if all_bands_modality and tuple(self.bands) not in mods:
            mods.append(tuple(self.bands))
        self.modality_names = [modality_name(m) for m in mods]
        unknown = set(drop_modalities) - set(self.modality_names)
        if unknown:
            raise ValueError(f"unknown modalities to drop {sorted(unknown)}: valid are {self.modality_names}")
        if not 0 <= int(modality_dropout) <= len(mods):
            raise ValueError(f"modality_dropout must be in 0..{len(mods)}, got {modality_dropout}")
        self.modality_dropout = int(modality_dropout)
        self.drop_modalities = list(drop_modalities)
        self.fusion_type = fusion_type
        for i, m in enumerate(mods):
            self.register_buffer(f"_idx{i}", torch.tensor([self.bands.index(b) for b in m]), persistent=False)

        n_par = FUSION[fusion]
        self.branches, chans = nn.ModuleList(), []
        for m in mods:
            mult = width * len(m) / n
            stem = Stem(len(m), scale(STEM[0], mult), scale(STEM[1], mult))
            stage, c = inception_stage(stem.out_chans, 0, n_par, BLOCK, mult)
            self.branches.append(nn.Sequential(stem, stage))
            chans.append(c)
        self.chans = chans
        if fusion_type == "cross":
            self.fuse = CrossFusion(chans, width * sum(len(m) for m in mods) / len(mods) / n)
            c = self.fuse.out_chans
        else:
            self.fuse, c = None, sum(chans)
        self.common, c = inception_stage(c, n_par, N_BLOCKS, BLOCK, width)
        self.tail, self.head = make_tail_and_head(c, image_size, n_bins, width)
        init_weights(self)

    def _dropped(self) -> list[int]:
        """Indices of the modalities whose features are zeroed for this batch."""
        drop = {self.modality_names.index(name) for name in self.drop_modalities}
        if self.training and self.modality_dropout:
            k = int(torch.randint(0, self.modality_dropout + 1, ()))
            drop |= set(torch.randperm(len(self.branches))[:k].tolist())
        return sorted(drop)

    def forward_features(self, x):
        feats = [branch(x[:, getattr(self, f"_idx{i}")]) for i, branch in enumerate(self.branches)]
        for i in self._dropped():
            feats[i] = torch.zeros_like(feats[i])
        fused = self.fuse(feats) if self.fuse is not None else torch.cat(feats, 1)
        return self.tail(self.common(fused))

    def forward(self, x, ebv):
        return self.head(self.forward_features(x), ebv)
