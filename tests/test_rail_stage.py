"""The RAIL estimator of the trained CNN ensembles (``rail.estimation.algos.cnn_photoz``): inside RAIL's own
machinery (stages chained through their data handles, and a saved ceci pipeline run stage by stage as RAIL runs
it) its PDFs are those of the workflow's ``photoz predict`` for the same objects."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("rail.estimation.estimator", reason="RAIL (pz-rail-base) is not installed")

import ceci  # noqa: E402
import qp  # noqa: E402
import tables_io  # noqa: E402
from rail.core.data import TableHandle  # noqa: E402
from rail.core.stage import RailPipeline  # noqa: E402
from rail.estimation.algos.cnn_photoz import CNNPhotozEstimator, load_models  # noqa: E402
from rail.estimation.algos.naive_stack import NaiveStackSummarizer  # noqa: E402

from pipeline.steps import predict, train  # noqa: E402
from pipeline.store.predictions import pdf_path_for  # noqa: E402

from synthetic import galaxies, make_datacube, train_config, write_shard  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    """A tiny trained model (2 folds x 2 seeds), a cutout store of 30 new objects, and photoz predict's output."""
    tmp = tmp_path_factory.mktemp("rail_stage")
    cube, _ = make_datacube(tmp, n=60)
    model_dir = tmp / "models" / "tiny"
    runs = []
    for fold in range(2):
        for seed in range(2):
            out = model_dir / f"fold{fold}" / f"seed{seed}"
            train.train_one(train_config(epochs=1), "tiny", fold, seed, cube, out)
            runs.append(out / "model.pt")
    cubes, _ = galaxies(30, seed=9)
    rng = np.random.default_rng(1)
    sources = pd.DataFrame(
        {"object_id": np.arange(500, 530), "ra": 10.0, "dec": 0.0, "ebv": rng.uniform(0, 0.1, 30), "mag_r": 18.0}
    )
    write_shard(tmp / "cutouts.h5", sources.object_id, cubes)
    # the workflow's own photo-z of these objects: the runs in the order the workflow gives them (fold, then seed)
    predict.predict_catalog(tmp / "cutouts.h5", runs, sources, tmp / "photoz.parquet", "cpu")
    # RAIL's input: a table of the objects to estimate (shuffled: the stage must find each object's cutout)
    table = sources.sample(frac=1, random_state=3)[["object_id", "ebv"]]
    tables_io.write({"photometry": {c: table[c].to_numpy() for c in table}}, str(tmp / "objects.hdf5"))
    return {"tmp": tmp, "model": model_dir, "cutouts": tmp / "cutouts.h5", "table": tmp / "objects.hdf5"}


def _expected(survey) -> dict:
    """``photoz predict``'s PDFs (as qp reads them) and z_reg, by object id."""
    pred = pd.read_parquet(survey["tmp"] / "photoz.parquet")
    ens = qp.read(str(pdf_path_for(survey["tmp"] / "photoz.parquet")))
    return {"ids": pred.object_id.to_numpy(), "pdfs": ens.objdata["pdfs"], "z_reg": pred.z_reg.to_numpy()}


def _assert_same(ens, expected) -> None:
    """The RAIL ensemble holds photoz predict's PDFs and z_reg for the same objects, to float precision."""
    ids = np.asarray(ens.ancil["id"]).ravel()
    pos = pd.Index(expected["ids"]).get_indexer(ids)
    assert (pos >= 0).all() and len(ids) == len(expected["ids"])
    np.testing.assert_allclose(ens.objdata["pdfs"], expected["pdfs"][pos], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(ens.ancil["z_reg"]).ravel(), expected["z_reg"][pos], atol=1e-6)
    assert np.array_equal(ens.metadata["bins"].ravel(), np.linspace(0, 0.4, 21))


def test_stages_chained_in_a_data_store_give_the_workflows_pdfs(survey, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # RAIL writes its outputs into the working directory
    estimate = CNNPhotozEstimator.make_stage(
        name="cnn_photoz",
        model=str(survey["model"]),
        cutouts=str(survey["cutouts"]),
        hdf5_groupname="photometry",
        chunk_size=7,  # several chunks, and a last short one
        calculated_point_estimates=["zmode"],
    )
    output = estimate.estimate(TableHandle("objects", path=str(survey["table"])))
    ens = output.data
    _assert_same(ens, _expected(survey))
    centres = 0.5 * (np.linspace(0, 0.4, 21)[1:] + np.linspace(0, 0.4, 21)[:-1])
    assert np.isin(np.asarray(ens.ancil["zmode"]).ravel(), centres).all()  # on the models' bin centres
    # a downstream RAIL stage consumes the handle: n(z) of the sample from the CNN PDFs
    stack = NaiveStackSummarizer.make_stage(name="stack", zmin=0.0, zmax=0.4, nzbins=41, n_samples=5)
    nz = stack.summarize(output).data
    assert nz.npdf == 5 and np.isfinite(nz.objdata["yvals"]).all()


def test_saved_rail_pipeline_runs_the_stage_like_ceci_does(survey, tmp_path, monkeypatch):
    """Build a RailPipeline, save it, read it back with ceci and run it: each stage in its own process
    (``python3 -m ceci rail.estimation.algos.cnn_photoz.CNNPhotozEstimator ...``)."""

    class CNNPhotozPipeline(RailPipeline):
        def __init__(self):
            RailPipeline.__init__(self)
            self.estimate_cnn = CNNPhotozEstimator.build(
                model=str(survey["model"]), cutouts=str(survey["cutouts"]), hdf5_groupname="photometry", chunk_size=8
            )
            self.stack_nz = NaiveStackSummarizer.build(
                connections=dict(input=self.estimate_cnn.io.output), zmin=0.0, zmax=0.4, nzbins=41, n_samples=5
            )

    # the stage processes find this checkout's packages and the interpreter running the tests
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.chdir(tmp_path)
    pipe = CNNPhotozPipeline()
    inputs = dict(input=str(survey["table"]), model=str(survey["model"]))  # a model folder, as RAIL passes a model file
    pipe.initialize(inputs, dict(output_dir=str(tmp_path), log_dir=str(tmp_path), resume=False), None)  # fmt: skip
    pipe.save(str(tmp_path / "cnn_photoz.yml"))
    assert ceci.Pipeline.read(str(tmp_path / "cnn_photoz.yml")).run() == 0, (tmp_path / "estimate_cnn.out").read_text()
    _assert_same(qp.read(str(tmp_path / "output_estimate_cnn.hdf5")), _expected(survey))
    assert qp.read(str(tmp_path / "output_stack_nz.hdf5")).npdf == 5


def test_models_load_without_unpickling_and_wrong_inputs_are_named(survey, tmp_path):
    models = load_models(survey["model"])
    assert len(models) == 4 and [(m["fold"], m["seed"]) for _, m in models] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    with pytest.raises(FileNotFoundError, match="no fold"):
        load_models(tmp_path)
    stage = CNNPhotozEstimator.make_stage(
        name="cnn_missing", model=str(survey["model"]), cutouts=str(survey["cutouts"]), hdf5_groupname="",
        output_mode="return",
    )  # fmt: skip
    with pytest.raises(KeyError, match="no cutout for 1 input object"):
        stage.estimate({"object_id": np.array([500, 9999]), "ebv": np.zeros(2)})
