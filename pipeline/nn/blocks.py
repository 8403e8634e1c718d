"""Building blocks shared by the networks: channel scaling, stems, inception blocks and the valid-padding tail."""

from __future__ import annotations

import torch
from torch import nn

from .heads import PhotozHead

#: Blocks (0-based) preceded by a 2x2 average pooling in the 8-block inception trunk (paper Sec. 4.2).
POOL_BEFORE = (0, 3, 5)
N_BLOCKS = 8


def scale(channels: int, mult: float, floor: int = 4) -> int:
    """``channels * mult`` rounded, never below ``floor`` (tiny demo widths must still be trainable)."""
    return max(floor, int(round(channels * mult)))


class GroupPReLU(nn.Module):
    """PReLU with one slope per group of ``chans`` consecutive channels: ``groups`` independent ``nn.PReLU()``.

    The grouped form of a set of parallel branches uses it where each branch has a single-slope PReLU; its
    ``weight`` (groups,) is the concatenation of the branches' ``weight`` (1,).
    """

    def __init__(self, groups: int, chans: int):
        super().__init__()
        self.chans = chans
        self.weight = nn.Parameter(torch.full((groups,), 0.25))

    def forward(self, x):
        return nn.functional.prelu(x, self.weight.repeat_interleave(self.chans))


def prelu(groups: int, chans: int) -> nn.Module:
    """``nn.PReLU()`` for one branch (the historical parameter layout), :class:`GroupPReLU` for ``groups`` > 1."""
    return nn.PReLU() if groups == 1 else GroupPReLU(groups, chans)


class Stem(nn.Sequential):
    """5x5 conv + PReLU, then 3x3 conv + tanh: both compress the dynamic range (Treyer et al. 2023).

    With ``groups`` = G > 1 it is G independent stems batched as grouped convs: ``in_chans``, ``c1`` and ``c2``
    are per stem, the input holds the G stems' inputs one after the other and so does the output.
    """

    def __init__(self, in_chans: int, c1: int, c2: int, groups: int = 1):
        g = groups
        super().__init__(
            nn.Conv2d(g * in_chans, g * c1, 5, padding=2, groups=g),
            prelu(g, c1),
            nn.Conv2d(g * c1, g * c2, 3, padding=1, groups=g),
            nn.Tanh(),
        )
        self.out_chans = c2


class Inception(nn.Module):
    """Inception block: 1x1->3x3, 1x1->5x5, 3x3 avg-pool->1x1 and plain 1x1 branches, concatenated.

    Parameters
    ----------
    red, b3, b5, pool, b1 : int
        1x1 reduction width, 3x3 and 5x5 branch widths (``b5 = 0`` drops that branch), pool and 1x1 branch widths.
    act : {"relu", "prelu"}
        Activation after every conv.
    pool_first : bool
        Pool then 1x1 (Szegedy et al. 2015) or 1x1 then pool (P19's public code).
    groups : int
        G > 1 batches G independent blocks of these (per-block) widths as grouped convs; input and output hold
        the G blocks' maps one block after the other, each block's output in the order of a single block.
    """

    def __init__(self, in_chans, red, b3, b5, pool, b1, act="relu", pool_first=True, groups=1):
        super().__init__()
        g = self.groups = groups

        def cba(cin, cout, k):
            conv = nn.Conv2d(g * cin, g * cout, k, padding=k // 2, groups=g)
            return [conv, prelu(g, cout) if act == "prelu" else nn.ReLU()]

        avg = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
        self.b3 = nn.Sequential(*cba(in_chans, red, 1), *cba(red, b3, 3))
        self.b5 = nn.Sequential(*cba(in_chans, red, 1), *cba(red, b5, 5)) if b5 else None
        self.bp = (
            nn.Sequential(avg, *cba(in_chans, pool, 1)) if pool_first else nn.Sequential(*cba(in_chans, pool, 1), avg)
        )
        self.b1 = nn.Sequential(*cba(in_chans, b1, 1))
        self.out_chans = b3 + b5 + pool + b1

    def forward(self, x):
        outs = [self.b1(x), self.b3(x), self.bp(x)]
        if self.b5 is not None:
            outs.insert(2, self.b5(x))
        if self.groups == 1:
            return torch.cat(outs, 1)
        b, g, h, w = x.shape[0], self.groups, x.shape[2], x.shape[3]
        return torch.cat([o.reshape(b, g, -1, h, w) for o in outs], 2).reshape(b, -1, h, w)


def inception_stage(
    in_chans: int, start: int, stop: int, widths: dict, mult: float, groups: int = 1
) -> tuple[nn.Sequential, int]:
    """Blocks ``start .. stop-1`` of the 8-block trunk, with pooling where the trunk has it; returns (stage, out).

    ``groups`` > 1: that many independent stages batched as grouped convs (channel counts are per stage).
    """
    layers, c = [], in_chans
    for i in range(start, stop):
        if i in POOL_BEFORE:
            layers.append(nn.AvgPool2d(2, 2, ceil_mode=True))
        block = Inception(c, **{k: scale(v, mult) for k, v in widths.items()}, groups=groups)
        layers.append(block)
        c = block.out_chans
    return nn.Sequential(*layers), c


def pooled_size(size: int, n_pools: int) -> int:
    """Spatial size after ``n_pools`` 2x2 ceil-mode poolings."""
    for _ in range(n_pools):
        size = -(-size // 2)
    return size


class ValidTail(nn.Sequential):
    """Valid-padding 3x3 convs, then average pooling to ``out_chans`` maps of 1x1 (paper Fig. 1).

    3x3 valid convs of ``out_chans`` maps while the maps are at least 4 pixels wide, then the last average pooling
    over the 2 or 3 pixels left: at 64x64 input (8x8 here) that is 8->6->4->2 then pooling, at 32x32 (4x4) one
    conv 4->2 then pooling. Maps of 2 or 3 pixels (16- to 20-pixel inputs) get a 1x1 conv instead of the 3x3 ones.

    Input (B, ``in_chans``, ``size``, ``size``); output (B, ``out_chans``).
    """

    def __init__(self, in_chans: int, size: int, out_chans: int):
        layers, c = [], in_chans
        while size >= 4:
            layers += [nn.Conv2d(c, out_chans, 3), nn.ReLU()]
            c, size = out_chans, size - 2
        if not layers:
            layers += [nn.Conv2d(c, out_chans, 1), nn.ReLU()]
        layers += [nn.AvgPool2d(size), nn.Flatten()]
        super().__init__(*layers)
        self.out_chans = out_chans


def init_weights(model: nn.Module) -> nn.Module:
    """He-normal convs and linears with zero biases, then the output layers of each head drawn small.

    Why: PyTorch's default init shrinks activations ~sqrt(3)x per layer, so after the ~25 conv layers here the
    input-dependent part of the latent vector was ~1e-7 of its bias-driven part at init.
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and not m.weight.is_meta:  # meta: counting only, nothing to draw
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    for m in model.modules():
        if isinstance(m, PhotozHead) and not m.cls.weight.is_meta:
            m.init_outputs()
    return model
