"""Time the direct and fast paired bootstrap on synthetic residuals; prints measured and extrapolated seconds.

Usage: python bench/bench_bootstrap.py [--n 516525] [--k-direct 200] [--k-fast 10000] [--target-k 10000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pipeline.core.bootstrap import paired_bootstrap


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    zs = rng.uniform(0.0, 0.4, n)
    za = zs + 0.008 * (1 + zs) * rng.standard_t(3, n)
    zb = zs + 0.0078 * (1 + zs) * rng.standard_t(3, n)
    return zs, za, zb


def _time(method, data, k, seed):
    start = time.perf_counter()
    res = paired_bootstrap(*data, n_boot=k, seed=seed, outlier_threshold=0.05, method=method)
    return time.perf_counter() - start, {m: r["p_value"] for m, r in res["metrics"].items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=516525, help="objects (the SDSS sample of the paper)")
    p.add_argument("--k-direct", type=int, default=200, help="resamples timed with the direct method")
    p.add_argument("--k-fast", type=int, default=10000, help="resamples timed with the fast method (0: skip)")
    p.add_argument("--target-k", type=int, default=10000, help="K to extrapolate to")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    data = _data(args.n)
    print(f"n = {args.n}, target K = {args.target_k}, all three metrics (sigma_MAD, outlier fraction, |bias|)")
    rows = [("direct", args.k_direct)]
    # Same K as the direct run first, so the two p-value sets can be compared on the same random stream.
    rows.append(("fast", args.k_direct))
    if args.k_fast and args.k_fast != args.k_direct:
        rows.append(("fast", args.k_fast))
    pvals = {}
    for method, k in rows:
        if k <= 0:
            continue
        sec, pv = _time(method, data, k, args.seed)
        pvals.setdefault(k, {})[method] = pv
        per = sec / k
        note = "measured" if k == args.target_k else f"extrapolated from K={k}"
        print(
            f"{method:6s} K={k:6d}: measured {sec:8.2f} s ({per * 1e3:7.2f} ms/resample); "
            f"K={args.target_k}: {per * args.target_k:8.1f} s ({note})"
        )
    for k, pv in pvals.items():
        if len(pv) == 2:
            same = pv["direct"] == pv["fast"]
            print(f"p-values at K={k}: direct {pv['direct']}  fast {pv['fast']}  identical: {same}")


if __name__ == "__main__":
    main()
