"""Bytes per galaxy and accuracy of compact qp PDF stores against the full histogram (``production.pdf``).

Reads held-out PDFs of a trained model (a run's ``test_pdf.h5``: the test fold's PDFs with their ``z_spec``),
writes them in each representation through :func:`pipeline.store.pdfs.write_pdfs` (gzip + shuffle, as production
does), reads them back as bin probabilities on the same z grid (:func:`pipeline.store.pdfs.read_pdfs`, i.e. through
``qp.read``) and compares with the full histogram:

- ``B/gal``: file bytes per galaxy (what a catalogue costs on disk: the growth of the file per galaxy, without the
  fixed cost of an HDF5 file, which dominates small samples); ``raw``: bytes of the data arrays per galaxy before
  compression (what a reader holds in memory)
- ``dz_phot``: median and 99th percentile of the absolute change of the median redshift z_phot
- ``dw68``: median absolute change of the width of the central 68 % interval
- ``dCRPS``: relative change of the mean CRPS against z_spec
- ``KS``: the PIT KS statistic against the uniform (full histogram: the first row), and ``sigma_MAD`` of
  (z_phot - z_spec) / (1 + z_spec) from each representation's own median
- ``s/1e4``: seconds to convert 10,000 PDFs

``mixmod`` (3 Gaussians) has no fast conversion: qp fits each PDF by sampling and a mixture fit, about 0.5 s a
galaxy, so it is measured on ``--mixmod-n`` objects only, written by qp's own ``write_to``, and is no production
choice.

Measured on the demo (``config/config.yaml``: simulated, cutouts, match, pack; the baseline trained 3 epochs on fold 0
with ``photoz train``; its 353 held-out PDFs on 180 bins, sigma_MAD 0.030)::

    | representation                    | B/gal | raw | dz_phot med | dz_phot 99% | dw68 med | dCRPS   | KS     |
    | hist (the z grid's bins)          | 566.0 | 720 | 0           | 0           | 0        | +0.00 % | 0.1232 |
    | quant (10 quantiles)              |  40.1 |  40 | 1.88e-04    | 7.64e-04    | 4.39e-04 | -0.09 % | 0.1213 |
    | quant (20 quantiles)              |  67.3 |  80 | 1.01e-04    | 3.85e-04    | 3.05e-04 | -0.00 % | 0.1221 |
    | quant (40 quantiles)              | 118.3 | 160 | 3.25e-05    | 2.61e-04    | 7.08e-05 | -0.00 % | 0.1229 |
    | interp (46 points)                | 152.3 | 184 | 3.72e-04    | 1.84e-03    | 9.82e-04 | -0.11 % | 0.1139 |
    | interp (91 points)                | 289.9 | 364 | 1.60e-04    | 6.44e-04    | 2.52e-04 | -0.01 % | 0.1217 |
    | packed_interp (91 points)         |  47.2 |  95 | 1.67e-04    | 6.17e-04    | 2.42e-04 | -0.02 % | 0.1218 |
    | packed_interp (bin-centre points) |  89.1 | 184 | 8.30e-05    | 2.98e-04    | 1.61e-04 | +0.00 % | 0.1235 |
    | mixmod (3 Gaussians; 100 objects) |  72.0 |  72 | 9.54e-04    | 4.76e-03    | 2.71e-03 | -0.46 % | 0.1543 |

20 quantiles cost a ninth of the histogram's bytes and move z_phot by a twentieth of a bin (0.0022) on average;
mixmod is both the least accurate and, at about 0.5 s a galaxy through qp, no option for a catalogue.

Usage::

    python bench/bench_compact_pdfs.py --pdfs results/models/baseline/fold0/seed0/test_pdf.h5
    python bench/bench_compact_pdfs.py                       # synthetic PDFs (a smoke run)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.core.metrics import delta_z, sigma_mad
from pipeline.core.pdf import point_estimates
from pipeline.core.pdf_metrics import crps_hist, pit_values
from pipeline.store import pdfs

STORAGES = [
    "hist",
    {"representation": "quant", "n_quantiles": 10},
    {"representation": "quant", "n_quantiles": 20},
    {"representation": "quant", "n_quantiles": 40},
    {"representation": "interp", "n_points": 46},
    {"representation": "interp", "n_points": 91},
    {"representation": "packed_interp", "n_points": 91},
    {"representation": "packed_interp", "n_points": None},
]


def _synthetic(n=3000, n_bins=180, seed=0):
    rng = np.random.default_rng(seed)
    edges = np.linspace(0, 0.4, n_bins + 1)
    c = 0.5 * (edges[1:] + edges[:-1])
    z = rng.uniform(0.02, 0.35, n)
    mu, s = z[:, None] + rng.normal(0, 0.015, (n, 1)), rng.uniform(0.006, 0.03, (n, 1))
    logits = -0.5 * ((c - mu) / s) ** 2 + np.log1p(
        0.5 * (rng.random((n, 1)) < 0.2) * np.exp(-((c - mu - 0.1) ** 2) / s**2)
    )
    p = np.exp(np.maximum(logits, -12))
    return np.arange(n), (p / p.sum(axis=1, keepdims=True)).astype(np.float32), edges, z


def _scores(pdf, edges, z_spec) -> dict:
    est = point_estimates(pdf, edges)
    pit = pit_values(pdf, edges, z_spec)
    from scipy import stats

    return {
        "z_phot": est["z_phot"],
        "w68": est["z_hi68"] - est["z_lo68"],
        "crps": float(np.mean(crps_hist(pdf, edges, z_spec))),
        "ks": float(stats.kstest(pit, "uniform").statistic),
        "sigma_mad": sigma_mad(delta_z(est["z_phot"], z_spec)),
    }


def _row(name, nbytes, raw, seconds, n, ref, got) -> str:
    dz = np.abs(got["z_phot"] - ref["z_phot"])
    dw = np.abs(got["w68"] - ref["w68"])
    return (
        f"| {name} | {nbytes:7.1f} | {raw:5.0f} | {np.median(dz):.2e} | {np.percentile(dz, 99):.2e} | "
        f"{np.median(dw):.2e} | {100 * (got['crps'] / ref['crps'] - 1):+6.2f} % | {got['ks']:.4f} | "
        f"{got['sigma_mad']:.5f} | {seconds / n * 1e4:6.2f} |"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pdfs", help="a PDF store with z_spec in its ancil (a run's test_pdf.h5); default synthetic")
    parser.add_argument("--mixmod-n", type=int, default=200, help="objects for the (slow) mixmod conversion; 0: none")
    args = parser.parse_args(argv)

    if args.pdfs:
        store = pdfs.read_pdfs(args.pdfs)
        ids, pdf, edges, z_spec = store["object_id"], store["pdf"], store["z_edges"], store["z_spec"]
        source = args.pdfs
    else:
        ids, pdf, edges, z_spec = _synthetic()
        source = "synthetic PDFs"
    pdf = (pdf / pdf.sum(axis=1, keepdims=True)).astype(np.float32)
    n = len(pdf)
    print(f"{n} PDFs on {len(edges) - 1} bins over z in [{edges[0]:g}, {edges[-1]:g}] from {source}")
    ref = _scores(pdf, edges, z_spec)
    cols = ["representation", "B/gal", "raw", "dz_phot med", "dz_phot 99%", "dw68 med", "dCRPS", "KS", "sigma_MAD",
            "s/1e4"]  # fmt: skip
    print("| " + " | ".join(cols) + " |")
    print("|" + "|".join("---" for _ in cols) + "|")
    with tempfile.TemporaryDirectory() as tmp:
        for storage in STORAGES:
            path, one = Path(tmp) / "p.hdf5", Path(tmp) / "one.hdf5"
            t0 = time.perf_counter()
            pdfs.write_pdfs(path, ids, pdf, edges, storage=storage)
            seconds = time.perf_counter() - t0
            pdfs.write_pdfs(one, ids[:1], pdf[:1], edges, storage=storage)  # the file's fixed cost
            import h5py

            with h5py.File(path, "r") as f:
                raw = sum(f["data"][k].dtype.itemsize * int(np.prod(f["data"][k].shape[1:])) for k in f["data"])
            got = _scores(pdfs.read_pdfs(path)["pdf"], edges, z_spec)
            per_galaxy = (path.stat().st_size - one.stat().st_size) / (n - 1)
            print(_row(pdfs.describe(storage), per_galaxy, raw, seconds, n, ref, got))
        if args.mixmod_n:
            import qp

            m = min(args.mixmod_n, n)
            sub = np.random.default_rng(0).choice(n, m, replace=False)
            hist = qp.Ensemble(qp.hist, data={"bins": edges, "pdfs": pdf[sub]})
            t0 = time.perf_counter()
            ens = hist.convert_to(qp.mixmod, ncomps=3)
            seconds = time.perf_counter() - t0
            path, one = Path(tmp) / "m.hdf5", Path(tmp) / "one.hdf5"
            ens.write_to(str(path))
            ens[:1].write_to(str(one))
            cdf = np.asarray(qp.read(str(path)).cdf(edges)).reshape(m, -1)
            back = np.clip(np.diff(cdf, axis=1), 0, None)
            back /= back.sum(axis=1, keepdims=True)
            ref_sub = _scores(pdf[sub], edges, z_spec[sub])
            got = _scores(back, edges, z_spec[sub])
            name = f"mixmod (3 Gaussians; {m} objects)"
            print(_row(name, (path.stat().st_size - one.stat().st_size) / (m - 1), 3 * 3 * 8, seconds, m, ref_sub, got))
            print(f"(mixmod compared with the full histogram of the same {m} objects: KS {ref_sub['ks']:.4f}, "
                  f"sigma_MAD {ref_sub['sigma_mad']:.5f})")  # fmt: skip
    print(f"full histogram: KS {ref['ks']:.4f}, sigma_MAD {ref['sigma_mad']:.5f}, mean CRPS {ref['crps']:.5f}")


if __name__ == "__main__":
    main()
