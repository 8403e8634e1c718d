"""Multimodal inception network (paper Sec. 4): one branch per modality, fusion, then the common blocks.

Every path has 8 inception blocks: ``FUSION[fusion]`` in its branch, then (cross fusion only) the fusion-stage
block inside :class:`pipeline.nn.crossfusion.CrossFusion`, then the common ones. Widths
(:func:`pipeline.nn.widths.modality_mults`, reasons there): with ``M`` > 1 modalities out of ``n`` bands, a branch
for ``s`` bands is ``min(1, BRANCH_SLOPE s / n)`` times the baseline widths and the common blocks ``COMMON_MULT``
times; the tail and head are the baseline's; one modality is the baseline on its bands (so a single all-band
modality *is* the baseline). The branches run as a loop of modules or as grouped convolutions (``branch_form``;
same function for the same weights, see :mod:`pipeline.nn.branches`).
"""

from __future__ import annotations

import torch
from torch import nn

from .baseline import make_tail_and_head
from .blocks import N_BLOCKS, POOL_BEFORE, Stem, inception_stage, init_weights, scale
from .branches import DEFAULT_FORM, make_branches
from .crossfusion import CrossFusion
from .modalities import modalities, modality_name
from .widths import BLOCK, STEM, modality_mults

#: Fusion stage -> number of inception blocks run in the parallel branches.
FUSION = {"extremely_early": 0, "very_early": 1, "early": 2, "middle": 4, "late": 6}
FUSION_TYPES = ("concat", "cross")


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
    size, orders : int or list of int, list of int
        Modality size(s) and orders (see :func:`pipeline.nn.modalities`); several sizes give their modalities side
        by side (``[2, 1]``: two-band ones plus every band alone, the modality-dropout network of Sec. 7.4).
    fusion : str
        One of ``FUSION``; the total depth stays 8 blocks with pooling before blocks 1, 4 and 6.
    fusion_type : {"concat", "cross"}
        Concatenation of the branches' maps, or :class:`pipeline.nn.crossfusion.CrossFusion` as the fusion-stage
        block (modalities of one size only).
    all_bands_modality : bool
        Add a modality holding all bands (paper Sec. 7.3).
    modality_dropout : int
        In training, drop the features of 0..k random modalities per batch (paper Sec. 7.4): zeroed before a
        concatenation, left out of a cross fusion.
    drop_modalities : list of str
        Modality names always dropped that way (the test-time dropout of Sec. 7.4).
    branch_form : {"loop", "grouped"}
        How the parallel branches run (:mod:`pipeline.nn.branches`); both load each other's state_dicts.
    """

    def __init__(self, bands, n_bins, image_size=64, width=1.0, size=2, orders=(1,), fusion="early",
                 fusion_type="concat", all_bands_modality=False, modality_dropout=0, drop_modalities=(),
                 branch_form=DEFAULT_FORM):  # fmt: skip
        super().__init__()
        if fusion not in FUSION:
            raise ValueError(f"unknown fusion {fusion!r}: valid are {', '.join(FUSION)}")
        if fusion_type not in FUSION_TYPES:
            raise ValueError(f"unknown fusion_type {fusion_type!r}: valid are {', '.join(FUSION_TYPES)}")
        self.bands = list(bands)
        mods = setup_modalities(self, size, orders, all_bands_modality, modality_dropout, drop_modalities)
        self.fusion_type = fusion_type
        n_par = FUSION[fusion]

        def make(in_chans, mult, groups):
            stem = Stem(in_chans, scale(STEM[0], mult), scale(STEM[1], mult), groups)
            stage, c = inception_stage(stem.out_chans, 0, n_par, BLOCK, mult, groups)
            return nn.Sequential(stem, stage), c

        mults, common = modality_mults([len(m) for m in mods], len(self.bands), width)
        self.branches = make_branches(branch_form, self.bands, mods, make, mults)
        chans = self.branches.chans
        if fusion_type == "cross":  # the module is block n_par of every path: the common part starts one later
            self.fuse = CrossFusion(chans, mults, BLOCK, pool=n_par in POOL_BEFORE)
            c, start = self.fuse.out_chans, n_par + 1
        else:
            self.fuse, c, start = None, sum(chans), n_par
        self.common, c = inception_stage(c, start, N_BLOCKS, BLOCK, common)
        self.tail, self.head = make_tail_and_head(c, image_size, n_bins, width)
        init_weights(self)

    def forward_features(self, x):
        return self.tail(self.common(branch_features(self, x, self.fuse)))

    def forward(self, x, ebv):
        return self.head(self.forward_features(x), ebv)


def setup_modalities(model, size, orders, all_bands_modality, modality_dropout, drop_modalities) -> list[tuple]:
    """Check the modality options and set ``modality_names``, ``modality_dropout``, ``drop_modalities``."""
    orders = list(orders) if not isinstance(orders, int) else orders
    mods = []
    # a list of sizes puts modalities of each size side by side, e.g. [2, 1]: the 2-band ones, then every band alone
    for s in [size] if isinstance(size, int) else list(size):
        mods += [m for m in modalities(model.bands, s, orders) if m not in mods]
    if all_bands_modality and tuple(model.bands) not in mods:
        mods.append(tuple(model.bands))
    model.modality_names = [modality_name(m) for m in mods]
    unknown = set(drop_modalities) - set(model.modality_names)
    if unknown:
        raise ValueError(f"unknown modalities to drop {sorted(unknown)}: valid are {model.modality_names}")
    if not 0 <= int(modality_dropout) <= len(mods):
        raise ValueError(f"modality_dropout must be in 0..{len(mods)}, got {modality_dropout}")
    model.modality_dropout = int(modality_dropout)
    model.drop_modalities = list(drop_modalities)
    return mods


def dropped_modalities(model) -> list[int]:
    """Indices of the modalities whose features are zeroed for this batch (fixed ones, plus random in training)."""
    drop = {model.modality_names.index(name) for name in model.drop_modalities}
    if model.training and model.modality_dropout:
        k = int(torch.randint(0, model.modality_dropout + 1, ()))
        drop |= set(torch.randperm(len(model.modality_names))[:k].tolist())
    return sorted(drop)


def branch_features(model, x, fuse=None) -> torch.Tensor:
    """Run ``model.branches`` on ``x`` and fuse: concatenation with the dropped modalities' maps zeroed, or ``fuse``
    (cross fusion) told which modalities are kept."""
    drop = dropped_modalities(model)
    if fuse is None and not drop:
        return model.branches.forward_cat(x)
    feats = model.branches(x)
    if fuse is not None:
        return fuse(feats, [i for i in range(len(feats)) if i not in drop])
    for i in drop:
        feats[i] = torch.zeros_like(feats[i])
    return torch.cat(feats, 1)
