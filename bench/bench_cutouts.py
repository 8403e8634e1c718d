"""Time :func:`pipeline.steps.cutouts.extract_cutouts` against per-source references, in one run on the same sources.

Bilinear: ``reproject.reproject_interp`` per source onto the same TAN grid (no background subtraction); our output
is divided by the flux scale factor (output / input pixel area at the tile centre), which reproject does not apply.
Lanczos-3: reproject has no Lanczos kernel (its 'bicubic' is a cubic spline), so the reference is a direct
evaluation of our own kernel with the exact WCS at every pixel (``all_world2pix`` per pixel, the plain 6 x 6
gather of ``resample._interpolate_reference``, area ratio from central differences of the exact map).
Printed: cutouts per second per band for both sides, the ratio and the largest difference / cutout peak; then the
Lanczos-3 / bilinear ratio of our CPU times, and the same with float64 Lanczos taps instead of float32; then the
cost of stacking N exposures of the r band (N copies of the frame, each with its own noise, as separate files)
against the single-tile cutouts of one, by CPU time.

Usage: python bench/bench_cutouts.py [N_SOURCES] [SIZE] [bilinear|lanczos3|both] [MAX_EXPOSURES]
(uses ../shared/data/sdss-frames when present, otherwise a synthetic 2048 x 1489 field of noise)
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import proj_plane_pixel_area

from pipeline.core.mosaics import StackOptions
from pipeline.core.resample import tan_wcs
from pipeline.steps.cutouts import extract_cutouts

FIELD = Path(__file__).resolve().parents[2] / "shared" / "data" / "sdss-frames" / "001035-6-0017"
SCALE = 0.396


def _frames(tmp: Path) -> dict[str, list[str]]:
    """Uncompressed copies of the five SDSS frames (or synthetic ones), so neither side times decompression."""
    out = {}
    for band in "ugriz":
        path = tmp / f"{band}.fits"
        if FIELD.exists():
            with fits.open(FIELD / f"frame-{band}-001035-6-0017.fits.bz2") as hdul:
                fits.PrimaryHDU(hdul[0].data, header=hdul[0].header).writeto(path)
        else:
            rng = np.random.default_rng(0)
            w = WCS(naxis=2)
            w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
            w.wcs.crval = [150.0, 2.0]
            w.wcs.crpix = [1024.5, 745.0]
            w.wcs.cd = np.array([[-1, 0.05], [0.05, 1]]) * SCALE / 3600
            img = rng.lognormal(0, 1, (1489, 2048))
            fits.PrimaryHDU(img.astype(np.float32), header=w.to_header()).writeto(path)
        out[band] = [str(path)]
    return out


def _exact_lanczos(images, bands, ra, dec, size):
    """Our Lanczos-3 kernel with the exact WCS at every output pixel, source by source: (N, n_bands, S, S)."""
    from pipeline.core import resample

    grid = resample.ControlGrid(size, SCALE)
    out = np.zeros((len(ra), len(bands), size, size), dtype=np.float32)
    for i in range(len(ra)):
        for b, band in enumerate(bands):
            data, wcs = images[band]
            x, y, area = grid.exact_map(wcs, ra[i : i + 1], dec[i : i + 1])
            values, _ = resample._interpolate_reference(data, x, y, "lanczos3")
            out[i, b] = (values * area)[0]
    return out


def _exposures(path: str, n: int, tmp: Path) -> list[str]:
    """``n`` copies of a frame as separate exposures, each with its own added noise (so the clipping has work)."""
    with fits.open(path) as hdul:
        data, header = np.asarray(hdul[0].data, dtype=np.float32), hdul[0].header
    sigma = 1.4826 * np.median(np.abs(data - np.median(data)))
    out = []
    for k in range(n):
        rng = np.random.default_rng(k)
        name = tmp / f"exposure-{k}.fits"
        noisy = data + rng.normal(0, sigma, data.shape).astype(np.float32)
        fits.PrimaryHDU(noisy, header=header).writeto(name)
        out.append(str(name))
    return out


def _peak_gaps(ours: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Largest abs(ours - ref) of each cutout over its peak abs(ref), 3 px from the border: (N, n_bands)."""
    inner = slice(3, ref.shape[-1] - 3)
    diff = np.abs(ours[:, :, inner, inner] - ref[:, :, inner, inner]).max(axis=(2, 3))
    return diff / np.abs(ref[:, :, inner, inner]).max(axis=(2, 3))


def _float64_taps(sources, files, ref, size, cpu_ours):
    """The same Lanczos-3 cutouts with float64 taps (``resample.SAMPLE_DTYPE``): CPU time and gap to the reference."""
    from pipeline.core import resample

    kw = dict(size=size, pixel_scale_arcsec=SCALE, interpolation="lanczos3", background="none")
    default, resample.SAMPLE_DTYPE = resample.SAMPLE_DTYPE, np.float64
    try:
        cpu, res = _cpu(lambda: extract_cutouts(sources, files, **kw))
    finally:
        resample.SAMPLE_DTYPE = default
    gap = _peak_gaps(res["cubes"], ref)
    print(f"lanczos3 with float64 taps: {cpu:.2f} s CPU, {cpu / cpu_ours['bilinear']:.2f} x bilinear, "
          f"{cpu / cpu_ours['lanczos3']:.2f} x float32 taps; max |ours - ref| / peak {gap.max():.2e}")  # fmt: skip


def _cpu(fn):
    c0 = time.process_time()
    result = fn()
    return time.process_time() - c0, result


def main(n_sources=50, size=64, methods="both", max_exposures=8):
    from reproject import reproject_interp

    warnings.simplefilter("ignore", FITSFixedWarning)
    n_sources, size, max_exposures = int(n_sources), int(size), int(max_exposures)
    methods = ["bilinear", "lanczos3"] if methods == "both" else [methods]
    with tempfile.TemporaryDirectory() as tmp:
        files = _frames(Path(tmp))
        images = {}
        for band, (path,) in files.items():
            with fits.open(path) as hdul:
                images[band] = (np.array(hdul[0].data), WCS(hdul[0].header))
        data, wcs = images["r"]
        rng = np.random.default_rng(1)
        ny, nx = data.shape
        xy = rng.uniform([100, 100], [nx - 100, ny - 100], (n_sources, 2))
        ra, dec = wcs.all_pix2world(xy[:, 0], xy[:, 1], 0)
        sources = pd.DataFrame({"object_id": np.arange(n_sources), "ra": ra, "dec": dec})
        cpu_ours = {}
        for method in methods:
            kw = dict(size=size, pixel_scale_arcsec=SCALE, interpolation=method, background="none")
            extract_cutouts(sources.iloc[:2], files, **kw)  # warm-up (imports, first file opens)
            t0, c0 = time.perf_counter(), time.process_time()
            res = extract_cutouts(sources, files, **kw)
            t_ours, c_ours = time.perf_counter() - t0, time.process_time() - c0
            cpu_ours[method] = c_ours
            bands = res["bands"]
            t0, c0 = time.perf_counter(), time.process_time()
            if method == "bilinear":
                ref = np.zeros_like(res["cubes"])
                for i in range(n_sources):
                    out_wcs = tan_wcs(ra[i], dec[i], size, SCALE)
                    for b, band in enumerate(bands):
                        ref[i, b] = reproject_interp(images[band], out_wcs, shape_out=(size, size), order="bilinear")[0]
                name = "reproject_interp per source"
            else:
                ref = _exact_lanczos(images, bands, ra, dec, size)
                name = "exact-WCS lanczos3 per source"
            t_ref, c_ref = time.perf_counter() - t0, time.process_time() - c0

            ours = res["cubes"]
            if method == "bilinear":
                out_area = (SCALE / 3600) ** 2
                factor = np.array([out_area / proj_plane_pixel_area(images[b][1]) for b in bands])
                ours = ours / factor[None, :, None, None]
            n_cut = n_sources * len(bands)
            gap = _peak_gaps(ours, ref)
            print(f"{n_sources} sources x {len(bands)} bands, {size} x {size} px, {method}")
            # One "cutout" is one source in one band; CPU time too, as other jobs may share the cores.
            for label, t, c in (("extract_cutouts", t_ours, c_ours), (name, t_ref, c_ref)):
                rates = f"{t:6.2f} s wall {n_cut / t:6.0f} cutouts/s | {c:6.2f} s CPU {n_cut / c:6.0f}/s"
                print(f"  {label + ':':30s}{rates}")
            print(f"  speed-up by CPU time:          {c_ref / c_ours:8.1f}")
            print(f"  speed-up by wall time:         {t_ref / t_ours:8.1f}")
            print(f"  max |ours - ref| / peak:       {gap.max():.2e}  (median {np.median(gap):.2e})")
        if len(cpu_ours) == 2:
            print(f"lanczos3 / bilinear CPU time: {cpu_ours['lanczos3'] / cpu_ours['bilinear']:.2f}")
            _float64_taps(sources, files, ref, size, cpu_ours)

        # Stacking: N exposures of the r frame against the single-tile cutouts of one (Lanczos-3, r band only).
        counts = [n for n in (1, 2, 4, 8, 16) if n <= max_exposures]
        exposures = _exposures(files["r"][0], max(counts), Path(tmp))
        kw = dict(size=size, pixel_scale_arcsec=SCALE, interpolation="lanczos3", background="none")
        best = StackOptions(combine="best")
        extract_cutouts(sources.iloc[:2], {"r": exposures[:1]}, options=best, **kw)
        single, _ = _cpu(lambda: extract_cutouts(sources, {"r": exposures[:1]}, options=best, **kw))
        print(f"stacking {n_sources} sources, r band, {size} x {size} px, lanczos3 (CPU time):")
        print(f"  single tile (combine=best, 1 file): {single:6.2f} s  {n_sources / single:6.0f} cutouts/s")
        for n in counts:
            t, res = _cpu(lambda n=n: extract_cutouts(sources, {"r": exposures[:n]}, **kw))
            tb, _ = _cpu(lambda n=n: extract_cutouts(sources, {"r": exposures[:n]}, options=best, **kw))
            print(f"  stack of {n:2d}: {t:6.2f} s = {t / single:5.2f} x single ({t / single / n:4.2f} x N); "
                  f"best of {n:2d}: {tb:6.2f} s; exposures per pixel {res['exposures'].mean():.2f}")  # fmt: skip


if __name__ == "__main__":
    main(*sys.argv[1:5])
