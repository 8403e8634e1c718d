"""Detect the sources of the survey's mosaics with photutils, for a survey that has no source catalog.

The footprint of the detection bands' tiles is covered by square TAN patches (``patch_px`` pixels of the cutout
scale, overlapping by a quarter of their side); in each patch every band is resampled, calibrated and stacked as the
cutouts are (:mod:`pipeline.core.mosaics`), its background modelled and removed (photutils ``Background2D``), and
the sources detected and measured (:mod:`pipeline.core.photometry`): a detection image from the detection bands,
segmentation with deblending, centroids, Kron and fixed-aperture fluxes in every band on the same apertures, the
half-light radius and a star/galaxy flag. A source belongs to the patch whose centre is nearest (patches overlap,
sources are kept once). The catalog has the data contract's columns (``object_id`` int64 unique, ``ra``, ``dec``
in degrees, ``ebv`` from the SFD map, ``mag_<band>``, ``magerr_<band>`` Kron AB magnitudes at the reference zero
point, not dereddened) and more (see :func:`detect_sources`).

``object_id`` is made from the position, so that it does not depend on the patches or their order:
``floor(ra * 1e6) * 2**28 + floor((dec + 90) * 1e6)`` (micro-degrees; a collision, two sources within 4 mas, is
resolved by incrementing).
"""

from __future__ import annotations

import argparse
import logging
import math

import numpy as np
import pandas as pd

from pipeline.core import mosaics
from pipeline.core import photometry as phot
from pipeline.core.bands import sort_bands
from pipeline.core.resample import tan_to_sky, tan_wcs
from pipeline.core.sky import tan_project, unit_vectors

log = logging.getLogger(__name__)

# Overlap of neighbouring patches, as a fraction of their side: a source near the edge of its own region still has
# this much of its neighbourhood in the patch.
OVERLAP = 0.25
# Background boxes of a patch, in its pixels.
BACKGROUND_BOX_PX = 64
# The point-source locus: the first peak of the half-light radii of the sources detected at S/N above STAR_SNR; a
# source within STAR_R50_SLACK of it, at S/N above STAR_MIN_SNR, is a star. On the simulated SDSS-like survey this
# finds three quarters of the stars and calls 0.3-1 % of the galaxies stars (a wider slack or a lower S/N finds more
# stars and many more compact galaxies: a galaxy lost to training costs more than a star kept).
STAR_SNR = 50.0
STAR_R50_SLACK = 1.08
STAR_MIN_SNR = 20.0


def patch_centres(tiles: list[mosaics.Tile], patch_px: int, pixel_scale_arcsec: float, region=None):
    """Centres (deg) of the square patches that cover the tiles' footprint: a grid on the tangent plane at the
    footprint's centre, spaced ``(1 - OVERLAP) * patch_px`` pixels; only patches that touch a tile are kept.

    ``region`` (ra, dec, radius_deg) keeps the patches within it.
    """
    corners = []
    for t in tiles:
        ny, nx = t.shape
        xy = np.array([[0, 0], [nx - 1, 0], [0, ny - 1], [nx - 1, ny - 1]], dtype=float)
        corners.append(t.wcs.all_pix2world(xy, 0))
    corners = np.concatenate(corners)
    centre_vec = unit_vectors(corners[:, 0], corners[:, 1]).mean(axis=0)
    ra0 = math.degrees(math.atan2(centre_vec[1], centre_vec[0])) % 360.0
    dec0 = math.degrees(math.asin(centre_vec[2] / np.linalg.norm(centre_vec)))
    if region is not None:
        ra0, dec0 = region[0], region[1]
    xi, eta = tan_project(corners[:, 0], corners[:, 1], (ra0, dec0))
    step = (1.0 - OVERLAP) * patch_px * pixel_scale_arcsec / 3600.0
    half = patch_px * pixel_scale_arcsec / 3600.0 / 2.0
    if region is not None:
        xi_lo = eta_lo = -region[2]
        xi_hi = eta_hi = region[2]
    else:
        xi_lo, xi_hi, eta_lo, eta_hi = xi.min(), xi.max(), eta.min(), eta.max()
    nx = max(1, math.ceil((xi_hi - xi_lo - 2 * half) / step) + 1)
    ny = max(1, math.ceil((eta_hi - eta_lo - 2 * half) / step) + 1)
    gx = (xi_lo + xi_hi) / 2 + (np.arange(nx) - (nx - 1) / 2) * step
    gy = (eta_lo + eta_hi) / 2 + (np.arange(ny) - (ny - 1) / 2) * step
    gxx, gyy = np.meshgrid(gx, gy)
    ra, dec = tan_to_sky([ra0], [dec0], np.deg2rad(gxx.ravel())[None, :], np.deg2rad(gyy.ravel())[None, :])
    ra, dec = ra[0, 0], dec[0, 0]
    # keep the patches that overlap a tile: a patch centre within a tile's radius plus the patch's half-diagonal
    vec = unit_vectors(ra, dec)
    reach = np.deg2rad([t.radius_deg for t in tiles]) + math.sqrt(2) * np.deg2rad(half)
    centres = np.array([t.centre for t in tiles])
    touch = (vec @ centres.T >= np.cos(np.minimum(reach, np.pi))[None, :]).any(axis=1)
    return ra[touch], dec[touch]


def object_ids(ra, dec) -> np.ndarray:
    """Position-based ids (see the module's notes), unique."""
    ids = np.floor((np.asarray(ra) % 360.0) * 1e6).astype(np.int64) * (1 << 28) + np.floor(
        (np.asarray(dec) + 90.0) * 1e6
    ).astype(np.int64)
    order = np.argsort(ids, kind="stable")
    s = ids[order]
    for k in range(1, len(s)):
        if s[k] <= s[k - 1]:
            s[k] = s[k - 1] + 1
    ids[order] = s
    return ids


def _measure_patch(cube, coverage, pixel_noise, bands, det_idx, params):
    """Background, detection and forced photometry of one patch: a dict of arrays, or None without sources.

    The errors are the background RMS maps inflated by the noise correlation of the resampled pixels,
    ``(pixel_noise / rms)^2`` (the tiles' noise per output pixel before interpolation smoothed it, over the
    measured RMS; see :func:`pipeline.steps.photometry.correlation_factors`), at least 1.
    """
    from photutils.background import Background2D

    nb, size = cube.shape[0], cube.shape[-1]
    valid = (cube != 0.0) | (coverage[:, None, None] >= 1.0)
    images = np.zeros(cube.shape)
    rms = np.full(nb, np.nan)
    rms_maps = np.full(cube.shape, np.nan)
    for b in range(nb):
        if valid[b].sum() < BACKGROUND_BOX_PX**2:
            continue
        try:
            bkg = Background2D(cube[b], BACKGROUND_BOX_PX, mask=~valid[b], filter_size=(3, 3))
        except ValueError:  # too few unmasked boxes
            continue
        images[b] = np.where(valid[b], cube[b] - bkg.background, 0.0)
        rms_maps[b] = bkg.background_rms
        rms[b] = float(bkg.background_rms_median)
    usable = [b for b in det_idx if np.isfinite(rms[b]) and rms[b] > 0]
    if not usable:
        return None
    factors = np.ones(nb)
    detection = phot.detection_image(images[usable], rms[usable], valid[usable])
    mask = ~valid[usable].any(axis=0)
    segm, smoothed, _ = phot.segment(detection, params, mask if mask.any() else None)
    if segm is None:
        return None
    for b in range(nb):
        if np.isfinite(rms[b]) and rms[b] > 0 and pixel_noise[b] > 0:
            factors[b] = max(1.0, float(pixel_noise[b] / rms[b]) ** 2)
    errors = np.where(np.isfinite(rms_maps), rms_maps * np.sqrt(factors)[:, None, None], np.inf)
    res = phot.forced_photometry(images, errors, valid, detection, smoothed, segm, params)
    box = dict(zip(segm.labels, segm.slices, strict=True))
    res["touches_edge"] = np.array(
        [_on_edge(box[label], size) for label in res["label"]], dtype=bool
    )  # fmt: skip
    res["correlation"] = factors
    return res


def _on_edge(slices, size: int) -> bool:
    """Whether a segment's bounding box (a pair of slices) reaches the edge of a ``size`` x ``size`` patch."""
    return any(s.start == 0 or s.stop == size for s in slices)


def detect_sources(
    band_files: dict[str, list[str]],
    detect_bands=None,
    pixel_scale_arcsec: float | None = None,
    interpolation: str | None = None,
    settings: phot.DetectSettings | None = None,
    patch_px: int | None = None,
    options: mosaics.StackOptions | None = None,
    region=None,
    preview=None,
    with_ebv: bool = True,
) -> tuple[pd.DataFrame, dict]:
    """Detect and measure the sources of the mosaics.

    Parameters
    ----------
    band_files : dict of str to list of str
        Mosaic FITS files of each band (as for :func:`pipeline.steps.cutouts.extract_cutouts`).
    detect_bands : list of str, optional
        Bands of the detection image (default: all); each must be a band of ``band_files``.
    pixel_scale_arcsec, interpolation
        The patches' pixel scale and the resampling kernel (default: the schema's ``cutouts`` keys).
    settings : DetectSettings, optional
        Detection and aperture settings (default: the schema's ``detect`` section).
    patch_px : int, optional
        Side of the patches (default: the schema's ``detect.patch_px``).
    options : StackOptions, optional
        Calibration and combination of the tiles (the cutouts' own).
    region : (ra, dec, radius_deg), optional
        Detect only within this circle.
    preview : str or Path, optional
        A PNG of the detections over the fully covered patch with the most sources (detection image, Kron radii).
    with_ebv : bool
        Add ``ebv`` from the SFD map.

    Returns
    -------
    catalog : DataFrame
        ``object_id``, ``ra``, ``dec``, ``ebv``; per band ``mag_<band>``, ``magerr_<band>`` (Kron), ``flux_<band>``,
        ``fluxerr_<band>`` (Kron, reference zero-point units), ``mag_aper_<band>``, ``magerr_aper_<band>``;
        ``kron_radius_arcsec``, ``r50_arcsec`` (half-light radius in the detection image), ``ellipticity``,
        ``snr`` (detection S/N), ``is_star`` (on the point-source locus of ``r50``), ``touches_edge`` (the segment
        reaches the patch's edge).
    summary : dict
        Counts, patches, the point-source radius and the magnitude quantiles per band.
    """
    from pipeline.core.config import schema_default

    pixel_scale_arcsec = pixel_scale_arcsec or schema_default("cutouts.pixel_scale_arcsec")
    interpolation = interpolation or schema_default("cutouts.interpolation")
    settings = settings or phot.DetectSettings.from_config()
    patch_px = patch_px or schema_default("detect.patch_px")
    options = options or mosaics.StackOptions()
    if not band_files:
        raise ValueError("no bands given")
    bands = sort_bands(band_files)
    detect_bands = list(detect_bands or bands)
    unknown = [b for b in detect_bands if b not in bands]
    if unknown:
        raise ValueError(f"detection band(s) {unknown} (detect.bands) not among the survey's bands {bands}")
    det_idx = [bands.index(b) for b in detect_bands]
    tiles = mosaics.read_tiles(band_files, bands, options)
    det_tiles = [t for b in detect_bands for t in tiles[b]]
    ra_c, dec_c = patch_centres(det_tiles, patch_px, pixel_scale_arcsec, region)
    log.info("%d patches of %d px over the footprint of %d tiles", len(ra_c), patch_px, len(det_tiles))
    params = settings.in_pixels(pixel_scale_arcsec)
    from scipy.spatial import cKDTree

    owner = cKDTree(unit_vectors(ra_c, dec_c))
    found = []
    info: dict = {}
    ids = np.arange(len(ra_c))
    best_preview = ((-1.0, -1), None)
    blocks = mosaics.iter_blocks(
        ra_c, dec_c, ids, tiles, patch_px, pixel_scale_arcsec, interpolation, "none", options, 1, info
    )
    for rows, cubes, coverage, _, noise in blocks:
        k = int(rows[0])
        res = _measure_patch(cubes[0], coverage[0], noise[0], bands, det_idx, params)
        if res is None:
            continue
        w = tan_wcs(ra_c[k], dec_c[k], patch_px, pixel_scale_arcsec)
        ra, dec = w.all_pix2world(res["x"], res["y"], 0)
        mine = owner.query(unit_vectors(ra, dec))[1] == k
        if region is not None:
            sep = np.rad2deg(
                np.arccos(np.clip(unit_vectors(ra, dec) @ unit_vectors([region[0]], [region[1]])[0], -1, 1))
            )
            mine &= sep <= region[2]
        # the preview: the fully covered patch with the most sources (else the best covered one)
        score = (round(float(coverage[0][det_idx].min()), 2), int(mine.sum()))
        if preview is not None and score > best_preview[0]:
            best_preview = (score, (cubes[0], res, mine, bands, det_idx))
        found.append(_rows(res, ra, dec, mine, bands, pixel_scale_arcsec))
    table = pd.concat(found, ignore_index=True) if found else _rows(None, [], [], [], bands, pixel_scale_arcsec)
    table = _finish(table, bands, options.zero_point, with_ebv)
    summary = _summary(table, bands, len(ra_c))
    if preview is not None and best_preview[1] is not None:
        _draw_preview(preview, *best_preview[1], pixel_scale_arcsec)
    return table, summary


def _rows(res, ra, dec, mine, bands, scale) -> pd.DataFrame:
    if res is None:
        cols = {"ra": np.zeros(0), "dec": np.zeros(0)}
        for name in ("kron_radius", "r50", "ellipticity", "snr", "touches_edge"):
            cols[name] = np.zeros(0)
        for b in bands:
            for kind in ("flux", "fluxerr", "flux_aper", "fluxerr_aper"):
                cols[f"{kind}_{b}"] = np.zeros(0)
        return pd.DataFrame(cols)
    cols = {"ra": np.asarray(ra)[mine], "dec": np.asarray(dec)[mine]}
    for name in ("kron_radius", "r50", "ellipticity", "snr", "touches_edge"):
        cols[name] = np.asarray(res[name])[mine]
    cols["kron_radius"] = cols["kron_radius"] * scale  # arcsec from here on
    cols["r50"] = cols["r50"] * scale
    for b, band in enumerate(bands):
        for kind in ("flux", "fluxerr", "flux_aper", "fluxerr_aper"):
            cols[f"{kind}_{band}"] = res[kind][b][mine]
    return pd.DataFrame(cols)


def _finish(table: pd.DataFrame, bands, zero_point: float, with_ebv: bool) -> pd.DataFrame:
    """Ids, E(B-V), magnitudes, sizes in arcsec, the star flag; the contract's columns first."""
    from pipeline.core.extinction import ebv_at

    table = table.sort_values(["dec", "ra"], kind="stable").reset_index(drop=True)
    out = pd.DataFrame({"object_id": object_ids(table.ra, table.dec), "ra": table.ra, "dec": table.dec})
    out["ebv"] = ebv_at(table.ra, table.dec) if with_ebv and len(table) else np.full(len(table), np.nan)
    for band in bands:
        mag, err = phot.magnitudes(table[f"flux_{band}"], table[f"fluxerr_{band}"], zero_point)
        out[f"mag_{band}"], out[f"magerr_{band}"] = mag, err
    for band in bands:
        out[f"flux_{band}"], out[f"fluxerr_{band}"] = table[f"flux_{band}"], table[f"fluxerr_{band}"]
        mag, err = phot.magnitudes(table[f"flux_aper_{band}"], table[f"fluxerr_aper_{band}"], zero_point)
        out[f"mag_aper_{band}"], out[f"magerr_aper_{band}"] = mag, err
    out["kron_radius_arcsec"] = table["kron_radius"]
    out["r50_arcsec"] = table["r50"]
    out["ellipticity"] = table["ellipticity"]
    out["snr"] = table["snr"]
    out["touches_edge"] = table["touches_edge"].astype(bool)
    out["is_star"], _ = _star_flag(out)
    return out


def _star_flag(table: pd.DataFrame) -> tuple[np.ndarray, float]:
    """True on the point-source locus of the half-light radius; the locus radius (arcsec).

    The locus is the first peak, from the small end, of the distribution of the half-light radii of the sources
    detected at S/N above :data:`STAR_SNR`: stars pile up at the PSF's radius, the smallest there is. A source within
    :data:`STAR_R50_SLACK` of it, at S/N above :data:`STAR_MIN_SNR`, is a star (fainter ones are called galaxies:
    their radii are too noisy). Without stars among the bright sources the locus falls on the most compact
    galaxies.
    """
    r50, snr = table["r50_arcsec"].to_numpy(), table["snr"].to_numpy()
    bright = np.isfinite(r50) & (snr > STAR_SNR)
    if bright.sum() < 6:
        return np.zeros(len(table), dtype=bool), float("nan")
    # the first peak, from the small end, of the histogram of log radii (0.03 dex bins, smoothed by 1-2-1)
    logr = np.log10(r50[bright & (r50 > 0)])
    edges = np.arange(logr.min() - 0.06, logr.max() + 0.09, 0.03)
    counts = np.convolve(np.histogram(logr, edges)[0], [1, 2, 1], mode="same")
    least = max(6, int(0.04 * len(logr)))  # of the smoothed counts: a peak of a few sources at least
    peaks = [i for i in range(1, len(counts) - 1) if counts[i] >= least and counts[i] >= counts[i - 1]
             and counts[i] >= counts[i + 1]]  # fmt: skip
    if not peaks:
        return np.zeros(len(table), dtype=bool), float("nan")
    centre = (edges[peaks[0]] + edges[peaks[0] + 1]) / 2
    near = np.abs(logr - centre) < 0.05
    locus = float(10 ** np.median(logr[near]))
    return (snr > STAR_MIN_SNR) & (r50 < STAR_R50_SLACK * locus), locus


def _summary(table, bands, n_patches) -> dict:
    out = {"n_sources": len(table), "n_patches": n_patches, "n_stars": int(table["is_star"].sum())}
    _, locus = _star_flag(table)
    out["point_source_r50_arcsec"] = locus
    out["mag_quantiles"] = {}
    for b in bands:
        mags = table[f"mag_{b}"].to_numpy()
        q = np.percentile(mags[np.isfinite(mags)], [5, 50, 95]).round(3).tolist() if np.isfinite(mags).any() else None
        out["mag_quantiles"][b] = None if q is None else dict(zip(("5%", "50%", "95%"), q, strict=True))
    return out


def _draw_preview(path, cube, res, mine, bands, det_idx, scale) -> None:
    """The detection patch with the most sources: the sum of the detection bands (asinh stretch) and circles of
    the Kron radius of its sources (blue: kept here, orange: kept by a neighbouring patch)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle

    from pipeline.core.io import atomic_path

    img = cube[det_idx].sum(axis=0)
    sigma = phot.robust_sigma(img[img != 0])
    fig, ax = plt.subplots(figsize=(8, 8))
    ax.imshow(np.arcsinh(img / (3 * sigma)), origin="lower", cmap="gray_r", vmin=-1, vmax=8)
    for x, y, r, keep in zip(res["x"], res["y"], res["kron_radius"], mine, strict=True):
        color = "tab:blue" if keep else "tab:orange"
        ax.add_patch(Circle((x, y), r if np.isfinite(r) else 3, fill=False, color=color, lw=0.8))
    ax.set_title(
        f"{int(np.sum(mine))} sources kept (blue), {int(np.sum(~mine))} in neighbouring patches (orange); "
        f'bands {"+".join(bands[b] for b in det_idx)}, {scale}"/px',
        fontsize=9,
    )
    ax.set_xlabel("x (east left)")
    ax.set_ylabel("y (north up)")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, bbox_inches="tight", format="png")
    plt.close(fig)


def main(argv=None) -> None:
    """``photoz detect``: the source catalog of the mosaics (Parquet), and a JSON summary."""
    from pipeline.core import log as plog
    from pipeline.core.config import schema_default
    from pipeline.core.io import write_json, write_parquet

    parser = argparse.ArgumentParser(prog="photoz detect", description=__doc__.splitlines()[0])
    parser.add_argument("--band", action="append", required=True, metavar="NAME=GLOB", help="mosaics of one band")
    parser.add_argument("--out", required=True, help="output source catalog (Parquet)")
    parser.add_argument("--summary", help="JSON summary (default: beside --out)")
    parser.add_argument("--preview", help="PNG of the detections over one patch")
    parser.add_argument("--pixel-scale", type=float, default=schema_default("cutouts.pixel_scale_arcsec"))
    parser.add_argument(
        "--interpolation", choices=mosaics.INTERPOLATIONS, default=schema_default("cutouts.interpolation")
    )
    parser.add_argument("--patch-px", type=int, default=schema_default("detect.patch_px"))
    parser.add_argument("--region", type=float, nargs=3, metavar=("RA", "DEC", "RADIUS_DEG"), help="detect only here")
    phot.add_detect_arguments(parser)
    mosaics.add_stack_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    plog.setup(args.verbose)
    band_files = dict(mosaics.parse_band(b) for b in args.band)
    table, summary = detect_sources(
        band_files, args.detect_band, args.pixel_scale, args.interpolation, phot.settings_from_args(args),
        args.patch_px, mosaics.options_from_args(args), args.region, args.preview,
    )  # fmt: skip
    write_parquet(table, args.out)
    summary_path = args.summary or str(args.out).rsplit(".", 1)[0] + ".json"
    write_json(summary, summary_path)
    log.info("%d sources (%d stars) detected in %d patches: %s", len(table), summary["n_stars"], summary["n_patches"],
             args.out)  # fmt: skip


if __name__ == "__main__":
    main()
