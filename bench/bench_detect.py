"""Detection and photometry against the truth of a simulated survey, and detection on real SDSS frames.

1. ``detect``: completeness (true sources with a detection within 1") and purity (detections with a true source
   within 1") by r magnitude, the star/galaxy flag against the truth, and the Kron and aperture magnitude residuals
   of the matched sources, on a simulated SDSS-like survey (default: galaxies r = 14-20.8, stars 14-21).
2. ``photometry``: the photometry of every cutout (rule ``photometry``) against ``mag_true_<band>`` by magnitude, on
   the demo's survey (galaxies r = 14-18.3), for cutouts of 32 px with the local background (the demo's) and of
   64 px without it (the paper's size); colour residuals too.
3. ``sdss``: detection over one real SDSS field (../shared/data/sdss-frames), with a PNG of the detections.

Usage: python bench/bench_detect.py [detect|photometry|sdss|all] [OUT_DIR]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

SDSS = Path(__file__).resolve().parents[2] / "shared" / "data" / "sdss-frames" / "001035-6-0017"
BANDS = list("ugriz")


def _files(survey: Path) -> dict:
    return {b: sorted(str(p) for p in (survey / "mosaics" / b).glob("*.fits")) for b in BANDS}


def _match(a: pd.DataFrame, b: pd.DataFrame, radius_arcsec: float):
    """For each row of ``a``, the index of the nearest row of ``b`` within the radius (-1 if none)."""
    from pipeline.core.sky import nearest

    return nearest(a.ra, a.dec, b.ra, b.dec, radius_arcsec)[0]


def _mad(x) -> float:
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    return float(1.4826 * np.median(np.abs(x - np.median(x)))) if x.size else float("nan")


def bench_detect(out: Path) -> None:
    from pipeline.sim.survey import simulate_survey
    from pipeline.steps.detect import detect_sources

    survey = out / "sim-detect"
    if not survey.exists():
        simulate_survey({"preset": "sdss", "n_sources": 800, "seed": 5}, survey)
    truth = pd.read_parquet(survey / "sources.parquet")
    t0 = time.perf_counter()
    cat, summary = detect_sources(_files(survey), preview=out / "detect-sim.png")
    elapsed = time.perf_counter() - t0
    cat.to_parquet(out / "detect-sim.parquet")
    # truth inside the detected footprint only (the field's outer 5": tiles of some bands stop there)
    tm = _match(truth, cat, 1.0)
    dm = _match(cat, truth, 1.0)
    print(f"simulated survey: {len(truth)} true sources, {len(cat)} detected in {elapsed:.0f} s "
          f"({summary['n_patches']} patches); point-source r50 {summary['point_source_r50_arcsec']:.2f}\"")  # fmt: skip
    print("r mag      true  found  completeness | detected  real  purity")
    det_r = cat["mag_r"].to_numpy()
    for lo in np.arange(14, 23, 1.0):
        t_sel = (truth.mag_true_r >= lo) & (truth.mag_true_r < lo + 1)
        d_sel = (det_r >= lo) & (det_r < lo + 1)
        comp = (tm[t_sel] >= 0).mean() if t_sel.any() else np.nan
        pur = (dm[d_sel] >= 0).mean() if d_sel.any() else np.nan
        print(f"{lo:4.0f}-{lo + 1:<4.0f} {t_sel.sum():6d} {(tm[t_sel] >= 0).sum():6d} {comp:12.3f} | "
              f"{d_sel.sum():8d} {(dm[d_sel] >= 0).sum():5d} {pur:7.3f}")  # fmt: skip
    ok = dm >= 0
    m = cat[ok].reset_index(drop=True)
    t = truth.iloc[dm[ok]].reset_index(drop=True)
    print("star flag vs truth (rows: is_star detected, columns: true star):")
    print(pd.crosstab(m.is_star.to_numpy(), t.is_star.to_numpy()))
    print('Kron and 3" aperture magnitudes of the matched sources, minus the true ones (median / MAD):')
    print("r mag      n   " + "  ".join(f"{b}: kron       aper" for b in BANDS))
    for lo in np.arange(14, 23, 1.0):
        sel = (t.mag_true_r >= lo) & (t.mag_true_r < lo + 1)
        cells = []
        for b in BANDS:
            dk = (m[f"mag_{b}"] - t[f"mag_true_{b}"])[sel]
            da = (m[f"mag_aper_{b}"] - t[f"mag_true_{b}"])[sel]
            cells.append(f"{np.nanmedian(dk):+.3f}/{_mad(dk):.3f} {np.nanmedian(da):+.3f}")
        print(f"{lo:4.0f}-{lo + 1:<4.0f} {sel.sum():4d}  " + "  ".join(cells))
    json.dump(summary, open(out / "detect-sim.json", "w"), indent=1)


def bench_photometry(out: Path) -> None:
    from pipeline.sim.survey import simulate_survey
    from pipeline.steps.cutouts import extract_to_hdf5
    from pipeline.steps.photometry import measure_shard

    survey = out / "sim-demo"
    if not survey.exists():
        simulate_survey({"preset": "sdss", "n_sources": 600, "seed": 42, "mag_range": [14.0, 18.3]}, survey)
    truth = pd.read_parquet(survey / "sources.parquet")
    for size, background in ((32, "local"), (64, "none")):
        h5 = out / f"cutouts-{size}-{background}.h5"
        if not h5.exists():
            extract_to_hdf5(truth, _files(survey), h5, size=size, background=background)
        t0 = time.perf_counter()
        table, meta = measure_shard(h5)
        elapsed = time.perf_counter() - t0
        m = table.merge(truth, on="object_id", suffixes=("", "_true"))
        clean = (m.flag & 1) == 0
        corr = json.dumps({k: round(v, 2) for k, v in meta["correlation"].items()})
        flags = np.bincount(m.flag, minlength=32)[:17].tolist()
        print(f"\ncutouts {size} px, background {background}: {len(m)} objects in {elapsed:.0f} s "
              f"({elapsed / len(m) * 1e3:.0f} ms each); flags {flags}")  # fmt: skip
        print(f"noise correlation ({meta['correlation_from']}): {corr}")
        print("r mag      n   " + "  ".join(f"{b}: kron med/MAD pull" for b in BANDS) + "   g-r   r-i")
        for lo in np.arange(14, 19, 1.0):
            sel = clean & (m.mag_true_r >= lo) & (m.mag_true_r < lo + 1)
            cells = []
            for b in BANDS:
                d = (m[f"mag_{b}"] - m[f"mag_true_{b}"])[sel]
                pull = d / m[f"magerr_{b}"][sel]
                cells.append(f"{np.nanmedian(d):+.3f}/{_mad(d):.3f} {_mad(pull):4.1f}")
            colours = []
            for b1, b2 in (("g", "r"), ("r", "i")):
                dc = ((m[f"mag_{b1}"] - m[f"mag_{b2}"]) - (m[f"mag_true_{b1}"] - m[f"mag_true_{b2}"]))[sel]
                colours.append(f"{np.nanmedian(dc):+.3f}/{_mad(dc):.3f}")
            print(f"{lo:4.0f}-{lo + 1:<4.0f} {sel.sum():4d}  " + "  ".join(cells) + "  " + " ".join(colours))


def bench_sdss(out: Path) -> None:
    from pipeline.steps.detect import detect_sources

    if not SDSS.exists():
        print("no SDSS frames at", SDSS)
        return
    files = {b: sorted(str(p) for p in SDSS.glob(f"frame-{b}-*.fits*")) for b in BANDS}
    t0 = time.perf_counter()
    cat, summary = detect_sources(files, preview=out / "detect-sdss.png")
    elapsed = time.perf_counter() - t0
    cat.to_parquet(out / "detect-sdss.parquet")
    print(f"\nSDSS field {SDSS.name}: {len(cat)} sources ({summary['n_stars']} stars) in {elapsed:.0f} s, "
          f"{summary['n_patches']} patches; point-source r50 {summary['point_source_r50_arcsec']:.2f}\"")  # fmt: skip
    print("magnitude quantiles (5 %, 50 %, 95 %):", json.dumps(summary["mag_quantiles"]))
    hist, edges = np.histogram(cat["mag_r"].dropna(), bins=np.arange(12, 26, 1.0))
    print("r counts per magnitude:", dict(zip(edges[:-1].astype(int).tolist(), hist.tolist(), strict=True)))
    json.dump(summary, open(out / "detect-sdss.json", "w"), indent=1)


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    out = Path(sys.argv[2] if len(sys.argv) > 2 else "bench-detect-out")
    out.mkdir(parents=True, exist_ok=True)
    for name, fn in (("detect", bench_detect), ("photometry", bench_photometry), ("sdss", bench_sdss)):
        if what in (name, "all"):
            fn(out)
