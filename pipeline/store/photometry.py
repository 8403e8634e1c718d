"""The photometry store: the one owner of the layout of ``results/photometry/shard-K-of-N.parquet``.

One row per object of a cutout shard (rule ``photometry``), read by the colour-only reference photo-z:

- ``object_id`` int64;
- per band: ``flux_<band>``, ``fluxerr_<band>`` (Kron aperture) and ``flux_aper_<band>``, ``fluxerr_aper_<band>``
  (the fixed aperture, ``aperture_diameter_arcsec`` in the metadata), in image units: fluxes of AB zero point
  ``zero_point`` (nanomaggies for 22.5); ``mag_<band>``, ``magerr_<band>``, ``mag_aper_<band>``,
  ``magerr_aper_<band>``: AB magnitudes, **not** corrected for Galactic extinction, NaN where the flux is not
  positive (the flux is kept);
- ``kron_radius_arcsec`` (circularised radius of the Kron ellipse), ``r50_arcsec`` (half-light radius of the
  detection image), ``flag`` (the bits of :data:`FLAGS`).

The Parquet schema metadata holds ``bands``, ``zero_point``, ``aperture_diameter_arcsec``, ``pixel_scale_arcsec``,
the noise ``correlation`` factor of each band (and ``correlation_from``, how it was found) and the ``flags`` legend
(JSON).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from pipeline.core import io

FLAGS = {
    "not_detected": 1,  # no segment at the cutout's centre: fixed aperture at the centre, Kron flux = aperture flux
    "blended": 2,  # the central segment was deblended from, or touches, another segment
    "edge": 4,  # the central segment touches the cutout's edge (truncated)
    "missing_pixels": 8,  # the Kron aperture holds invalid pixels in some band
    "no_kron_radius": 16,  # no Kron radius (photutils NaN): fixed aperture used for the Kron flux
}


def flux_columns(band: str) -> list[str]:
    """The flux and magnitude columns of one band, in the file's order."""
    out = []
    for kind in ("", "_aper"):
        out += [f"flux{kind}_{band}", f"fluxerr{kind}_{band}", f"mag{kind}_{band}", f"magerr{kind}_{band}"]
    return out


def columns(bands) -> list[str]:
    """Every column of a photometry table of ``bands``, in order."""
    return ["object_id", *(c for b in bands for c in flux_columns(b)), "kron_radius_arcsec", "r50_arcsec", "flag"]


def write(table: pd.DataFrame, path, meta: dict) -> None:
    """Write a photometry table atomically, its columns checked and ordered, ``meta`` into the schema metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    bands = list(meta["bands"])
    wanted = columns(bands)
    missing = [c for c in wanted if c not in table.columns]
    if missing:
        raise ValueError(f"photometry table lacks the columns {missing}")
    table = table[wanted].astype({"object_id": np.int64, "flag": np.int32})
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    extra = {k: json.dumps(v) for k, v in {**meta, "flags": FLAGS}.items()}
    arrow = arrow.replace_schema_metadata(
        {**(arrow.schema.metadata or {}), **{k: v.encode() for k, v in extra.items()}}
    )
    with io.atomic_path(path) as tmp:
        pq.write_table(arrow, tmp)


def read(path) -> tuple[pd.DataFrame, dict]:
    """A photometry table and its metadata (``bands``, ``zero_point``, ``flags`` ...)."""
    import pyarrow.parquet as pq

    arrow = pq.read_table(path)
    raw = arrow.schema.metadata or {}
    meta = {}
    keys = ("bands", "zero_point", "aperture_diameter_arcsec", "pixel_scale_arcsec", "correlation", "correlation_from")
    for key in (*keys, "flags"):
        if key.encode() in raw:
            meta[key] = json.loads(raw[key.encode()])
    return arrow.to_pandas(), meta
