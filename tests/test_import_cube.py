"""photoz import-cube: cutouts made elsewhere (npy, npz, HDF5, FITS; bands first or last) with a catalogue, the
crop/pad to the training size, the bad inputs, and a tiny workflow trained and run in production from them."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.core import preprocess
from pipeline.steps.import_cube import import_cube
from pipeline.store import cubes as store

BANDS = list("ugriz")
COLUMNS = {"id": "objID", "z": "zspec", "ebv": "EBV", "ra": "RA", "dec": "DEC", "mags": {"r": "petroMag_r"}}


def _data(n=40, size=8, seed=0):
    """Cutouts (N, C, S, S) with structure in every band, and their catalogue (ids not the row numbers)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    blob = np.exp(-(xx**2 + yy**2) / 4.0)
    cubes = rng.uniform(1, 5, (n, len(BANDS), 1, 1)) * blob + rng.normal(0, 0.05, (n, len(BANDS), size, size))
    catalog = pd.DataFrame({
        "objID": 1000 + 7 * np.arange(n), "zspec": rng.uniform(0.01, 0.35, n), "EBV": rng.uniform(0, 0.1, n),
        "RA": rng.uniform(0, 10, n), "DEC": rng.uniform(-5, 5, n), "petroMag_r": rng.uniform(14, 17.7, n),
        "extra": np.arange(n) * 2.0,
    })  # fmt: skip
    return cubes.astype(np.float32), catalog


def _write(tmp_path, fmt: str, axis: str, cubes, name="cutouts"):
    """The cutouts as a user would hand them over: one array in ``fmt``, bands ``axis`` (first or last)."""
    arr = cubes if axis == "first" else cubes.transpose(0, 2, 3, 1)
    arr = np.ascontiguousarray(arr)
    if fmt == "npy":
        path = tmp_path / f"{name}.npy"
        np.save(path, arr)
    elif fmt == "npz":
        path = tmp_path / f"{name}.npz"
        np.savez(path, images=arr, other=np.zeros(3))
    elif fmt == "h5":
        path = tmp_path / f"{name}.h5"
        with h5py.File(path, "w") as f:
            f["cutouts/images"] = arr
            f["ids"] = np.arange(len(arr))
    else:
        from astropy.io import fits

        path = tmp_path / f"{name}.fits"
        fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(arr, name="CUTOUTS")]).writeto(path)
    return path


def _catalog(tmp_path, catalog, fmt="parquet"):
    path = tmp_path / f"catalog.{fmt}"
    if fmt == "parquet":
        catalog.to_parquet(path)
    elif fmt == "csv":
        catalog.to_csv(path, index=False)
    else:
        from astropy.table import Table

        Table.from_pandas(catalog).write(path)
    return path


@pytest.mark.parametrize(
    "fmt, axis, table",
    [("npy", "first", "csv"), ("npy", "last", "parquet"), ("npz", "last", "parquet"), ("npz", "first", "csv"),
     ("h5", "first", "parquet"), ("h5", "last", "fits"), ("fits", "first", "fits"), ("fits", "last", "parquet")],
)  # fmt: skip
def test_every_layout_gives_the_same_datacube(tmp_path, monkeypatch, fmt, axis, table):
    monkeypatch.setattr(store, "ROW_GROUP_OBJECTS", 16)  # streamed in several blocks
    cubes, catalog = _data()
    names = ["r", "g", "u", "i", "z"]  # the file's channel order: the store sorts them by wavelength
    shuffled = cubes[:, [BANDS.index(b) for b in names]]
    path = _write(tmp_path, fmt, axis, shuffled)
    rows = import_cube(path, tmp_path / "train.h5", names, COLUMNS, _catalog(tmp_path, catalog, table),
                       n_folds=3, seed=1, pixel_scale_arcsec=0.168)  # fmt: skip
    data = store.load(tmp_path / "train.h5")
    assert data["attrs"]["bands"] == BANDS and data["attrs"]["pixel_scale_arcsec"] == 0.168
    assert np.array_equal(data["cubes"], cubes)
    assert (data["coverage"] == 1).all() and (data["missing_bands"] == 0).all()
    assert np.array_equal(data["object_id"], catalog.objID) and np.allclose(data["z_spec"], catalog.zspec)
    assert np.allclose(data["ebv"], catalog.EBV)
    for f in range(3):  # pack's statistics, never from the test fold
        xc = preprocess.compress(cubes[data["fold"] != f].astype(np.float64))
        assert np.allclose(data["norm_mean"][f], xc.mean(axis=(0, 2, 3)), rtol=1e-4, atol=1e-6)
    view = pd.read_parquet(tmp_path / "train.parquet")
    assert list(view.columns[:4]) == ["object_id", "z_spec", "ebv", "fold"]
    assert {"ra", "dec", "mag_r", "extra"} <= set(view.columns) and np.allclose(view.mag_r, catalog.petroMag_r)
    assert rows.object_id.tolist() == view.object_id.tolist()


def test_the_p19_preset_and_other_sizes(tmp_path, capfd):
    from pipeline.cli import main as cli

    cubes, catalog = _data(n=12, size=12)
    labels = catalog.rename(columns={"zspec": "z", "EBV": "ebv"}).to_records(index=False)
    np.savez(tmp_path / "p19.npz", cube=cubes.transpose(0, 2, 3, 1), labels=labels)
    cli(["import-cube", "--cubes", str(tmp_path / "p19.npz"), "--preset", "p19", "--out", str(tmp_path / "a.h5"),
         "--size", "8", "--folds", "2"])  # fmt: skip
    assert "cutouts are 12x12 pixels, the training size (cutouts.size) is 8: centre-cropped" in capfd.readouterr().err
    data = store.load(tmp_path / "a.h5")
    assert np.array_equal(data["cubes"], cubes[:, :, 2:10, 2:10]) and data["attrs"]["pixel_scale_arcsec"] == 0.396
    assert pd.read_parquet(tmp_path / "a.parquet").objID.tolist() == catalog.objID.tolist()  # labels carried

    # smaller cutouts are zero-padded in the centre: the padding is no data
    cli(["import-cube", "--cubes", str(tmp_path / "p19.npz"), "--preset", "p19", "--out", str(tmp_path / "b.h5"),
         "--size", "16", "--folds", "2"])  # fmt: skip
    data = store.load(tmp_path / "b.h5")
    assert data["cubes"].shape == (12, 5, 16, 16) and np.array_equal(data["cubes"][:, :, 2:14, 2:14], cubes)
    assert np.allclose(data["coverage"], 144 / 256) and data["cubes"][:, :, :2].max() == 0


def test_missing_bands_and_nan_cutouts(tmp_path):
    cubes, catalog = _data(n=20)
    cubes[3, 0] = 0  # u missing: all zeros
    cubes[4, 1] = np.nan  # g missing: all NaN
    cubes[7, 2, 0, :3] = np.nan  # NaN pixels in a band with data
    cubes[9, 4, 5, 5] = np.inf
    path = _write(tmp_path, "npy", "first", cubes)
    cat = _catalog(tmp_path, catalog)
    with pytest.raises(ValueError, match=r"cutouts\.npy: 2 of 20 cutouts hold NaN pixels \(rows \[7, 9\]"):
        import_cube(path, tmp_path / "e.h5", BANDS, COLUMNS, cat, n_folds=2)
    assert not (tmp_path / "e.h5").exists() and not (tmp_path / "e.parquet").exists()

    import_cube(path, tmp_path / "d.h5", BANDS, COLUMNS, cat, nan="drop", n_folds=2)
    data = store.load(tmp_path / "d.h5")
    kept = np.delete(np.arange(20), [7, 9])
    assert np.array_equal(data["object_id"], catalog.objID.to_numpy()[kept]) and len(data["fold"]) == 18
    assert data["missing_bands"][3] == 0b1 and data["missing_bands"][4] == 0b10 and data["coverage"][4, 1] == 0
    assert np.isfinite(data["cubes"]).all() and (data["cubes"][4, 1] == 0).all()
    assert len(pd.read_parquet(tmp_path / "d.parquet")) == 18

    import_cube(path, tmp_path / "z.h5", BANDS, COLUMNS, cat, nan="zero", n_folds=2)
    data = store.load(tmp_path / "z.h5")
    assert len(data["object_id"]) == 20 and np.isfinite(data["cubes"]).all()
    assert np.isclose(data["coverage"][7, 2], 61 / 64) and np.isclose(data["coverage"][9, 4], 63 / 64)
    assert data["cubes"][7, 2, 0, 0] == 0 and data["coverage"][7, 0] == 1


def test_bad_inputs_name_the_file_and_the_problem(tmp_path):
    cubes, catalog = _data(n=10)
    path = _write(tmp_path, "h5", "last", cubes)
    cat = _catalog(tmp_path, catalog)
    with pytest.raises(ValueError, match=r"cutouts\.h5 holds 10 cutouts but the catalogue .*catalog\.parquet has 9"):
        import_cube(path, tmp_path / "x.h5", BANDS, COLUMNS, _catalog(tmp_path, catalog.iloc[:9]))
    dup = catalog.assign(objID=catalog.objID.where(catalog.index % 4 != 1, 1000))
    with pytest.raises(ValueError, match=r"catalog\.parquet: 4 rows share 1 duplicated ids in column 'objID'"):
        import_cube(path, tmp_path / "x.h5", BANDS, COLUMNS, _catalog(tmp_path, dup))
    with pytest.raises(ValueError, match=r"cutouts\.h5: the cutouts have shape \(10, 8, 8, 5\), with neither axis"):
        import_cube(path, tmp_path / "x.h5", list("griz"), COLUMNS, cat)
    with pytest.raises(ValueError, match=r"have 8 bands on axis 1 \(bands first.*but 5 band names"):
        import_cube(path, tmp_path / "x.h5", BANDS, COLUMNS, cat, bands_axis="first")
    with pytest.raises(KeyError, match=r"catalog\.parquet: no column z='redshift'"):
        import_cube(path, tmp_path / "x.h5", BANDS, {**COLUMNS, "z": "redshift"}, cat)
    with pytest.raises(ValueError, match=r"cutouts\.h5: no catalogue given"):
        import_cube(path, tmp_path / "x.h5", BANDS, COLUMNS)
    with pytest.raises(KeyError, match=r"cutouts\.h5: no dataset 'cube'"):
        import_cube(path, tmp_path / "x.h5", BANDS, COLUMNS, cat, key="cube")
    with pytest.raises(ValueError, match=r"\.tiff: unknown cutout file format"):
        (tmp_path / "c.tiff").write_bytes(b"")
        import_cube(tmp_path / "c.tiff", tmp_path / "x.h5", BANDS, COLUMNS, cat)
    assert not (tmp_path / "x.h5").exists()


def test_config_cross_checks_of_the_cube(repo, tiny):
    from pipeline.core.config import ConfigError, load_config, validate_config

    example = load_config(repo / "config" / "surveys" / "imported-cutouts.yaml")  # the documented example
    assert example["survey"]["cube"]["bands_axis"] == "first" and example["production"]["pdf"]["n_quantiles"] == 20

    cfg = {k: v for k, v in tiny.items() if k not in ("simulation", "specz")}
    cfg["survey"]["cube"] = {"path": "cutouts.npy", "columns": {"ebv": None, "mags": {"y": "m"}}}
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    for key in ("survey.cube.catalog", "survey.cube.columns.mags", "survey.cube.columns.ebv"):
        assert key in str(err.value)


@pytest.mark.slow
def test_imported_cutouts_train_and_run_in_production(repo, tmp_path, tiny):
    """A survey given as imported cutouts (FITS, bands first, 20 px cropped to 16) runs the tiny workflow end to end,
    production included, with its PDFs stored as quantiles."""
    import qp
    from test_workflow import _snakemake

    cubes, catalog = _data(n=90, size=20, seed=4)
    cubes *= 1 + 3 * catalog.zspec.to_numpy()[:, None, None, None]  # something to learn
    path = _write(tmp_path, "fits", "first", cubes)
    cfg = {k: v for k, v in tiny.items() if k not in ("simulation", "specz")}
    cfg["survey"] = {"bands": BANDS, "mag_column": "mag_r",
                     "cube": {"path": str(path), "catalog": str(_catalog(tmp_path, catalog, "csv")),
                              "columns": COLUMNS, "pixel_scale_arcsec": 0.2}}  # fmt: skip
    cfg["folds"]["n"] = 2
    cfg["models"] = {"baseline": tiny["models"]["baseline"]}
    cfg["evaluation"]["compare"] = []
    cfg["production"] = {"pdf": {"representation": "quant", "n_quantiles": 12}}
    cfg["reference"] = {"enabled": False}  # one catalogue magnitude: no colours for the reference
    (tmp_path / "cube.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    _snakemake(repo, tmp_path, "all", "production", "--configfile", str(tmp_path / "cube.yaml"))
    res = tmp_path / "results"
    assert store.load(res / "datacube" / "train.h5", cubes=False)["attrs"]["size"] == 16
    assert (res / "report" / "index.html").exists()
    pred = pd.read_parquet(res / "predictions" / "baseline.parquet")
    assert sorted(pred.object_id) == sorted(catalog.objID)
    photoz = pd.read_parquet(res / "photoz" / "baseline.parquet")
    assert sorted(photoz.object_id) == sorted(catalog.objID)  # every imported object, over both chunks
    import pyarrow.parquet as pq

    assert pq.read_schema(res / "photoz" / "baseline.parquet").metadata[b"pdf_representation"] == b"quant"
    ens = qp.read(str(res / "photoz" / "baseline.pdf.hdf5"))
    assert type(ens.dist).__name__ == "quant_gen" and ens.npdf == 90
    assert ens.dist.quants.size == 14  # 12 stored, 0 and 1 added by qp when it reads
    log = (tmp_path / "logs" / "merge" / "baseline.log").read_text()
    assert "PDFs as quant (12 quantiles)" in log


def test_check_config_accepts_the_example(repo, capsys):
    from pipeline.cli import main

    assert main(["check-config", str(repo / "config" / "surveys" / "imported-cutouts.yaml")]) == 0
