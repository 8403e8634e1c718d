"""Ensembles of seeds and folds, point estimates, qp compatibility, catalog-wide prediction and merging."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.core.pdf import point_estimates
from pipeline.core.zgrid import ZGrid
from pipeline.steps import ensemble, merge, predict, train
from pipeline.store import pdfs

from synthetic import galaxies, make_datacube, train_config, write_shard


def _run_store(path, ids, probs, fold, seed, edges):
    pdfs.write_pdfs(path, ids, probs, edges, z_reg=np.full(len(ids), 0.1), fold=np.full(len(ids), fold),
                   seed=np.full(len(ids), seed))  # fmt: skip


def test_seeds_averaged_and_folds_assembled(tmp_path):
    grid = ZGrid(0, 0.4, 4)
    rng = np.random.default_rng(0)
    runs, truth = [], {}
    for fold, ids in enumerate([np.array([5, 1]), np.array([3, 4])]):
        ps = [rng.dirichlet(np.ones(4), size=2) for _ in range(2)]
        for seed, p in enumerate(ps):
            runs.append(tmp_path / f"f{fold}s{seed}.h5")
            _run_store(runs[-1], ids, p, fold, seed, grid.edges)
        truth.update(zip(ids, (ps[0] + ps[1]) / 2, strict=True))
    catalog = pd.DataFrame({"object_id": [1, 3, 4, 5], "z_spec": [0.1, 0.2, 0.3, 0.05], "mag_r": 17.0, "fold": 0})
    table = ensemble.ensemble(runs, catalog, tmp_path / "m.parquet")
    assert table.object_id.tolist() == [1, 3, 4, 5] and table.fold.tolist() == [0, 1, 1, 0]
    store = pdfs.read_pdfs(tmp_path / "m.pdf.hdf5")
    for i, oid in enumerate(store["object_id"]):
        assert np.allclose(store["pdf"][i], truth[oid], atol=1e-6)
    assert (table.n_members == 2).all() and "mag_r" in table and np.allclose(table.z_spec, catalog.z_spec)


def test_mismatched_seed_runs_are_refused(tmp_path):
    edges = ZGrid(0, 0.4, 4).edges
    _run_store(tmp_path / "a.h5", [1, 2], np.full((2, 4), 0.25), 0, 0, edges)
    _run_store(tmp_path / "b.h5", [1, 3], np.full((2, 4), 0.25), 0, 1, edges)
    with pytest.raises(ValueError, match="test objects differ"):
        ensemble.average_runs([tmp_path / "a.h5", tmp_path / "b.h5"])


def test_point_estimates_and_qp(tmp_path):
    qp = pytest.importorskip("qp")
    edges = np.linspace(0, 1, 11)
    p = np.zeros((2, 10))
    p[0, 3] = 1.0  # all mass in [0.3, 0.4]
    p[1] = 0.1  # uniform on [0, 1]
    est = point_estimates(p, edges)
    assert est["z_phot"] == pytest.approx([0.35, 0.5])
    assert est["z_mode"][0] == pytest.approx(0.35) and est["z_mean"][1] == pytest.approx(0.5)
    assert est["z_lo68"][1] == pytest.approx(0.16) and est["z_hi68"][1] == pytest.approx(0.84)
    pdfs.write_pdfs(tmp_path / "x.pdf.hdf5", [7, 8], p, edges)
    ens = qp.read(str(tmp_path / "x.pdf.hdf5"))
    assert ens.npdf == 2 and np.allclose(ens.median().ravel(), est["z_phot"], atol=1e-6)


def test_catalog_prediction_chunks_and_merge(tmp_path):
    cube, _ = make_datacube(tmp_path, n=60)
    models = []
    for fold in range(2):
        out = tmp_path / f"run{fold}"
        train.train_one(train_config(epochs=1), "tiny", fold, 0, cube, out)
        models.append(out / "model.pt")
    cubes, _ = galaxies(30, seed=9)
    sources = pd.DataFrame({"object_id": np.arange(500, 530), "ra": 10.0, "dec": 0.0, "ebv": 0.02, "mag_r": 18.0})
    for k in range(2):
        write_shard(tmp_path / f"c{k}.h5", sources.object_id[k * 15 : (k + 1) * 15], cubes[k * 15 : (k + 1) * 15])
        predict.predict_catalog(tmp_path / f"c{k}.h5", models, sources, tmp_path / f"chunk{k}.parquet", "cpu")
    merged = merge.merge_chunks([tmp_path / "chunk0.parquet", tmp_path / "chunk1.parquet"], tmp_path / "all.parquet")
    assert merged.object_id.tolist() == list(range(500, 530)) and (merged.n_members == 2).all()
    assert merged.z_phot.between(0, 0.4).all() and (tmp_path / "all.fits").exists()
    assert pdfs.read_pdfs(tmp_path / "all.pdf.hdf5")["pdf"].shape == (30, 20)


def test_regression_only_models_are_scored_on_z_reg(tmp_path):
    grid = ZGrid(0, 0.4, 4)
    ids = np.array([1, 2, 3])
    z_reg = np.array([0.05, 0.33, 0.9])
    pdfs.write_pdfs(tmp_path / "r.h5", ids, np.full((3, 4), 0.25), grid.edges, z_reg=z_reg, fold=np.zeros(3),
                    seed=np.zeros(3))  # fmt: skip
    catalog = pd.DataFrame({"object_id": ids, "z_spec": [0.05, 0.3, 0.35]})
    table = ensemble.ensemble([tmp_path / "r.h5"], catalog, tmp_path / "m.parquet", estimate="z_reg")
    assert np.allclose(table.z_phot, z_reg) and (table.estimate == "z_reg").all()
    # its PDF file holds all the probability in the bin of z_reg (the untrained softmax is not written)
    assert np.array_equal(pdfs.read_pdfs(tmp_path / "m.pdf.hdf5")["pdf"], np.eye(4, dtype=np.float32)[[0, 3, 3]])
    from pipeline.core.metrics import evaluate

    metrics = evaluate(table, None, None, 0.05, None)
    assert metrics["estimate"] == "z_reg" and np.isclose(
        metrics["bias"], np.mean((z_reg - [0.05, 0.3, 0.35]) / [1.05, 1.3, 1.35])
    )
    with pytest.raises(ValueError, match="unknown estimate"):
        ensemble.ensemble([tmp_path / "r.h5"], catalog, tmp_path / "x.parquet", estimate="mean")
