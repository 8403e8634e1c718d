"""The colour reference through RAIL: it trains and predicts through RAIL's own stages, writes a CNN run's PDF
store that qp opens, never sees its test fold, dereddens, and its config errors name their keys."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import qp

from pipeline.core.config import ConfigError, validate_config
from pipeline.core.folds import assign_folds
from pipeline.core.reference import check_reference
from pipeline.core.zgrid import ZGrid
from pipeline.steps import ensemble
from pipeline.steps.reference import extinction_for, magnitude_table, read_photometry, reference_fold
from pipeline.store import pdfs

BANDS = ["u", "g", "r", "i", "z"]
R = {"u": 4.8, "g": 3.7, "r": 2.7, "i": 2.1, "z": 1.5}
ZGRID = ZGrid(0.0, 0.4, 40)
KNN = {"estimator": "knn", "options": {}}


def galaxies(n: int = 150, n_folds: int = 3, seed: int = 0):
    """Datacube catalog and observed (reddened) catalogue magnitudes whose colours follow z."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.02, 0.38, n)
    ebv = rng.uniform(0.0, 0.1, n)
    catalog = pd.DataFrame(
        {"object_id": np.arange(100, 100 + n), "z_spec": z, "fold": assign_folds(n, n_folds, 0), "ebv": ebv}
    )
    phot = {"object_id": catalog.object_id}
    r = rng.uniform(15, 17.5, n)
    for k, b in enumerate(BANDS):
        phot[f"mag_{b}"] = r + (2 - k) * 2.5 * z + R[b] * ebv + rng.normal(0, 0.01, n)
        phot[f"magerr_{b}"] = np.full(n, 0.01)
    return catalog, pd.DataFrame(phot)


def run(catalog, phot, fold, reference=KNN, out=None):
    return reference_fold(catalog, phot, fold, reference, BANDS, "mag_r", R, ZGRID, out)


def test_fold_trains_and_predicts_through_rail_like_a_cnn_run(tmp_path):
    catalog, phot = galaxies()
    out = tmp_path / "fold1" / "test_pdf.h5"
    res = run(catalog, phot, 1, out=out)
    store = pdfs.read_pdfs(out)
    # exactly the layout of a CNN run's test_pdf.h5 (pipeline.steps.train)
    assert set(store) == {"object_id", "pdf", "z_edges", "z_reg", "z_spec", "fold", "seed"}
    test = catalog[catalog.fold == 1]
    assert store["object_id"].tolist() == test.object_id.tolist() and (store["fold"] == 1).all()
    assert np.allclose(store["pdf"].sum(axis=1), 1, atol=1e-5) and np.array_equal(store["z_edges"], ZGRID.edges)
    ens = qp.read(str(out), fmt="hdf5")  # the .h5 suffix of a run file; ensembles are .pdf.hdf5
    assert ens.npdf == len(test)
    # colours carry the redshift: RAIL's kNN finds it
    z_phot = ZGRID.centres[store["pdf"].argmax(axis=1)]
    assert np.median(np.abs(z_phot - test.z_spec)) < 0.02
    assert np.median(np.abs(store["z_reg"] - test.z_spec)) < 0.02
    # seeded: the same run gives the same PDFs
    assert np.array_equal(run(catalog, phot, 1)["pdf"], res["pdf"])


def test_flexzboost_runs_through_rail(tmp_path):
    pytest.importorskip("rail.estimation.algos.flexzboost", reason="pz-rail-flexzboost (the [rail] extra) is absent")
    catalog, phot = galaxies(n=90)
    fast = {"max_basis": 5, "nbump": 2, "nsharp": 2}
    fast["regression_params"] = {"max_depth": 2, "n_estimators": 10, "objective": "reg:squarederror"}
    res = run(catalog, phot, 0, {"estimator": "flexzboost", "options": fast}, out=tmp_path / "f.h5")
    assert res["pdf"].shape == ((catalog.fold == 0).sum(), ZGRID.n_bins)
    assert qp.read(str(tmp_path / "f.h5"), fmt="hdf5").npdf == len(res["pdf"])
    assert (res["seed"] == 1138).all()  # FlexZBoost's own default seed, recorded as the run's seed


def test_the_test_fold_never_trains_the_reference():
    catalog, phot = galaxies()
    fold0 = catalog.fold == 0
    before = {f: run(catalog, phot, f) for f in (0, 1)}
    # absurd labels and photometry on fold 0: a reference that learnt from fold 0 would change
    poisoned, bad_phot = catalog.copy(), phot.copy()
    poisoned.loc[fold0, "z_spec"] = 0.39
    after = run(poisoned, phot, 0)
    assert np.array_equal(after["pdf"], before[0]["pdf"]) and np.array_equal(after["z_reg"], before[0]["z_reg"])
    assert np.allclose(after["z_spec"], 0.39)
    for b in BANDS:
        bad_phot.loc[fold0.to_numpy(), f"mag_{b}"] += 3.0
    other = run(poisoned, bad_phot, 1)  # the same poison changes fold 1, which trains on fold 0
    assert not np.array_equal(other["pdf"], before[1]["pdf"])


def test_photometry_files_are_read_for_the_bands_only(tmp_path):
    _, phot = galaxies(n=10)
    phot.assign(ra=1.0, mag_y=20.0).iloc[:4].to_parquet(tmp_path / "shard-1-of-2.parquet")
    phot.iloc[4:].to_csv(tmp_path / "shard-2-of-2.csv", index=False)
    table = read_photometry([tmp_path / "shard-1-of-2.parquet", tmp_path / "shard-2-of-2.csv"], BANDS)
    assert table.columns.tolist() == phot.columns.tolist()
    assert np.allclose(table.mag_g, phot.mag_g) and table.object_id.tolist() == phot.object_id.tolist()


def test_catalogue_magnitudes_are_dereddened_with_the_cnns_ebv():
    catalog, phot = galaxies(n=10)
    rows = magnitude_table(catalog, phot.iloc[::-1], BANDS, R)
    assert rows.object_id.tolist() == catalog.object_id.tolist()
    assert np.allclose(rows.mag_u, phot.mag_u - 4.8 * catalog.ebv)
    assert np.allclose(rows.magerr_z, phot.magerr_z)
    with pytest.raises(ValueError, match="1 object"):
        magnitude_table(catalog, phot.iloc[1:], BANDS, R)
    with pytest.raises(ValueError, match="magerr_g"):
        magnitude_table(catalog, phot.drop(columns="magerr_g"), BANDS, R)


def test_extinction_from_the_config_else_the_simulated_survey(tmp_path):
    meta = tmp_path / "survey.json"
    meta.write_text(json.dumps({"extinction_r_coefficients": R}))
    assert extinction_for({"extinction": {"u": 1.0}}, meta) == {"u": 1.0}
    assert extinction_for({"extinction": None}, meta) == R
    with pytest.raises(ValueError, match="reference.extinction"):
        extinction_for({"extinction": None}, None)


def test_nan_magnitudes_are_rails_non_detections():
    catalog, phot = galaxies()
    phot.loc[phot.index[::7], "mag_u"] = np.nan  # no flux in u
    res = run(catalog, phot, 2)
    assert np.isfinite(res["pdf"]).all() and np.isfinite(res["z_reg"]).all()


def test_reference_is_ensembled_like_a_model(tmp_path):
    catalog, phot = galaxies(n=60, n_folds=2)
    runs = [tmp_path / f"fold{f}.h5" for f in (0, 1)]
    for f, path in enumerate(runs):
        run(catalog, phot, f, out=path)
    table = ensemble.ensemble(runs, catalog, tmp_path / "rail-knn.parquet")
    assert sorted(table.object_id) == sorted(catalog.object_id) and (table.n_members == 1).all()
    assert qp.read(str(tmp_path / "rail-knn.pdf.hdf5")).npdf == len(catalog)


# -- config ---------------------------------------------------------------------------------------------------


def _config(tiny, **reference):
    cfg = copy.deepcopy(tiny)
    cfg["reference"] = reference
    return cfg


def _problems(cfg) -> str:
    try:
        validate_config(cfg)
    except ConfigError as err:
        return str(err)
    return "\n".join(check_reference(cfg))


def test_reference_is_on_by_default_and_named_after_its_estimator(tiny):
    cfg = copy.deepcopy(tiny)
    cfg.pop("reference", None)
    cfg = validate_config(cfg)
    assert cfg["reference"]["enabled"] and cfg["reference"]["name"] == f"rail-{cfg['reference']['estimator']}"
    assert check_reference(cfg) == []
    off = validate_config(_config(tiny, enabled=False))
    assert off["reference"]["name"] is None and check_reference(off) == []


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ({"options": {"nneigh_maxx": 9}}, "reference.options.nneigh_maxx: unknown option of RAIL's knn"),
        ({"options": {"bands": ["mag_r"]}}, "reference.options.bands: set by the pipeline"),
        ({"options": {"nneigh_max": "nine"}}, "reference.options.nneigh_max: 'nine' must be of type int"),
        ({"options": {"only_colors": "no"}}, "reference.options.only_colors: 'no' must be of type bool"),
        ({"options": {"ref_band": "mag_y"}}, "reference.options.ref_band: 'mag_y' is not one of"),
        ({"options": {"mag_limits": {"mag_r": 20}}}, "reference.options.mag_limits: give one limit per band"),
        ({"estimator": "bpz"}, "reference.estimator"),
        ({"frobnicate": True}, "'frobnicate' was unexpected"),
        ({"name": "baseline"}, "reference.name: 'baseline' is also the name of a model"),
        ({"extinction": {"u": 4.8}}, "reference.extinction: no coefficient for band(s) g, r, i, z"),
    ],
)
def test_config_errors_name_the_key(tiny, reference, message):
    assert message in _problems(_config(tiny, **reference))


def test_flexzboost_options_are_checked_against_its_stages(tiny):
    pytest.importorskip("rail.estimation.algos.flexzboost", reason="pz-rail-flexzboost (the [rail] extra) is absent")
    assert "reference.options.nbump: 3.5 must be of type int" in _problems(
        _config(tiny, estimator="flexzboost", options={"nbump": 3.5})
    )
    assert _problems(_config(tiny, estimator="flexzboost", options={"max_basis": 20, "trainfrac": 0.8})) == ""


def test_a_missing_rail_package_is_named(tiny, monkeypatch):
    from pipeline.core import reference

    absent = reference.RailEstimator("rail.estimation.algos.no_such_module", "A", "B", "pz-rail-nothing")
    monkeypatch.setitem(reference.ESTIMATORS, "knn", absent)
    assert "reference.estimator: 'knn' needs RAIL's pz-rail-nothing" in _problems(_config(tiny))


def test_a_real_survey_must_give_extinction_coefficients(tiny):
    cfg = _config(tiny, magnitudes="catalog")
    cfg.pop("simulation")
    cfg["survey"].update(sources="s.parquet", mosaics={b: f"{b}/*.fits" for b in cfg["survey"]["bands"]})
    cfg["specz"]["catalogs"] = [dict(c, path="z.parquet") for c in cfg["specz"]["catalogs"]]
    assert "reference.extinction: required for a real survey" in _problems(cfg)
    cfg["reference"]["extinction"] = R
    assert _problems(cfg) == ""


def test_the_reference_may_be_named_in_compare_pairs(tiny):
    cfg = _config(tiny, name="colours")
    cfg["evaluation"]["compare"].append({"baseline": "colours", "candidate": "baseline", "label": "CNN vs colours"})
    assert _problems(cfg) == ""
    cfg["reference"]["enabled"] = False
    assert "evaluation.compare.1.baseline: 'colours' is not one of models" in _problems(cfg)
