"""Plain CNNs of 5, 10 or 21 conv layers, single-modality or multimodal: the architecture study of paper Sec. 7.1.

The paper does not give these networks' layouts; this one is ours. ``n_layers`` 3x3 convs (same padding, ReLU)
in four resolution stages separated by 2x2 average pooling (ceil mode, 64 -> 32 -> 16 -> 8 pixels at 64x64, the
inception trunk's three poolings), stage widths 64, 128, 256, 256 maps (times ``width``), layers per stage:

=========  =============  ======================
n_layers   per stage      pooling before layer
=========  =============  ======================
5          1, 1, 1, 2     2, 3, 4
10         2, 2, 3, 3     3, 5, 8
21         5, 5, 5, 6     6, 11, 16
=========  =============  ======================

then global average pooling, E(B-V) appended and two FC layers of 1024 (``HIDDEN``, not counted in ``n_layers``).

Multimodal form (``multimodal=True``): the first ``k`` conv layers run in parallel branches, one per modality,
their maps are concatenated and the remaining layers are common. Widths follow the multimodal inception net's rule
(:func:`pipeline.nn.widths.modality_mults`): branches ``min(1, BRANCH_SLOPE s / n)`` times the single-modality
widths, common layers ``COMMON_MULT`` times, the FC head unchanged. ``k`` follows the fusion stage as the fraction
of the inception trunk's 8 blocks run in parallel: ``k = clip(round(n_layers * blocks / 8), 1, n_layers - 1)``
with ``blocks`` from :data:`pipeline.nn.multimodal.FUSION` (so extremely early fusion still has one parallel
layer, the analogue of the branch stem). Fusion is by concatenation only.
"""

from __future__ import annotations

from torch import nn

from .blocks import init_weights, scale
from .branches import DEFAULT_FORM, make_branches
from .heads import PhotozHead
from .multimodal import FUSION, branch_features, setup_modalities
from .widths import modality_mults

STAGE_WIDTHS = (64, 128, 256, 256)
LAYERS_PER_STAGE = {5: (1, 1, 1, 2), 10: (2, 2, 3, 3), 21: (5, 5, 5, 6)}
HIDDEN = (1024, 1024)


def plain_layers(n_layers: int, start: int, stop: int, in_chans: int, mult: float, groups: int = 1):
    """Conv layers ``start .. stop-1`` of the ``n_layers`` plain stack with their poolings; returns (layers, out).

    ``groups`` > 1: that many independent stacks batched as grouped convs (channel counts are per stack).
    """
    per_stage = LAYERS_PER_STAGE[n_layers]
    stage_of = [s for s, k in enumerate(per_stage) for _ in range(k)]
    layers, c = [], in_chans
    for i in range(start, stop):
        if i > 0 and stage_of[i] != stage_of[i - 1]:
            layers.append(nn.AvgPool2d(2, 2, ceil_mode=True))
        out = scale(STAGE_WIDTHS[stage_of[i]], mult)
        layers += [nn.Conv2d(groups * c, groups * out, 3, padding=1, groups=groups), nn.ReLU()]
        c = out
    return nn.Sequential(*layers), c


def parallel_layers(n_layers: int, fusion: str) -> int:
    """Number of conv layers run in the parallel branches for ``fusion``."""
    if fusion not in FUSION:
        raise ValueError(f"unknown fusion {fusion!r}: valid are {', '.join(FUSION)}")
    return min(max(int(n_layers * FUSION[fusion] / 8 + 0.5), 1), n_layers - 1)


class Plain(nn.Module):
    """Plain conv + ReLU stack (see the module docstring for the layout), optionally multimodal.

    Parameters
    ----------
    bands, n_bins, image_size, width
        As for the other networks.
    n_layers : {5, 10, 21}
        Conv layers.
    multimodal : bool
        Run the first layers as parallel modality branches; the options below only apply then.
    size, orders, fusion, all_bands_modality, modality_dropout, drop_modalities, branch_form
        As for :class:`pipeline.nn.multimodal.Multimodal` (concatenation fusion only).
    """

    def __init__(self, bands, n_bins, image_size=64, width=1.0, n_layers=10, multimodal=False, size=2, orders=(1,),
                 fusion="early", all_bands_modality=False, modality_dropout=0, drop_modalities=(),
                 branch_form=DEFAULT_FORM):  # fmt: skip
        super().__init__()
        if n_layers not in LAYERS_PER_STAGE:
            raise ValueError(f"n_layers must be one of {sorted(LAYERS_PER_STAGE)}, got {n_layers!r}")
        self.bands = list(bands)
        self.n_layers = n_layers
        if multimodal:
            mods = setup_modalities(self, size, orders, all_bands_modality, modality_dropout, drop_modalities)
            k = parallel_layers(n_layers, fusion)

            def make(in_chans, mult, groups):
                return plain_layers(n_layers, 0, k, in_chans, mult, groups)

            mults, common = modality_mults([len(m) for m in mods], len(self.bands), width)
            self.branches = make_branches(branch_form, self.bands, mods, make, mults)
            c = sum(self.branches.chans)
        else:
            self.branches, k, c, common = None, 0, len(self.bands), width
        self.common, c = plain_layers(n_layers, k, n_layers, c, common)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = PhotozHead(c, [scale(h, width) for h in HIDDEN], n_bins)
        init_weights(self)

    def forward_features(self, x):
        if self.branches is not None:
            x = branch_features(self, x)
        return self.pool(self.common(x))

    def forward(self, x, ebv):
        return self.head(self.forward_features(x), ebv)
