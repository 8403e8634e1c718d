"""Import cutouts made elsewhere as the datacube (``photoz import-cube``).

Users often hold cutouts from a survey's cutout service rather than mosaics: one array of N cutouts with C bands,
bands first (N, C, H, W) or last (N, H, W, C), as ``.npy``, ``.npz``, HDF5 or FITS (read by
:mod:`pipeline.store.cutout_arrays`), and a catalogue table (Parquet, FITS or CSV) with one row per cutout in the
same order, its columns named by a mapping (id, ra, dec, z, E(B-V), magnitudes). The public P19 SDSS cube of
Pasquet et al. (2019) is one preset: an ``.npz`` with ``cube`` (N, 64, 64, 5) and the catalogue as its record array
``labels``.

It is written as the same store ``photoz pack`` makes (:mod:`pipeline.store.cubes`): cubes (N, C, S, S) in bands
sorted by wavelength, folds dealt from a seed with :func:`pipeline.core.folds.assign_folds`, per-fold
standardisation statistics and the catalogue's Parquet view (every catalogue column carried along, the mapped ones
renamed ``object_id``, ``z_spec``, ``ebv``, ``ra``, ``dec``, ``mag_<band>``). The cutouts are streamed block by
block, so memory stays bounded for the 42 GB SDSS sample. Cutouts of another side than the training size are
centre-cropped or zero-padded (padding counts as pixels without data in the coverage). A band of an object that is
all zeros or all NaN is a missing band (coverage 0, zero-filled), as the paper zero-fills missing bands; other NaN
pixels stop the import unless ``nan`` says to drop those objects or to zero the pixels.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core import io, preprocess
from pipeline.core import log as plog
from pipeline.core.bands import sort_bands
from pipeline.core.folds import assign_folds
from pipeline.store import cubes, cutout_arrays

log = logging.getLogger("pipeline.import_cube")

SDSS_PIXEL_SCALE = 0.396  # arcsec per pixel of the SDSS imaging the P19 cube was cut from
# the public P19 SDSS datacube: array 'cube' (N, 64, 64, 5) and the catalogue as the record array 'labels'
PRESETS = {"p19": {"key": "cube", "bands_axis": "last", "catalog": None, "pixel_scale_arcsec": SDSS_PIXEL_SCALE}}
NAN_POLICIES = ("error", "drop", "zero")


def _catalogue(path, catalog, columns: dict, n: int, bands: list) -> pd.DataFrame:
    """The catalogue rows (one per cutout, in file order) with the mapped columns renamed; checks ids and length."""
    if catalog is None:
        if not str(path).lower().endswith(".npz"):
            raise ValueError(f"{path}: no catalogue given (survey.cube.catalog, --catalog), and only an .npz "
                             "carries its own (the P19 record array 'labels')")  # fmt: skip
        table, where = cutout_arrays.npz_record_array(path), f"{path} (labels)"
    else:
        table, where = io.read_table(catalog), str(catalog)
    if len(table) != n:
        raise ValueError(f"{path} holds {n} cutouts but the catalogue {where} has {len(table)} rows: they must match "
                         "row by row")  # fmt: skip
    mags = dict(columns.get("mags") or {})
    unknown = [b for b in mags if b not in bands]
    if unknown:
        raise ValueError(f"magnitude columns given for band(s) {unknown} not in the band names {bands}")
    wanted = {"id": columns.get("id"), "z": columns["z"], "ebv": columns.get("ebv"), "ra": columns.get("ra"),
              "dec": columns.get("dec"), **{f"mag_{b}": c for b, c in mags.items()}}  # fmt: skip
    missing = [f"{role}={col!r}" for role, col in wanted.items() if col and col not in table.columns]
    if missing:
        raise KeyError(f"{where}: no column {', '.join(missing)} (columns: {list(table.columns)})")
    if columns.get("id"):
        object_id = table[columns["id"]].to_numpy()
        if not np.issubdtype(object_id.dtype, np.integer):
            raise ValueError(f"{where}: id column {columns['id']!r} is {object_id.dtype}, not integer")
        dup = pd.Series(object_id).duplicated(keep=False)
        if dup.any():
            ex = sorted(set(object_id[dup.to_numpy()].tolist()))[:5]
            raise ValueError(f"{where}: {int(dup.sum())} rows share {len(set(object_id[dup.to_numpy()]))} duplicated "
                             f"ids in column {columns['id']!r}, e.g. {ex}")  # fmt: skip
    else:
        object_id = np.arange(n)
    if columns.get("ebv"):
        ebv = table[columns["ebv"]].to_numpy(np.float64)
    elif columns.get("ra") and columns.get("dec"):
        from pipeline.core.extinction import ebv_at

        ebv = ebv_at(table[columns["ra"]], table[columns["dec"]])
    else:
        raise ValueError(f"{where}: no E(B-V) column and no ra/dec to read it from the SFD map: map ebv, or ra and dec")
    renamed = {col: role for role, col in wanted.items() if col and role not in ("id", "z", "ebv")}
    rows = table.drop(columns=[c for c in (columns.get("id"), columns["z"], columns.get("ebv")) if c])
    rows = rows.rename(columns=renamed)
    clash = [c for c in ("object_id", "z_spec", "ebv", "fold") if c in rows.columns]
    if clash:
        log.warning("%s: columns %s are not mapped and would clash with the datacube's own: left out", where, clash)
        rows = rows.drop(columns=clash)
    rows.insert(0, "object_id", object_id.astype(np.int64))
    rows.insert(1, "z_spec", table[columns["z"]].to_numpy(np.float64))
    rows.insert(2, "ebv", ebv)
    return rows


def _fit(block: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop or zero-pad (n, C, H, W) to (n, C, size, size)."""
    n, c, h, w = block.shape
    if (h, w) == (size, size):
        return block
    out = np.zeros((n, c, size, size), block.dtype)
    dst, src = [], []
    for length in (h, w):
        if length >= size:  # crop: keep the centre
            a = (length - size) // 2
            src.append(slice(a, a + size))
            dst.append(slice(0, size))
        else:  # pad: put the image in the centre
            a = (size - length) // 2
            src.append(slice(0, length))
            dst.append(slice(a, a + length))
    out[:, :, dst[0], dst[1]] = block[:, :, src[0], src[1]]
    return out


def _clean(block: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit a block to ``size``, zero-fill missing bands and NaN pixels; return cubes, coverage (n, C) (the
    fraction of finite input pixels; padding has none) and the objects (n,) with NaN pixels outside missing
    bands."""
    finite = np.isfinite(block)
    # a band with no finite non-zero pixel holds no data: missing, zero-filled, coverage 0
    missing = ~(finite & (block != 0)).any(axis=(2, 3))
    partial = ((~finite).any(axis=(2, 3)) & ~missing).any(axis=1)
    block = np.where(finite, block, 0.0).astype(np.float32)
    out = _fit(block, size)
    coverage = _fit(finite.astype(np.float32), size).sum(axis=(2, 3)) / (size * size)
    coverage = np.where(missing, 0.0, coverage).astype(np.float32)
    return out, coverage, partial


def import_cube(
    path,
    out,
    bands=tuple("ugriz"),
    columns: dict | None = None,
    catalog=None,
    key: str | None = None,
    bands_axis: str = "auto",
    size: int | None = None,
    nan: str = "error",
    n_folds: int = 5,
    seed: int = 0,
    pixel_scale_arcsec: float = SDSS_PIXEL_SCALE,
    parquet_pixels: bool = False,
) -> pd.DataFrame:
    """Write the datacube store ``out`` (HDF5, plus its Parquet files) from a cutout array; return its catalogue.

    Parameters
    ----------
    path : path
        Cutout array (N, C, H, W) or (N, H, W, C): ``.npy``, ``.npz``, ``.h5``/``.hdf5`` or ``.fits``.
    out : path
        Datacube to write; ``<stem>.parquet`` (the catalogue) goes beside it.
    bands : sequence of str
        Names of the C bands, in the file's channel order (sorted by wavelength in the store).
    columns : dict, optional
        Catalogue columns: ``z`` (spectroscopic redshift), ``ebv`` (E(B-V), mag; None reads the SFD map at ra,
        dec), ``id`` (unique integer; None numbers the rows), ``ra``, ``dec`` (deg), ``mags`` (band -> column).
        Defaults: the schema's ``survey.cube.columns``.
    catalog : path, optional
        Table with one row per cutout, in file order; None takes the ``labels`` record array of an ``.npz``.
    key, bands_axis
        Which array, and where its bands are (:func:`pipeline.store.cutout_arrays.open_array`).
    size : int, optional
        Side of the stored cutouts (the training size, ``cutouts.size``): others are centre-cropped or zero-padded
        to it, with a warning. None keeps the file's (square) size.
    nan : {"error", "drop", "zero"}
        What to do with cutouts that hold NaN pixels in a band that is not wholly missing.
    n_folds, seed : int
        Folds dealt by :func:`pipeline.core.folds.assign_folds` (over the objects kept).
    """
    from pipeline.core.config import schema_default

    path, out = Path(path), Path(out)
    columns = {**schema_default("survey.cube.columns"), **(columns or {})}
    if nan not in NAN_POLICIES:
        raise ValueError(f"nan={nan!r}: valid are {', '.join(NAN_POLICIES)}")
    bands = list(bands)
    array = cutout_arrays.open_array(path, len(bands), key, bands_axis)
    try:
        rows = _catalogue(path, catalog, columns, array.n, bands)
        h, w = array.image_shape
        if size is None:
            if h != w:
                raise ValueError(f"{path}: cutouts of {h}x{w} pixels are not square: give the training size (--size)")
            size = h
        if (h, w) != (size, size):
            how = "centre-cropped" if min(h, w) >= size else "zero-padded" if max(h, w) <= size else "cropped/padded"
            log.warning("%s: cutouts are %dx%d pixels, the training size (cutouts.size) is %d: %s to %dx%d",
                        path, h, w, size, how, size, size)  # fmt: skip
        order = [bands.index(b) for b in sort_bands(bands)]
        stats = preprocess.FoldStatistics()
        keep = np.ones(array.n, bool)
        object_id = rows.object_id.to_numpy()
        n_blocks = -(-array.n // cubes.ROW_GROUP_OBJECTS)
        with cubes.cube_writer(out, sort_bands(bands), size, parquet_pixels, n=array.n) as writer:
            blocks = plog.progress(array.blocks(cubes.ROW_GROUP_OBJECTS), total=n_blocks, desc="import")
            for start, block in blocks:
                block, coverage, has_nan = _clean(block[:, order], size)
                keep[start : start + len(block)] = ~has_nan
                if nan == "error" and not keep.all():
                    continue  # count them all before stopping
                take = ~has_nan if nan == "drop" else np.ones(len(block), bool)
                writer.append(object_id[start : start + len(block)][take], block[take], coverage[take])
                stats.add(block[take])
            n_nan = int((~keep).sum())
            if n_nan and nan == "error":
                first = np.flatnonzero(~keep)[:5].tolist()
                raise ValueError(f"{path}: {n_nan} of {array.n} cutouts hold NaN pixels (rows {first}...): set "
                                 "survey.cube.nan (--nan) to drop them or to zero those pixels")  # fmt: skip
            if n_nan:
                log.warning("%s: %d cutouts hold NaN pixels: %s", path, n_nan,
                            "dropped" if nan == "drop" else "pixels set to 0, coverage lowered")  # fmt: skip
            if nan == "drop":
                rows = rows[keep].reset_index(drop=True)
            if len(rows) == 0:
                raise ValueError(f"{path}: no cutout left to import")
            fold = assign_folds(len(rows), n_folds, seed)
            rows.insert(3, "fold", fold)
            mean, std = stats.result(size * size, fold, n_folds)
            attrs = {"pixel_scale_arcsec": pixel_scale_arcsec, "source": path.name, "fold_seed": seed}
            cubes.finish_datacube(writer, rows, mean, std, n_folds, attrs)
    finally:
        array.close()
    io.write_parquet(rows, cubes.catalog_path(out))
    n_missing = int((cubes.read_columns(out, "missing_bands")[0] > 0).sum())
    log.info("imported %d objects (%s, %dx%d; %d with a missing band) from %s into %s", len(rows),
             "".join(sort_bands(bands)), size, size, n_missing, path, out)  # fmt: skip
    return rows


def main(argv=None) -> None:
    from pipeline.core.config import schema_default

    cube = "survey.cube"
    parser = argparse.ArgumentParser(prog="photoz import-cube", description=__doc__.splitlines()[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--cubes", help="cutout array: .npy, .npz, .h5/.hdf5 or .fits, (N, C, H, W) or (N, H, W, C)")
    src.add_argument("--npz", help="a P19-format archive (the same as --cubes FILE --preset p19)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=schema_default(f"{cube}.preset"),
                        help="p19: array 'cube', bands last, catalogue in the archive's 'labels'")  # fmt: skip
    parser.add_argument("--key", default=None, help="array name (npz, HDF5) or HDU (FITS) of the cutouts")
    parser.add_argument("--bands-axis", choices=["auto", "first", "last"], default=None,
                        help=f"where the bands are (default: {schema_default(f'{cube}.bands_axis')})")  # fmt: skip
    parser.add_argument("--catalog", help="catalogue, one row per cutout in file order (Parquet, FITS or CSV)")
    parser.add_argument("--out", required=True, help="datacube (HDF5); the Parquet files are written beside it")
    parser.add_argument("--bands", nargs="+", default=list("ugriz"), help="names of the cube's channels, in order")
    columns = schema_default(f"{cube}.columns")
    parser.add_argument("--z-field", default=columns["z"], help="catalogue column of the spectroscopic redshift")
    parser.add_argument("--ebv-field", default=columns["ebv"], help="column of E(B-V); 'none': the SFD map at ra/dec")
    parser.add_argument("--id-field", default=columns["id"], help="column of a unique id (default: the row)")
    parser.add_argument("--ra-field", default=columns["ra"], help="column of the right ascension (deg)")
    parser.add_argument("--dec-field", default=columns["dec"], help="column of the declination (deg)")
    parser.add_argument("--mag", action="append", default=[], metavar="BAND=COLUMN", help="a magnitude column")
    parser.add_argument("--size", type=int, default=None, help="training size: crop or pad to it (default: keep)")
    parser.add_argument("--nan", choices=NAN_POLICIES, default=schema_default(f"{cube}.nan"),
                        help="cutouts with NaN pixels: stop, drop them, or zero the pixels")  # fmt: skip
    parser.add_argument("--folds", type=int, default=schema_default("folds.n"), help="number of folds to deal")
    parser.add_argument("--seed", type=int, default=schema_default("folds.seed"), help="seed of the fold assignment")
    parser.add_argument("--pixel-scale", type=float, default=None, help="arcsec per pixel")
    parser.add_argument("--parquet-pixels", action="store_true", help="also write the pixels as Parquet")
    args = parser.parse_args(argv)
    plog.setup()
    preset = PRESETS.get("p19" if args.npz else args.preset, {})
    mags = {}
    for item in args.mag:
        band, sep, col = item.partition("=")
        if not sep:
            raise ValueError(f"--mag {item!r}: expected BAND=COLUMN")
        mags[band] = col
    ebv = None if str(args.ebv_field).lower() == "none" else args.ebv_field
    cols = {"z": args.z_field, "ebv": ebv, "id": args.id_field, "ra": args.ra_field, "dec": args.dec_field,
            "mags": mags}  # fmt: skip
    pixel_scale = args.pixel_scale or preset.get("pixel_scale_arcsec") or schema_default(f"{cube}.pixel_scale_arcsec")
    import_cube(
        args.cubes or args.npz, args.out, args.bands, cols, args.catalog, args.key or preset.get("key"),
        args.bands_axis or preset.get("bands_axis", "auto"), args.size, args.nan, args.folds, args.seed,
        pixel_scale, args.parquet_pixels,
    )  # fmt: skip


if __name__ == "__main__":
    main()
