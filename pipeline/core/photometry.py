"""Multi-band photometry on images that share one pixel grid (a detection patch of the mosaics, or a cutout):
photutils detection, segmentation and deblending on a detection image, then Kron and fixed-aperture fluxes in every
band forced on the detection apertures.

The detection image is the sum of the bands' signal-to-noise images divided by the square root of their number
(unit noise: the threshold is in sigma, as SExtractor's, which the chi-square image of Szalay et al. 1999 would
not allow without its skewed statistics); it is smoothed by a Gaussian of ``kernel_fwhm`` before detection.
Segments are deblended (multi-thresholding, SExtractor's DEBLEND_NTHRESH 32 and DEBLEND_MINCONT). Fluxes use the
detection catalogue's centroids and shapes in every band (photutils' ``detection_catalog``), so colours come from
identical apertures; pixels of neighbouring segments inside an aperture are replaced by their mirror image about
the source (SExtractor's MASK_TYPE CORRECT).

Errors are background errors: each band's background RMS per pixel, inflated by the noise correlation that
resampling leaves (:func:`correlation_factor`), so that an aperture sum of N pixels has the variance
``N rms^2 factor``; the photon noise of the sources is not included (the images carry no gain).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, fields

import numpy as np

# photutils' Kron parameters: 2.5 times the first-moment radius, at least 1.4 pixels unscaled (SExtractor's 2.5, 3.5
# in its own units), no circular fallback radius.
KRON_PARAMS = (2.5, 1.4, 0.0)
DEBLEND_LEVELS = 32
# Lags (pixels) over which the noise correlation is summed.
CORRELATION_LAG = 3
MAG_ERR = 2.5 / math.log(10.0)  # 1.0857...


@dataclass(frozen=True)
class DetectionParams:
    """Detection settings (config section ``detect``); pixel lengths in the images' pixels.

    Attributes
    ----------
    threshold : float
        Detection threshold in sigma of the detection image's pixels, applied to the smoothed image.
    min_area : int
        Fewest connected pixels of a source.
    contrast : float
        Deblending contrast (SExtractor's DEBLEND_MINCONT).
    kernel_fwhm_px : float
        FWHM of the Gaussian smoothing of the detection image.
    aperture_radius_px : float
        Radius of the fixed aperture.
    """

    threshold: float
    min_area: int
    contrast: float
    kernel_fwhm_px: float
    aperture_radius_px: float


@dataclass(frozen=True)
class DetectSettings:
    """The detection and aperture settings of the config section ``detect`` that ``photoz detect`` and ``photoz
    photometry`` share, lengths in arcsec; :meth:`from_config` fills what a section leaves out with the schema's
    defaults, :meth:`in_pixels` gives the :class:`DetectionParams` of images of a pixel scale.

    Attributes
    ----------
    threshold, min_area, deblend_contrast, kernel_fwhm_arcsec, aperture_diameter_arcsec
        The keys of the same names (see the schema).
    """

    threshold: float
    min_area: int
    deblend_contrast: float
    kernel_fwhm_arcsec: float
    aperture_diameter_arcsec: float

    @classmethod
    def from_config(cls, detect: dict | None = None) -> DetectSettings:
        """The settings of a config's ``detect`` section (None: the schema's defaults)."""
        from pipeline.core.config import schema_default

        section = {**schema_default("detect"), **(detect or {})}
        return cls(**{f.name: section[f.name] for f in fields(cls)})

    def in_pixels(self, pixel_scale_arcsec: float) -> DetectionParams:
        """The settings for images of ``pixel_scale_arcsec`` (arcsec per pixel)."""
        return DetectionParams(
            threshold=self.threshold, min_area=self.min_area, contrast=self.deblend_contrast,
            kernel_fwhm_px=self.kernel_fwhm_arcsec / pixel_scale_arcsec,
            aperture_radius_px=self.aperture_diameter_arcsec / 2 / pixel_scale_arcsec,
        )  # fmt: skip


def add_detect_arguments(parser) -> None:
    """The command-line options of :class:`DetectSettings` and of the detection bands, their defaults the schema's."""
    from pipeline.core.config import schema_default

    d = lambda key: schema_default(f"detect.{key}")  # noqa: E731
    group = parser.add_argument_group("detection and apertures (config section detect)")
    group.add_argument("--detect-band", action="append", default=None, help="band of the detection image (repeat)")
    group.add_argument("--threshold", type=float, default=d("threshold"), help="sigma of the smoothed image")
    group.add_argument("--min-area", type=int, default=d("min_area"), help="pixels")
    group.add_argument("--deblend-contrast", type=float, default=d("deblend_contrast"))
    group.add_argument("--kernel-fwhm", type=float, default=d("kernel_fwhm_arcsec"), help="arcsec")
    group.add_argument("--aperture-diameter", type=float, default=d("aperture_diameter_arcsec"), help="arcsec")


def settings_from_args(args) -> DetectSettings:
    """The :class:`DetectSettings` of arguments parsed with :func:`add_detect_arguments`."""
    return DetectSettings(
        threshold=args.threshold, min_area=args.min_area, deblend_contrast=args.deblend_contrast,
        kernel_fwhm_arcsec=args.kernel_fwhm, aperture_diameter_arcsec=args.aperture_diameter,
    )  # fmt: skip


def robust_sigma(values: np.ndarray) -> float:
    """1.4826 times the median absolute deviation of the finite ``values``, clipped at 3 sigma twice."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    sigma = float("nan")
    for _ in range(3):
        if v.size < 5:
            break
        med = np.median(v)
        sigma = 1.4826 * float(np.median(np.abs(v - med)))
        if not sigma > 0:
            break
        v = v[np.abs(v - med) < 3.0 * sigma]
    return sigma


def correlation_factor(residuals: np.ndarray, lag: int = CORRELATION_LAG) -> float:
    """The variance of a large aperture sum of correlated noise over that of independent pixels: the sum of the
    noise's normalised autocorrelation over lags up to ``lag`` in both axes.

    Parameters
    ----------
    residuals : ndarray, shape (..., ny, nx)
        Background pixels (sources and invalid pixels as NaN) of one band, any number of images.

    Returns
    -------
    float
        At least 1 (white noise gives 1; Lanczos-3 resampling of sky noise gives about 1.2 to 2).
    """
    r = np.asarray(residuals, dtype=np.float64)
    ok = np.isfinite(r)
    r = np.where(ok, r - np.nanmedian(r) if ok.any() else 0.0, 0.0)
    ny, nx = r.shape[-2:]
    var_sum, var_n = (r * r).sum(), ok.sum()
    if var_n < 10 or var_sum <= 0:
        return 1.0
    var = var_sum / var_n
    total = 0.0
    for dy in range(-lag, lag + 1):
        for dx in range(-lag, lag + 1):
            a = (slice(None),) * (r.ndim - 2) + (slice(max(0, dy), ny + min(0, dy)), slice(max(0, dx), nx + min(0, dx)))
            b = (slice(None),) * (r.ndim - 2) + (
                slice(max(0, -dy), ny + min(0, -dy)),
                slice(max(0, -dx), nx + min(0, -dx)),
            )
            pairs = ok[a] & ok[b]
            n = pairs.sum()
            if n:
                total += (r[a] * r[b])[pairs].sum() / n / var
    return max(1.0, float(total))


def detection_image(images: np.ndarray, rms: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The sum of the signal-to-noise images of ``images`` (nb, ny, nx) with background RMS ``rms`` (nb,), over
    their valid pixels, divided by the square root of the number of bands with data at each pixel (0 where none)."""
    snr = np.where(valid, images / np.asarray(rms, dtype=np.float64)[:, None, None], 0.0)
    n = valid.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, snr.sum(axis=0) / np.sqrt(np.maximum(n, 1)), 0.0)


def segment(detection: np.ndarray, params: DetectionParams, mask: np.ndarray | None = None):
    """Smooth, threshold and deblend a detection image.

    Returns
    -------
    segm : photutils SegmentationImage or None
        None when nothing is detected.
    smoothed : ndarray
        The smoothed detection image (for the centroids and shapes of the detection catalogue).
    noise : float
        The RMS of the detection image's background, in which ``params.threshold`` is counted.
    """
    from astropy.convolution import convolve
    from photutils.segmentation import deblend_sources, detect_sources, make_2dgaussian_kernel

    size = 2 * int(math.ceil(1.5 * params.kernel_fwhm_px)) + 1
    kernel = make_2dgaussian_kernel(params.kernel_fwhm_px, size=size)
    # masked pixels count as 0 (no signal): they stay masked in the detection
    smoothed = convolve(
        detection, kernel, mask=mask, normalize_kernel=True, boundary="extend", nan_treatment="fill", fill_value=0.0
    )
    # the threshold is counted in the noise of the detection image's pixels and applied to the smoothed image, as
    # SExtractor's DETECT_THRESH (smoothing lowers the noise several times: a threshold in its own noise would pass
    # many noise peaks)
    noise = robust_sigma(detection if mask is None else detection[~mask])
    if not noise > 0:
        return None, smoothed, noise
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no sources found" and the like
        segm = detect_sources(smoothed, params.threshold * noise, n_pixels=params.min_area, mask=mask)
        if segm is None:
            return None, smoothed, noise
        segm = deblend_sources(
            smoothed, segm, n_pixels=params.min_area, n_levels=DEBLEND_LEVELS, contrast=params.contrast,
            progress_bar=False,
        )  # fmt: skip
    return segm, smoothed, noise


def negative_segments(smoothed: np.ndarray, params: DetectionParams, noise: float, mask=None) -> np.ndarray:
    """Pixels of the segments that the threshold would find in the negated smoothed image (noise only).

    Leaving out of a background sample the detected segments alone biases its median low, as the positive noise
    peaks that pass the threshold go and their negative twins stay; leaving these out as well keeps it even.
    """
    from photutils.segmentation import detect_sources

    if not noise > 0:
        return np.zeros(smoothed.shape, dtype=bool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        neg = detect_sources(-smoothed, params.threshold * noise, n_pixels=params.min_area, mask=mask)
    return np.zeros(smoothed.shape, dtype=bool) if neg is None else neg.data > 0


def forced_photometry(images, errors, valid, detection, smoothed, segm, params: DetectionParams, labels=None) -> dict:
    """Kron and fixed-aperture fluxes in every band on the detection catalogue's apertures.

    Parameters
    ----------
    images : ndarray, shape (nb, ny, nx)
        Background-subtracted images (invalid pixels anything).
    errors : ndarray, shape (nb,) or (nb, ny, nx)
        Per-pixel errors of each band.
    valid : ndarray of bool, shape (nb, ny, nx)
    detection, smoothed : ndarray, shape (ny, nx)
        The detection image and its smoothed version (:func:`segment`).
    segm : SegmentationImage
    labels : sequence of int, optional
        The segments to measure (default: all).

    Returns
    -------
    dict
        ``label``, ``x``, ``y`` (centroids, pixels), ``kron_radius`` (the circularised radius of the Kron
        ellipse, pixels: 2.5 times the first-moment radius times sqrt(a b)), ``r50`` (half-light radius in the
        detection image, pixels), ``ellipticity``, ``snr`` (Kron S/N in the detection image), each (n,); ``flux``,
        ``fluxerr``, ``flux_aper``, ``fluxerr_aper`` (nb, n); ``missing`` (n,) True where a Kron aperture holds
        invalid pixels of some band.
    """
    from photutils.segmentation import SourceCatalog

    nb = images.shape[0]
    errors = np.asarray(errors, dtype=np.float64)
    if errors.ndim == 1:
        errors = np.broadcast_to(errors[:, None, None], images.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = SourceCatalog(
            detection, segm, convolved_data=smoothed, error=np.ones_like(detection), kron_params=KRON_PARAMS,
            progress_bar=False,
        )  # fmt: skip
        det = _select(full, labels)
        scalar = det.isscalar
        kron_unscaled = np.atleast_1d(_value(det.kron_radius))
        semi = np.sqrt(np.atleast_1d(_value(det.semimajor_axis)) * np.atleast_1d(_value(det.semiminor_axis)))
        det_flux, det_err = np.atleast_1d(det.kron_flux), np.atleast_1d(det.kron_flux_err)
        out = {
            "label": np.atleast_1d(det.label),
            "x": np.atleast_1d(det.x_centroid),
            "y": np.atleast_1d(det.y_centroid),
            "kron_radius": KRON_PARAMS[0] * kron_unscaled * semi,
            "r50": np.atleast_1d(_value(det.flux_radius(0.5))),
            "ellipticity": np.atleast_1d(_value(det.ellipticity)),
            "snr": det_flux / det_err,
        }
        n = len(out["label"])
        flux, fluxerr = np.full((nb, n), np.nan), np.full((nb, n), np.nan)
        aper, apererr = np.full((nb, n), np.nan), np.full((nb, n), np.nan)
        missing = np.zeros(n, dtype=bool)
        for b in range(nb):
            data = np.where(valid[b], images[b], np.nan)  # photutils masks non-finite pixels
            cat = _select(
                SourceCatalog(data, segm, error=errors[b], detection_catalog=full, progress_bar=False), labels
            )
            flux[b], fluxerr[b] = np.atleast_1d(cat.kron_flux), np.atleast_1d(cat.kron_flux_err)
            f, e = cat.circular_photometry(params.aperture_radius_px)
            aper[b], apererr[b] = np.atleast_1d(f), np.atleast_1d(e)
            # an aperture over invalid pixels: photutils leaves them out of the sum (masked)
            missing |= _aperture_holds_invalid(cat, valid[b], scalar)
    out.update(flux=flux, fluxerr=fluxerr, flux_aper=aper, fluxerr_aper=apererr, missing=missing)
    return out


def _value(x):
    return getattr(x, "value", x)


def _select(cat, labels):
    """The catalogue of ``labels`` only (all of it when None); one label gives a scalar catalogue."""
    if labels is None:
        return cat
    labels = [int(v) for v in labels]
    return cat.select_label(labels[0]) if len(labels) == 1 else cat.select_labels(labels)


def _aperture_holds_invalid(cat, valid_band: np.ndarray, scalar: bool) -> np.ndarray:
    """True for the sources whose Kron aperture covers an invalid pixel of the band."""
    apertures = cat.kron_aperture
    apertures = [apertures] if scalar else list(apertures)
    out = np.zeros(len(apertures), dtype=bool)
    invalid = ~valid_band
    if not invalid.any():
        return out
    for i, ap in enumerate(apertures):
        if ap is None:
            continue
        mask = ap.to_mask(method="center")
        cut = mask.get_values(invalid.astype(float))
        out[i] = cut.size > 0 and cut.max() > 0
    return out


def magnitudes(flux, fluxerr, zero_point: float):
    """AB magnitudes and their errors of fluxes in units of AB ``zero_point``: NaN where the flux is not > 0."""
    flux = np.asarray(flux, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(flux > 0, zero_point - 2.5 * np.log10(np.where(flux > 0, flux, 1.0)), np.nan)
        err = np.where(
            flux > 0, MAG_ERR * np.asarray(fluxerr, dtype=np.float64) / np.where(flux > 0, flux, 1.0), np.nan
        )
    return mag, err
