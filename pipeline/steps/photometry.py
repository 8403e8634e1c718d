"""Photometry of every object of a cutout shard, with photutils on its cutout (all bands on one grid centred on it).

For each object: each band's background and RMS from its valid pixels outside the sources; a detection image from
the detection bands (:mod:`pipeline.core.photometry`); segmentation and deblending; the segment at the centre (the
object, deblended from its neighbours); its Kron and fixed-aperture fluxes in every band on the same apertures, with
errors from the background RMS inflated by the noise correlation of the resampled pixels (measured once per shard
and band on the cutouts' background). Magnitudes are AB at ``survey.zero_point`` and not dereddened. The table's
layout is owned by :mod:`pipeline.store.photometry`.
"""

from __future__ import annotations

import argparse
import logging

import h5py
import numpy as np
import pandas as pd

from pipeline.core import photometry as phot
from pipeline.store import cubes as cube_store
from pipeline.store import photometry as store

log = logging.getLogger(__name__)

BLOCK = 256
# Cutouts whose background measures the noise correlation of each band.
CORRELATION_SAMPLE = 200
# Pixels (output) around the segments left out of the background.
SOURCE_MARGIN_PX = 2
# Largest distance (pixels) from the centre of the cutout to the central segment.
CENTRE_SEARCH_PX = 3.0


def _detection_bands(bands: list[str], wanted, path) -> list[int]:
    if not wanted:
        return list(range(len(bands)))
    unknown = [b for b in wanted if b not in bands]
    if unknown:
        raise ValueError(f"{path}: detection band(s) {unknown} (detect.bands) not among the cutouts' bands {bands}")
    return [bands.index(b) for b in wanted]


def _dilate(mask: np.ndarray, px: int) -> np.ndarray:
    from scipy.ndimage import binary_dilation

    return binary_dilation(mask, iterations=px) if px > 0 and mask.any() else mask


class _Object:
    """The segmentation of one cutout and its background per band."""

    def __init__(self, cube: np.ndarray, coverage: np.ndarray, det_idx, params):
        # The cube convention: invalid pixels are 0; a band fully covered has none (the local background makes one
        # valid pixel exactly 0, the median's own).
        self.valid = (cube != 0.0) | (coverage[:, None, None] >= 1.0)
        nb = cube.shape[0]
        rms0 = np.array([phot.robust_sigma(cube[b][self.valid[b]]) for b in range(nb)])
        usable = [b for b in det_idx if rms0[b] > 0]
        self.segm = self.smoothed = None
        sources = np.zeros(cube.shape[1:], dtype=bool)
        if usable:
            det_valid = self.valid[usable]
            self.detection = phot.detection_image(cube[usable], rms0[usable], det_valid)
            mask = ~det_valid.any(axis=0)
            mask = mask if mask.any() else None
            self.segm, self.smoothed, noise = phot.segment(self.detection, params, mask)
            if self.segm is not None:
                sources = self.segm.data > 0
            # the negative twins of the noise peaks that passed the threshold go too: an even background sample
            sources |= phot.negative_segments(self.smoothed, params, noise, mask)
        else:
            self.detection = np.zeros(cube.shape[1:])
        background = ~_dilate(sources, SOURCE_MARGIN_PX)
        self.bkg = np.zeros(nb)
        self.rms = np.full(nb, np.nan)
        self.residual = np.full(cube.shape, np.nan)
        for b in range(nb):
            sky = self.valid[b] & background
            if sky.sum() >= 10:
                self.bkg[b] = np.median(cube[b][sky])
                self.rms[b] = phot.robust_sigma(cube[b][sky])
                self.residual[b][sky] = cube[b][sky] - self.bkg[b]
        self.images = cube - self.bkg[:, None, None]


def _central_label(segm, size: int):
    """The label of the segment at the cutout's centre (or nearest to it within CENTRE_SEARCH_PX), else 0."""
    if segm is None:
        return 0
    c = (size - 1) / 2.0
    rows, cols = np.nonzero(segm.data)
    if rows.size == 0:
        return 0
    d = np.hypot(rows - c, cols - c)
    k = int(np.argmin(d))
    return int(segm.data[rows[k], cols[k]]) if d[k] <= CENTRE_SEARCH_PX else 0


def correlation_factors(path, det_idx, params, n: int = CORRELATION_SAMPLE) -> tuple[np.ndarray, str]:
    """Per band, the factor by which resampling lowered the variance of a pixel below that of an aperture sum per
    pixel, from the first ``n`` cutouts of the shard, and how it was found.

    With the cubes' ``pixel_noise`` (the noise of an output pixel as the tiles' sky noise gives it, before the
    interpolation smoothed it): the median of ``(pixel_noise / rms)^2`` over the cutouts, ``rms`` their measured
    background RMS (exact for output pixels of the input pixels' size). Without it: the summed autocorrelation of
    the cutouts' backgrounds (:func:`pipeline.core.photometry.correlation_factor`), which faint neighbours bias up.
    """
    with h5py.File(path, "r") as f:
        m = min(n, f["cubes"].shape[0])
        cubes, coverage = f["cubes"][:m], f["coverage"][:m]
        noise = f["pixel_noise"][:m] if "pixel_noise" in f else None
    nb = cubes.shape[1]
    if m == 0:
        return np.ones(nb), "none"
    objects = [_Object(cube, cov, det_idx, params) for cube, cov in zip(cubes, coverage, strict=True)]
    if noise is not None and np.all(noise > 0):
        rms = np.array([o.rms for o in objects])  # (m, nb)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.nanmedian((noise / rms) ** 2, axis=0)
        return np.where(np.isfinite(ratio) & (ratio > 0), np.maximum(ratio, 1.0), 1.0), "pixel_noise"
    residuals = np.stack([o.residual for o in objects])  # (m, nb, S, S)
    return np.array([phot.correlation_factor(residuals[:, b]) for b in range(nb)]), "autocorrelation"


def measure_shard(
    path,
    detect_bands=None,
    settings: phot.DetectSettings | None = None,
    zero_point: float | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Photometry of every object of the cutout shard at ``path`` (layout of :mod:`pipeline.store.cubes`).

    Parameters
    ----------
    path : str or Path
        A cutout shard (HDF5).
    detect_bands : list of str, optional
        Bands of the detection image (default: all).
    settings : DetectSettings, optional
        Detection and aperture settings (default: the schema's ``detect`` section).
    zero_point : float, optional
        AB magnitude of one unit of the cubes (default: the schema's ``survey.zero_point``).

    Returns
    -------
    table : DataFrame
        The columns of :func:`pipeline.store.photometry.columns`, one row per object in the shard's order.
    meta : dict
        ``bands``, ``zero_point``, ``aperture_diameter_arcsec``, ``pixel_scale_arcsec``, ``correlation``.
    """
    from pipeline.core.config import schema_default

    settings = settings or phot.DetectSettings.from_config()
    zero_point = schema_default("survey.zero_point") if zero_point is None else zero_point
    attrs = cube_store.read_attrs(path)
    bands, size, scale = attrs["bands"], int(attrs["size"]), float(attrs["pixel_scale_arcsec"])
    det_idx = _detection_bands(bands, detect_bands, path)
    params = settings.in_pixels(scale)
    factors, how = correlation_factors(path, det_idx, params)
    log.info("noise correlation factors (%s) %s", how, dict(zip(bands, np.round(factors, 3), strict=True)))
    with h5py.File(path, "r") as f:
        object_id = f["object_id"][()].astype(np.int64)
        n = len(object_id)
        rows = []
        from pipeline.core.log import progress

        for start in progress(range(0, n, BLOCK), total=-(-n // BLOCK), desc="photometry: blocks", log=log):
            block = slice(start, start + BLOCK)
            for cube, cov in zip(f["cubes"][block], f["coverage"][block], strict=True):
                rows.append(_measure_one(cube, cov, det_idx, params, factors, size))
    table = _table(object_id, rows, bands, scale, zero_point)
    meta = {
        "bands": bands,
        "zero_point": zero_point,
        "aperture_diameter_arcsec": settings.aperture_diameter_arcsec,
        "pixel_scale_arcsec": scale,
        "correlation": dict(zip(bands, map(float, factors), strict=True)),
        "correlation_from": how,
    }
    return table, meta


def _measure_one(cube, coverage, det_idx, params, factors, size) -> dict:
    """The photometry of one cutout: a dict of per-band arrays (nb,) and scalars."""
    obj = _Object(cube, coverage, det_idx, params)
    errors = np.where(obj.rms > 0, obj.rms * np.sqrt(factors), np.nan)
    label = _central_label(obj.segm, size)
    flag = 0
    if label == 0:
        flux_aper, err_aper = _aperture_at_centre(obj, errors, params.aperture_radius_px, size)
        return {"flux": flux_aper, "fluxerr": err_aper, "flux_aper": flux_aper, "fluxerr_aper": err_aper,
                "kron_radius": np.nan, "r50": np.nan, "flag": store.FLAGS["not_detected"]}  # fmt: skip
    err_maps = np.where(np.isfinite(errors), errors, np.inf)
    res = phot.forced_photometry(
        obj.images, err_maps, obj.valid, obj.detection, obj.smoothed, obj.segm, params, labels=[label]
    )
    flux, fluxerr = res["flux"][:, 0], res["fluxerr"][:, 0]
    aper, apererr = res["flux_aper"][:, 0], res["fluxerr_aper"][:, 0]
    kron = float(res["kron_radius"][0])
    if not np.isfinite(kron):
        flag |= store.FLAGS["no_kron_radius"]
        flux, fluxerr = aper.copy(), apererr.copy()
    mine = obj.segm.data == label
    if _touches_other(obj.segm.data, mine):
        flag |= store.FLAGS["blended"]
    if mine[0].any() or mine[-1].any() or mine[:, 0].any() or mine[:, -1].any():
        flag |= store.FLAGS["edge"]
    if res["missing"][0]:
        flag |= store.FLAGS["missing_pixels"]
    no_data = ~obj.valid.any(axis=(1, 2))
    for arr in (flux, fluxerr, aper, apererr):
        arr[no_data] = np.nan
    return {"flux": flux, "fluxerr": fluxerr, "flux_aper": aper, "fluxerr_aper": apererr, "kron_radius": kron,
            "r50": float(res["r50"][0]), "flag": flag}  # fmt: skip


def _touches_other(labels: np.ndarray, mine: np.ndarray) -> bool:
    """Whether the segment ``mine`` touches a segment of another label (it was deblended from a neighbour)."""
    ring = _dilate(mine, 1) & ~mine
    return bool((labels[ring] != 0).any())


def _aperture_at_centre(obj, errors, radius: float, size: int):
    """Fixed-aperture fluxes and errors at the cutout's centre, per band (for an object without a segment)."""
    from photutils.aperture import CircularAperture, aperture_photometry

    c = (size - 1) / 2.0
    aperture = CircularAperture((c, c), r=radius)
    nb = obj.images.shape[0]
    flux, err = np.full(nb, np.nan), np.full(nb, np.nan)
    for b in range(nb):
        if not obj.valid[b].any() or not np.isfinite(errors[b]):
            continue
        data = np.where(obj.valid[b], obj.images[b], np.nan)
        t = aperture_photometry(data, aperture, error=np.full(data.shape, errors[b]), mask=~obj.valid[b])
        flux[b], err[b] = float(t["aperture_sum"][0]), float(t["aperture_sum_err"][0])
    return flux, err


def _table(object_id, rows, bands, scale, zero_point) -> pd.DataFrame:
    cols: dict = {"object_id": object_id}
    for kind in ("", "_aper"):
        flux = np.array([r[f"flux{kind}"] for r in rows]).reshape(len(rows), len(bands))
        err = np.array([r[f"fluxerr{kind}"] for r in rows]).reshape(len(rows), len(bands))
        mag, magerr = phot.magnitudes(flux, err, zero_point)
        for b, band in enumerate(bands):
            cols[f"flux{kind}_{band}"] = flux[:, b].astype(np.float32)
            cols[f"fluxerr{kind}_{band}"] = err[:, b].astype(np.float32)
            cols[f"mag{kind}_{band}"] = mag[:, b].astype(np.float32)
            cols[f"magerr{kind}_{band}"] = magerr[:, b].astype(np.float32)
    cols["kron_radius_arcsec"] = np.array([r["kron_radius"] for r in rows], dtype=np.float32) * np.float32(scale)
    cols["r50_arcsec"] = np.array([r["r50"] for r in rows], dtype=np.float32) * np.float32(scale)
    cols["flag"] = np.array([r["flag"] for r in rows], dtype=np.int32)
    return pd.DataFrame(cols)[store.columns(bands)]


def main(argv=None) -> None:
    """``photoz photometry``: the photometry of every object of a cutout shard, as a Parquet table."""
    from pipeline.core import log as plog
    from pipeline.core.config import schema_default

    parser = argparse.ArgumentParser(prog="photoz photometry", description=__doc__.splitlines()[0])
    parser.add_argument("--cutouts", required=True, help="cutout shard (HDF5)")
    parser.add_argument("--out", required=True, help="output Parquet table")
    parser.add_argument("--zero-point", type=float, default=schema_default("survey.zero_point"), help="AB of 1 unit")
    phot.add_detect_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    plog.setup(args.verbose)
    table, meta = measure_shard(args.cutouts, args.detect_band, phot.settings_from_args(args), args.zero_point)
    store.write(table, args.out, meta)
    detected = (table["flag"] & store.FLAGS["not_detected"]) == 0
    log.info(
        "photometry of %d objects (%d detected at their centre) written to %s", len(table), detected.sum(), args.out
    )


if __name__ == "__main__":
    main()
