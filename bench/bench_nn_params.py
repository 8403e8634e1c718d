"""Parameter counts and forward MACs of the paper's Table C.1 configurations beside the paper's numbers.

HSC 9 bands (ugrizyjhk), 64x64 cutouts, 180 bins (the paper does not state its HSC bin count; 180 is P19's).
MACs: conv and linear multiply-accumulates per sample, counted with forward hooks on one 64x64 input.

What to compare with the paper is the trends, not the offsets: ours grow with the fusion depth, grow faster than
linearly with the modality size and linearly with the number of modalities (the order rows), as the paper's do
(branch width rule in ``pipeline/nn/branches.py``). The paper's multimodal networks are all far below its
baseline (extremely early fusion at half), which a common part shared with the baseline cannot give: ours keep a
single all-band modality equal to the baseline, so they sit around it. The last rows are the plain CNNs of
Sec. 7.1 (no parameter counts in the paper), single-modality and 2-band 1st-order early-fusion multimodal.

Usage: ``python bench/bench_nn_params.py``
"""

from __future__ import annotations

import torch

from pipeline.nn import build_model
from pipeline.nn.flops import count_macs

BANDS = list("ugrizyjhk")
N_BINS, SIZE = 180, 64
# (label, model options, paper's parameters in millions); multimodal rows default to size 2, order 1, early concat.
ROWS = [
    ("Baseline", None, 19.03),
    ("2b 1st: extremely early", {"fusion": "extremely_early"}, 9.52),
    ("2b 1st: very early", {"fusion": "very_early"}, 11.16),
    ("2b 1st: early", {"fusion": "early"}, 12.51),
    ("2b 1st: middle", {"fusion": "middle"}, 15.22),
    ("2b 1st: late", {"fusion": "late"}, 17.94),
    ("early 1st: 1 band", {"size": 1}, 8.80),
    ("early 1st: 3 bands", {"size": 3}, 17.23),
    ("early 1st: 4 bands", {"size": 4}, 22.11),
    ("early 1st: 5 bands", {"size": 5}, 26.29),
    ("early 2b: orders 1,2", {"orders": [1, 2]}, 17.37),
    ("early 2b: orders 1,2,3", {"orders": [1, 2, 3]}, 21.54),
    ("early 2b: orders 2,3", {"orders": [2, 3]}, 15.98),
    ("early 2b cross (not in C.1)", {"fusion_type": "cross"}, None),
    ("early 2b + all-band (Sec 7.3)", {"all_bands_modality": True}, None),
]


def main():
    torch.set_num_threads(1)
    rows = [("P19 (5 bands ugriz)", "p19", {}, BANDS[:5], None)]
    rows += [(label, "baseline" if o is None else "multimodal", o or {}, BANDS, p) for label, o, p in ROWS]
    for n_layers in (5, 10, 21):
        rows.append((f"plain {n_layers} layers", "plain", {"n_layers": n_layers}, BANDS, None))
        rows.append((f"plain {n_layers} layers, 2b 1st early", "plain", {"n_layers": n_layers, "multimodal": True},
                     BANDS, None))  # fmt: skip
    base = None
    print(
        f"{'configuration':32s} {'ours (M)':>9s} {'paper (M)':>9s} {'ours/base':>9s} {'paper/base':>10s} {'GMACs':>7s}"
    )
    for label, name, opts, bands, paper in rows:
        model = build_model(name, bands, N_BINS, SIZE, **opts)
        n = sum(p.numel() for p in model.parameters()) / 1e6
        if name == "baseline":
            base = n
        if name == "plain" and not opts.get("multimodal"):
            base = n  # plain multimodal rows relative to their single-modality plain network
        macs = count_macs(model, len(bands), SIZE) / 1e9
        ratio = f"{n / base:9.2f}" if base else f"{'':9s}"
        pratio = f"{paper / 19.03:10.2f}" if paper else f"{'':10s}"
        ptxt = f"{paper:9.2f}" if paper else f"{'-':>9s}"
        print(f"{label:32s} {n:9.2f} {ptxt} {ratio} {pratio} {macs:7.3f}")


if __name__ == "__main__":
    main()
