"""Photometric band names and their effective wavelengths, to sort bands the way the networks expect them."""

from __future__ import annotations

# Effective wavelengths in Angstrom (SDSS, CFHT MegaCam, HSC, VISTA): only the order matters to the pipeline.
WAVELENGTH_AA = {
    "fuv": 1539.0,
    "nuv": 2316.0,
    "u": 3551.0,
    "ustar": 3740.0,
    "g": 4686.0,
    "r": 6166.0,
    "i": 7480.0,
    "z": 8932.0,
    "y": 9755.0,
    "Y": 10210.0,
    "j": 12524.0,
    "J": 12524.0,
    "h": 16431.0,
    "H": 16431.0,
    "k": 21521.0,
    "ks": 21521.0,
    "Ks": 21521.0,
    "K": 21521.0,
}


def wavelength(band: str) -> float:
    """Effective wavelength of ``band`` in Angstrom; raises a ``ValueError`` that names unknown bands."""
    try:
        return WAVELENGTH_AA[band]
    except KeyError:
        known = ", ".join(sorted(WAVELENGTH_AA))
        raise ValueError(f"unknown band {band!r}: known bands are {known}") from None


def sort_bands(bands) -> list[str]:
    """Bands in ascending order of wavelength (the datacube's channel order)."""
    bands = list(bands)
    if len(set(bands)) != len(bands):
        raise ValueError(f"duplicate band names in {bands}")
    return sorted(bands, key=wavelength)


def channel_index(bands, available, what: str = "the data") -> list[int]:
    """Positions of ``bands`` (a model's input channels, in its order) among ``available`` (a file's bands).

    Raises a ``ValueError`` naming the bands ``available`` lacks, so that a model trained on a band the data does not
    hold is refused instead of fed the wrong channels.
    """
    available = [str(b) for b in available]
    missing = [b for b in bands if b not in available]
    if missing:
        raise ValueError(f"{what} lacks band(s) {missing} of the model's bands {list(bands)}: it holds {available}")
    return [available.index(b) for b in bands]
