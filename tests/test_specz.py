"""Spec-z compilation, deduplication, matching, cuts and folds (``photoz match``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.core.config import validate_config
from pipeline.steps import match as specz

from conftest import SHARED_DATA

ARCSEC = 1 / 3600


def _config(tmp_path, catalogs, demo_config, **selection):
    cfg = dict(demo_config)
    cfg = {**cfg, "specz": {"match_radius_arcsec": 1.0, "catalogs": catalogs}}
    cfg["selection"] = {"mag_max": None, "z_range": [0.0, 1.0], "remove_stars": True, "min_coverage": 0.5, **selection}
    cfg["survey"] = {"bands": ["g", "r"], "mosaics": {"g": "x", "r": "y"}, "sources": "s", "mag_column": "mag_r"}
    cfg.pop("simulation", None)
    cfg["reference"] = {"enabled": False}  # a real survey's reference needs its extinction coefficients
    return validate_config(cfg)


def _sources(n=50, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "object_id": np.arange(1000, 1000 + n),
            "ra": 150 + rng.uniform(0, 0.1, n),
            "dec": 2 + rng.uniform(0, 0.1, n),
            "mag_r": rng.uniform(15, 19, n),
            "ebv": 0.02,
            "is_star": np.arange(n) % 10 == 9,
        }
    )


def _catalog(tmp_path, name, df, flag_col="flag", secure=(3, 4), rank=1, fmt="parquet"):
    path = tmp_path / f"{name}.{fmt}"
    df.to_parquet(path) if fmt == "parquet" else df.to_csv(path, index=False)
    cols = {"ra": "RA", "dec": "DEC", "z": "Z", "flag": flag_col}
    return {"name": name, "path": str(path), "columns": cols, "secure_flags": list(secure), "rank": rank}


def test_secure_dedup_match_cut_and_folds(tmp_path, demo_config):
    src = _sources()
    z_true = np.linspace(0.05, 0.6, len(src))
    a = pd.DataFrame({"RA": src.ra, "DEC": src.dec + 0.2 * ARCSEC, "Z": z_true, "flag": np.where(src.index < 40, 4, 1)})
    # survey b re-observes the first 10 objects, one with a clearly different answer; b ranks below a
    b = pd.DataFrame({"RA": src.ra[:10], "DEC": src.dec[:10], "Z": z_true[:10], "flag": 3.0})
    b.loc[0, "Z"] = z_true[0] + 0.3
    cats = [_catalog(tmp_path, "a", a), _catalog(tmp_path, "b", b, rank=2, fmt="csv")]
    cfg = _config(tmp_path, cats, demo_config)
    training, summary, conflicts = specz.build_training_catalog(src, cfg)

    # 40 secure in a (flags 4), the last 10 insecure; stars (every 10th) removed
    expected = src[(src.index < 40) & ~src.is_star]
    assert sorted(training.object_id) == sorted(expected.object_id)
    assert (training.specz_survey == "a").all()  # rank 1 wins every duplicate
    assert np.allclose(training.set_index("object_id").loc[expected.object_id, "z_spec"], z_true[expected.index])
    assert len(conflicts) == 1 and conflicts.dz_norm.iloc[0] > 0.01
    row = summary.set_index("survey")
    assert row.loc["a", "secure"] == 40 and row.loc["b", "secure"] == 10
    assert row.loc["b", "after_duplicates"] == 0 and row.loc["total", "final"] == len(training)
    assert set(training.fold) == set(range(5))
    again, _, _ = specz.build_training_catalog(src, cfg)
    assert again.fold.tolist() == training.fold.tolist()  # deterministic from the seed


def test_mag_and_z_cuts(tmp_path, demo_config):
    src = _sources()
    a = pd.DataFrame({"RA": src.ra, "DEC": src.dec, "Z": np.linspace(0.0, 0.8, len(src)), "flag": 4})
    cfg = _config(tmp_path, [_catalog(tmp_path, "a", a)], demo_config, mag_max=17.0, z_range=[0.1, 0.5])
    training, _, _ = specz.build_training_catalog(src, cfg)
    assert (training.mag_r <= 17.0).all() and training.z_spec.between(0.1, 0.5).all() and len(training) > 0


def test_nearest_spectrum_wins_and_radius(tmp_path, demo_config):
    src = _sources(3)
    a = pd.DataFrame(
        {
            "RA": [src.ra[0], src.ra[0], src.ra[1]],
            "DEC": [src.dec[0] + 0.9 * ARCSEC, src.dec[0] + 0.1 * ARCSEC, src.dec[1] + 5 * ARCSEC],
            "Z": [0.3, 0.2, 0.1],
            "flag": 4,
        }
    )
    cfg = _config(tmp_path, [_catalog(tmp_path, "a", a)], demo_config)
    cfg["specz"]["match_radius_arcsec"] = 0.5  # the two spectra of object 0 are not duplicates of each other
    training, _, _ = specz.build_training_catalog(src, cfg)
    assert training.object_id.tolist() == [1000]
    assert training.z_spec.iloc[0] == pytest.approx(0.2)


def test_bad_inputs(tmp_path, demo_config):
    src = _sources()
    ok = pd.DataFrame({"RA": src.ra, "DEC": src.dec, "Z": 0.1, "flag": 4})
    with pytest.raises(ValueError, match=r"catalog 'a'.*missing column.*flag='NQ'"):
        specz.build_training_catalog(src, _config(tmp_path, [_catalog(tmp_path, "a", ok, flag_col="NQ")], demo_config))
    bad = ok.assign(DEC=ok.DEC + 100)
    with pytest.raises(ValueError, match="out of range"):
        specz.build_training_catalog(src, _config(tmp_path, [_catalog(tmp_path, "a", bad)], demo_config))
    far = ok.assign(RA=ok.RA + 10)
    with pytest.raises(ValueError, match="no spec-z matched any source"):
        specz.build_training_catalog(src, _config(tmp_path, [_catalog(tmp_path, "a", far)], demo_config))
    with_nan = ok.copy()
    with_nan.loc[:4, "Z"] = np.nan
    training, summary, _ = specz.build_training_catalog(
        src, _config(tmp_path, [_catalog(tmp_path, "a", with_nan)], demo_config)
    )
    assert summary.set_index("survey").loc["a", "nan_dropped"] == 5
    assert len(training) == len(src) - 5 - src.is_star.iloc[5:].sum()


def test_folds_are_balanced_and_seeded():
    f = specz.assign_folds(103, 5, seed=1)
    assert np.bincount(f).tolist() in ([21, 21, 21, 20, 20],) or max(np.bincount(f)) - min(np.bincount(f)) <= 1
    assert (specz.assign_folds(103, 5, seed=1) == f).all() and not (specz.assign_folds(103, 5, seed=2) == f).all()


@pytest.mark.skipif(not (SHARED_DATA / "sdss-dr14-specz").exists(), reason="real SDSS table not present")
def test_real_sdss_dr14_table(tmp_path, demo_config):
    """Real SDSS DR14 spectra matched to their own photometric positions: every galaxy in range comes back."""
    raw = pd.read_csv(SHARED_DATA / "sdss-dr14-specz" / "sdss_dr14_10k.csv")
    # the export has no quality flag: the class stands in for it (galaxies secure, stars and QSOs not)
    raw["flag"] = (raw["class"] == "GALAXY").astype(int)
    path = tmp_path / "dr14.csv"
    raw.to_csv(path, index=False)
    cat = {"name": "dr14", "path": str(path), "columns": {"ra": "ra", "dec": "dec", "z": "redshift", "flag": "flag"},
           "secure_flags": [1], "z_range": [0.0, 0.4]}  # fmt: skip
    # objid was exported as a float and lost its last digits: the row number stands in for it
    raw["row"] = np.arange(len(raw))
    sources = pd.DataFrame({"object_id": raw.row, "ra": raw.ra, "dec": raw.dec, "mag_r": raw.r, "ebv": 0.03})
    cfg = _config(tmp_path, [cat], demo_config, mag_max=17.8, z_range=[0.0, 0.4])
    training, summary, _ = specz.build_training_catalog(sources, cfg)
    galaxies = raw[(raw["class"] == "GALAXY") & raw.redshift.between(0, 0.4) & (raw.r <= 17.8)]
    assert (
        summary.set_index("survey").loc["dr14", "secure"]
        == ((raw["class"] == "GALAXY") & raw.redshift.between(0, 0.4)).sum()
    )
    assert len(training) == len(galaxies) > 1000
    assert np.allclose(training.sort_values("object_id").z_spec, galaxies.sort_values("row").redshift)
