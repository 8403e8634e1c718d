"""Parameter counts and forward MACs of the paper's Table C.1 configurations beside the paper's numbers.

HSC 9 bands (ugrizyjhk), 64x64 cutouts, 180 bins (the paper does not state its HSC bin count; 180 is P19's).
Counts and MACs come from the networks built on the meta device (shapes only, no memory). MACs: conv and linear
multiply-accumulates of one sample's forward pass; "MACs/base" is relative to the inception baseline (plain CNN
rows: to the single-modality plain CNN of the same depth).

Then the width rule of ``pipeline/nn/widths.py`` with its constants, the fit residuals over the 12 multimodal rows
and whether each of the table's three series keeps the paper's order. ``--fit`` re-derives the two constants by
least squares on log(ours / paper) over those 12 rows (Nelder-Mead; about two minutes on one core).

Usage: ``python bench/bench_nn_params.py [--fit]``
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from pipeline.nn import build_model, widths
from pipeline.nn.flops import count_macs

BANDS = list("ugrizyjhk")
N_BINS, SIZE = 180, 64
# (label, model options or None for the baseline, paper's parameters in millions, series); multimodal rows default
# to size 2, order 1, early concatenation fusion
TABLE_C1 = [
    ("Baseline", None, 19.03, None),
    ("2b 1st: extremely early", {"fusion": "extremely_early"}, 9.52, "fusion"),
    ("2b 1st: very early", {"fusion": "very_early"}, 11.16, "fusion"),
    ("2b 1st: early", {"fusion": "early"}, 12.51, "fusion"),
    ("2b 1st: middle", {"fusion": "middle"}, 15.22, "fusion"),
    ("2b 1st: late", {"fusion": "late"}, 17.94, "fusion"),
    ("early 1st: 1 band", {"size": 1}, 8.80, "size"),
    ("early 1st: 2 bands", {"size": 2}, 12.51, "size"),
    ("early 1st: 3 bands", {"size": 3}, 17.23, "size"),
    ("early 1st: 4 bands", {"size": 4}, 22.11, "size"),
    ("early 1st: 5 bands", {"size": 5}, 26.29, "size"),
    ("early 2b: orders 1,2", {"orders": [1, 2]}, 17.37, "orders"),
    ("early 2b: orders 1,2,3", {"orders": [1, 2, 3]}, 21.54, "orders"),
    ("early 2b: orders 2,3", {"orders": [2, 3]}, 15.98, "orders"),
]
EXTRA = [
    ("early 2b cross (not in C.1)", {"fusion_type": "cross"}),
    ("early 2b + all-band (Sec 7.3)", {"all_bands_modality": True}),
    ("early 2b + 1b (Sec 7.4)", {"size": [2, 1]}),
]


def build(name: str, bands, **opts):
    """The network on the meta device: shapes only."""
    with torch.device("meta"):
        return build_model(name, bands, N_BINS, SIZE, **opts)


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def table_rows() -> list[tuple]:
    """(label, arch, options, bands, paper M or None, series or None) for every printed row."""
    rows = [("P19 (5 bands ugriz)", "p19", {}, BANDS[:5], None, None)]
    for label, opts, paper, series in TABLE_C1:
        rows.append((label, "baseline" if opts is None else "multimodal", opts or {}, BANDS, paper, series))
    rows += [(label, "multimodal", opts, BANDS, None, None) for label, opts in EXTRA]
    for n_layers in (5, 10, 21):
        rows.append((f"plain {n_layers} layers", "plain", {"n_layers": n_layers}, BANDS, None, None))
        rows.append((f"plain {n_layers} layers, 2b 1st early", "plain", {"n_layers": n_layers, "multimodal": True},
                     BANDS, None, None))  # fmt: skip
    return rows


def c1_counts() -> dict[str, int]:
    """Parameters of the Table C.1 rows with the current width constants."""
    return {
        label: n_params(build("baseline" if opts is None else "multimodal", BANDS, **(opts or {})))
        for label, opts, _, _ in TABLE_C1
    }


def log_errors(counts: dict[str, int]) -> np.ndarray:
    """log(ours / paper) of the 12 multimodal rows (the baseline does not depend on the rule)."""
    return np.array([np.log(counts[label] / 1e6 / paper) for label, opts, paper, _ in TABLE_C1 if opts is not None])


def same_order(counts: dict[str, int], series: str) -> bool:
    """Whether the rows of ``series`` rank as the paper's do."""
    rows = [(paper, counts[label]) for label, _, paper, s in TABLE_C1 if s == series]
    return np.array_equal(np.argsort([p for p, _ in rows]), np.argsort([c for _, c in rows]))


def refit() -> tuple[float, float]:
    """Least-squares (slope, common) on log(ours / paper) over the 12 multimodal rows; the constants are restored."""
    from scipy.optimize import minimize

    saved = widths.BRANCH_SLOPE, widths.COMMON_MULT

    def loss(x):
        widths.BRANCH_SLOPE, widths.COMMON_MULT = x
        return float(np.sum(log_errors(c1_counts()) ** 2))

    try:
        res = minimize(loss, list(saved), method="Nelder-Mead", options={"xatol": 1e-3, "fatol": 1e-7})
    finally:
        widths.BRANCH_SLOPE, widths.COMMON_MULT = saved
    return float(res.x[0]), float(res.x[1])


def print_table():
    print(
        f"{'configuration':32s} {'ours (M)':>9s} {'paper (M)':>9s} {'ours/paper':>10s} {'MACs/base':>9s} {'GMACs':>7s}"
    )
    base_macs = None
    for label, name, opts, bands, paper, _ in table_rows():
        model = build(name, bands, **opts)
        n, macs = n_params(model) / 1e6, count_macs(model, len(bands), SIZE) / 1e9
        if name == "baseline" or (name == "plain" and not opts.get("multimodal")):
            base_macs = macs  # plain multimodal rows relative to their single-modality plain network
        ptxt, rtxt = (f"{paper:9.2f}", f"{n / paper:10.3f}") if paper else (f"{'-':>9s}", f"{'':10s}")
        btxt = f"{macs / base_macs:9.2f}" if base_macs and name != "p19" else f"{'':9s}"
        print(f"{label:32s} {n:9.2f} {ptxt} {rtxt} {btxt} {macs:7.3f}")


def print_fit():
    counts = c1_counts()
    err = log_errors(counts)
    base = counts["Baseline"] / 1e6 / 19.03
    print(
        "\nrule (pipeline/nn/widths.py): M > 1 modalities of n bands: branch of s bands = "
        "min(1, BRANCH_SLOPE * s / n), common blocks = COMMON_MULT (x base widths, x width); M = 1: the baseline"
    )
    print(f"constants: BRANCH_SLOPE = {widths.BRANCH_SLOPE}, COMMON_MULT = {widths.COMMON_MULT}")
    print(
        f"baseline {counts['Baseline'] / 1e6:.2f} M = {base:.4f} x paper; 12 multimodal rows: rms log error "
        f"{np.sqrt(np.mean(err**2)):.4f}, worst {np.max(np.abs(np.expm1(err))):.1%}; same order as the paper: "
        + ", ".join(f"{s} {'yes' if same_order(counts, s) else 'NO'}" for s in ("fusion", "size", "orders"))
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", action="store_true", help="re-derive the two width constants by least squares")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print_table()
    print_fit()
    if args.fit:
        slope, common = refit()
        print(f"least squares: BRANCH_SLOPE = {slope:.4f}, COMMON_MULT = {common:.4f}")
        widths.BRANCH_SLOPE, widths.COMMON_MULT = slope, common
        print_fit()


if __name__ == "__main__":
    main()
