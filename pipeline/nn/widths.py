"""Channel widths of the inception networks and the multimodal width rule, fitted to the paper's Table C.1.

Base widths (the baseline, ``width`` = 1; the paper gives none of them, only the structure):

- stem: 5x5 conv of ``STEM[0]`` maps (PReLU), 3x3 conv of ``STEM[1]`` maps (tanh);
- each of the 8 inception blocks: ``BLOCK`` (1x1 reductions 176 before the 3x3 and 5x5 convs of 272 maps, pool
  branch 176, 1x1 branch 192: 912 maps out). These are the earlier 101/156/156/101/109 block scaled by ~1.74;
- tail: 3x3 valid convs of ``LATENT`` = 96 maps, then average pooling to 96 maps of 1x1 (paper Sec. 3.2, Fig. 1);
- head: E(B-V) appended (97 features), two FC layers of ``HIDDEN`` = 384, classification and regression outputs.

Rule (two constants, :func:`modality_mults`): with ``M`` > 1 modalities out of ``n`` bands, the branch of a
modality of ``s`` bands is ``min(1, BRANCH_SLOPE * s / n)`` times the base widths and every block after the fusion
(the common part) is ``COMMON_MULT`` times them; the tail and head are the baseline's. With ``M`` = 1 nothing is
fused and the network is the baseline on the modality's bands (so a single all-band modality *is* the baseline).
Everything is further scaled by ``width`` (the demo's knob) and rounded, never below 4 maps.

Why these values: the paper's counts (9 bands, 64x64; 180 bins assumed) pin them down. The order series is exactly
linear in the number of modalities (0.694 M per 2-band modality at early fusion, intercept 6.96 M), so the common
part does not depend on ``M``; the size series is quadratic in ``s`` (0.143 s^2 + 0.061 s M per modality), so a
branch's width is linear in ``s``; each fusion step that moves one block from the common part into the 8 branches
adds ~1.36 M although extremely early fusion is only half the baseline, so the common blocks are narrower than the
baseline's and the baseline's blocks carry most of its 19 M parameters (hence the wide blocks, small tail and
head). Least squares on log(ours / paper) over the 12 multimodal rows (``python bench/bench_nn_params.py --fit``)
gives slope 1.646 and common 0.676; the rounded 1.64 and 0.68 put every row within 2.1 % (rms 1.2 %), keep the
order of each of the three series, and give the 2-band early-fusion net 0.66 x the baseline's parameters and
0.90 x its multiply-accumulates. With the earlier 101/156/156/101/109 blocks (0.75 M each; the baseline brought to
19 M by a wide FC head) no two constants fit: the best leave rows 25-45 % off (the 1-band row high, the 5-band row
low, its branches saturating at the baseline width).
"""

from __future__ import annotations

STEM = (96, 96)
BLOCK = {"red": 176, "b3": 272, "b5": 272, "pool": 176, "b1": 192}
LATENT = 96
HIDDEN = (384, 384)

#: Branch width per band, as a fraction of the base widths times the number of bands: ``min(1, k s / n)``.
BRANCH_SLOPE = 1.64
#: Width of the common part (blocks after the fusion) of a network with more than one modality.
COMMON_MULT = 0.68


def branch_mult(s: int, n: int, width: float) -> float:
    """Channel multiplier of the branch of an ``s``-band modality out of ``n`` bands, in a multimodal network."""
    return width * min(1.0, BRANCH_SLOPE * s / n)


def modality_mults(sizes, n: int, width: float) -> tuple[list[float], float]:
    """Channel multipliers of each modality's branch and of the common part.

    Parameters
    ----------
    sizes : sequence of int
        Number of bands of each modality.
    n : int
        Number of input bands.
    width : float
        Global multiplier on every channel count.

    Returns
    -------
    branch : list of float
        One multiplier per modality.
    common : float
        Multiplier of the blocks after the fusion.
    """
    sizes = list(sizes)
    if len(sizes) == 1:  # nothing to fuse: the baseline on these bands
        return [width], width
    return [branch_mult(s, n, width) for s in sizes], width * COMMON_MULT
