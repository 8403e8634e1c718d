"""Survey presets of the simulated survey: bands, filters, pixel scales, seeing, depth and spec-z surveys.

The source density is deliberately far higher than on the real sky (about one object per ``pixels_per_source``
pixels, e.g. one per 48 x 48 SDSS pixels) so that a demo of a few thousand objects fits in a small field and in
a few tens of MB of mosaics. Only the ``sdss`` preset ships spec-z surveys tuned to real ones (MGS and GAMA); the
deeper presets carry one generic deep survey so that the whole pipeline runs on them too.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SpecSurvey:
    """A mock spectroscopic survey.

    ``scheme`` is ``"zwarning"`` (columns ``ra, dec, z, zwarning``; 0 secure) or ``"nq"`` (columns
    ``RA, DEC, Z, NQ``; 3 and 4 secure). ``region`` is the fraction of the field's RA range it covers, counted
    from the east edge. ``stars`` is the fraction of stars brighter than the limit that get a spectrum.
    """

    name: str
    scheme: str
    band: str
    mag_limit: float
    completeness: float
    region: float = 1.0
    pos_scatter_arcsec: float = 0.1
    z_scatter: float = 3e-5
    insecure_fraction: float = 0.03
    stars: float = 0.0
    z_max: float | None = None


@dataclass(frozen=True)
class Preset:
    """Everything that makes one simulated survey look like a real one.

    Per-band dictionaries are keyed by band name. Depths are 5-sigma point-source magnitudes, sky brightness is
    in AB mag per square arcsec, seeing is the PSF FWHM in arcsec, read noise is in electrons.

    ``pixel_scale_arcsec`` is the scale of the optical bands; ``band_pixel_scale_arcsec`` gives bands on their own
    grid (near-infrared stacks) another one. ``sip_max_px`` is the largest SIP distortion (pixels, at a canvas
    corner) written into the tiles' WCS and rendered through; 0 gives plain TAN. ``coverage`` is the fraction of the
    field's width, counted from the west edge, that a band's tiles cover (1 when absent).
    """

    name: str
    bands: tuple[str, ...]
    filters: dict[str, str]
    pixel_scale_arcsec: float
    psf_fwhm_arcsec: dict[str, float]
    depth_mag: dict[str, float]
    sky_mag_arcsec2: dict[str, float]
    read_noise_e: float
    ref_band: str
    gal_mag_range: tuple[float, float]
    star_mag_range: tuple[float, float]
    # Median redshift of galaxies at ref-band magnitude ``z_med_mag``, and how fast it grows per magnitude.
    z_med: float
    z_med_mag: float
    z_med_slope: float
    count_slope: float = 0.35
    pixels_per_source: int = 48 * 48
    tile_size_px: int = 1024
    star_fraction: float = 0.1
    moffat_beta: float = 3.0
    specz: tuple[SpecSurvey, ...] = field(default_factory=tuple)
    band_pixel_scale_arcsec: dict[str, float] = field(default_factory=dict)
    sip_max_px: float = 0.0
    coverage: dict[str, float] = field(default_factory=dict)

    def scale(self, band: str) -> float:
        """Pixel scale of ``band`` in arcsec."""
        return float(self.band_pixel_scale_arcsec.get(band, self.pixel_scale_arcsec))


SDSS = Preset(
    name="sdss",
    bands=("u", "g", "r", "i", "z"),
    filters={b: f"sdss2010-{b}" for b in "ugriz"},
    pixel_scale_arcsec=0.396,
    # DR7 median seeing and 95% point-source completeness limits (Abazajian et al. 2009), typical dark sky.
    psf_fwhm_arcsec={"u": 1.53, "g": 1.44, "r": 1.32, "i": 1.26, "z": 1.29},
    depth_mag={"u": 22.0, "g": 22.2, "r": 22.2, "i": 21.3, "z": 20.5},
    sky_mag_arcsec2={"u": 22.1, "g": 21.8, "r": 20.9, "i": 20.2, "z": 18.9},
    read_noise_e=5.0,
    ref_band="r",
    gal_mag_range=(14.0, 20.8),
    star_mag_range=(14.0, 21.0),
    z_med=0.11,
    z_med_mag=17.77,
    z_med_slope=0.19,
    specz=(
        SpecSurvey("mgs", "zwarning", "r", 17.77, 0.90, z_scatter=3e-5, insecure_fraction=0.03, z_max=0.4),
        SpecSurvey(
            "gama",
            "nq",
            "r",
            19.8,
            0.95,
            region=0.6,
            pos_scatter_arcsec=0.15,
            z_scatter=1.5e-4,
            insecure_fraction=0.08,
            stars=0.3,
        ),
    ),
)

CFHTLS = Preset(
    name="cfhtls",
    bands=("u", "g", "r", "i", "z"),
    filters={"u": "cfht_megacam-ustar", **{b: f"cfht_megacam-{b}" for b in "griz"}},
    pixel_scale_arcsec=0.186,
    psf_fwhm_arcsec={"u": 0.85, "g": 0.78, "r": 0.71, "i": 0.64, "z": 0.68},
    depth_mag={"u": 25.2, "g": 25.5, "r": 25.0, "i": 24.8, "z": 23.9},
    sky_mag_arcsec2={"u": 22.7, "g": 22.0, "r": 21.1, "i": 20.3, "z": 19.3},
    read_noise_e=5.0,
    ref_band="i",
    gal_mag_range=(17.0, 25.0),
    star_mag_range=(16.0, 24.0),
    z_med=0.55,
    z_med_mag=22.5,
    z_med_slope=0.12,
    specz=(SpecSurvey("vvds", "nq", "i", 24.0, 0.8, region=0.5, z_scatter=2e-4, insecure_fraction=0.15),),
    sip_max_px=3.0,
)

# HSC-SSP Deep/UltraDeep-like: CLAUDS u (CFHT), HSC grizy, and VISTA YJHKs (VIDEO/UltraVISTA) stacked on their own
# 0.34"/px grid (the VIRCAM pixel), covering only the western 70% of the field as the NIR surveys do in real fields.
_NIR = ("Y", "J", "H", "Ks")
HSC = Preset(
    name="hsc",
    bands=("u", "g", "r", "i", "z", "y", *_NIR),
    filters={
        "u": "cfht_megacam-u",
        **{b: f"hsc2017-{b}" for b in "grizy"},
        **{b: f"vista_vircam_{b}" for b in _NIR},
    },
    pixel_scale_arcsec=0.168,
    psf_fwhm_arcsec={
        "u": 0.92,
        "g": 0.77,
        "r": 0.76,
        "i": 0.58,
        "z": 0.68,
        "y": 0.68,
        "Y": 0.82,
        "J": 0.79,
        "H": 0.76,
        "Ks": 0.75,
    },  # fmt: skip
    depth_mag={
        "u": 27.1,
        "g": 26.5,
        "r": 26.1,
        "i": 25.9,
        "z": 25.1,
        "y": 24.4,
        "Y": 24.6,
        "J": 24.5,
        "H": 24.0,
        "Ks": 23.5,
    },  # fmt: skip
    # Paranal NIR sky (Vega 17.3, 16.0, 14.0, 13.0 in YJHKs) converted to AB.
    sky_mag_arcsec2={
        "u": 22.7,
        "g": 22.0,
        "r": 21.1,
        "i": 20.3,
        "z": 19.3,
        "y": 18.3,
        "Y": 17.9,
        "J": 16.9,
        "H": 15.4,
        "Ks": 14.9,
    },  # fmt: skip
    read_noise_e=4.5,
    ref_band="i",
    gal_mag_range=(18.0, 25.5),
    star_mag_range=(17.0, 25.0),
    z_med=0.7,
    z_med_mag=23.0,
    z_med_slope=0.08,
    specz=(SpecSurvey("deep", "nq", "i", 24.5, 0.7, region=0.5, z_scatter=2e-4, insecure_fraction=0.15),),
    band_pixel_scale_arcsec={b: 0.34 for b in _NIR},
    sip_max_px=3.0,
    coverage={b: 0.7 for b in _NIR},
)

PRESETS = {p.name: p for p in (SDSS, CFHTLS, HSC)}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; a ``ValueError`` naming it and the known ones otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown simulation preset {name!r}: known presets are {', '.join(PRESETS)}") from None
