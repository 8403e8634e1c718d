"""Test-time modality dropout (``photoz drop-modalities``): one z_phot per (object, dropped modality), and its rule."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.core import inference
from pipeline.core.config import validate_config
from pipeline.core.zgrid import ZGrid
from pipeline.steps import drop_modalities, ensemble, train
from pipeline.store import checkpoints, dropouts
from pipeline.store import cubes as store
from pipeline.store.predictions import predictions_table

from synthetic import make_datacube

FOLDS, SEEDS = (0, 1), (0, 1)
MODALITIES = ["g_r", "r_i", "g", "r", "i"]  # size [2, 1] on the bands g, r, i: the 2-band ones, then each band


def _config() -> dict:
    cfg = {
        "training": {"epochs": 1, "batch_size": 16, "lr": 0.003},
        "zgrid": {"z_min": 0.0, "z_max": 0.4, "n_bins": 20},
        "models": {
            "mm": {
                "arch": "multimodal",
                "options": {"width": 0.05, "size": [2, 1], "orders": [1], "modality_dropout": 2},
            }
        },
    }
    return validate_config(cfg, sections=("training", "zgrid", "models"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny datacube and a multimodal model trained with modality dropout on 2 folds x 2 seeds."""
    root = tmp_path_factory.mktemp("drop")
    cube = make_datacube(root, n=100)[0]
    runs = [
        train.train_one(_config(), "mm", fold, seed, cube, root / f"fold{fold}" / f"seed{seed}")
        for fold in FOLDS
        for seed in SEEDS
    ]
    return cube, runs


@pytest.fixture(scope="module")
def result(trained, tmp_path_factory):
    cube, runs = trained
    out = tmp_path_factory.mktemp("out") / "dropout" / "mm.parquet"
    drop_modalities.main(["--runs", *map(str, runs), "--datacube", str(cube), "--out", str(out), "--threads", "1"])
    return out, pd.read_parquet(out)


def _save_variant(src, dst, **changes) -> None:
    """A checkpoint like ``src`` with some meta keys changed and the freshly initialised weights of that model."""
    meta = {**checkpoints.load_checkpoint(src)["meta"], **changes}
    checkpoints.save_checkpoint({"meta": meta, "model": inference.build_from_meta(meta).state_dict()}, dst)


def test_one_row_per_object_and_dropped_modality(trained, result):
    cube, _ = trained
    out, table = result
    assert list(table.columns) == ["object_id", "z_spec", "fold", "dropped", "z_phot"]
    assert [str(table[c].dtype) for c in ("object_id", "z_spec", "fold", "z_phot")] == [
        "int64", "float64", "int64", "float64"
    ]  # fmt: skip
    assert list(pd.unique(table.dropped)) == ["none", *MODALITIES]  # the model's order
    assert dropouts.read_modalities(out) == MODALITIES
    data = store.load(cube, cubes=False)
    test = np.isin(data["fold"], FOLDS)
    ids = np.sort(data["object_id"][test])
    for name, group in table.groupby("dropped", sort=False):
        assert group.object_id.tolist() == ids.tolist(), name
    assert not table.duplicated(["object_id", "dropped"]).any()
    assert len(table) == len(ids) * (1 + len(MODALITIES))
    truth = pd.DataFrame({"object_id": data["object_id"], "fold": data["fold"], "z_spec": data["z_spec"]})
    merged = table.merge(truth, on="object_id", suffixes=("", "_cube"), validate="many_to_one")
    assert (merged.fold == merged.fold_cube).all()
    assert np.array_equal(merged.z_spec, merged.z_spec_cube.astype(np.float64))
    assert np.isfinite(table.z_phot).all() and table.z_phot.between(0.0, 0.4).all()


def test_nothing_dropped_equals_the_ensemble_and_dropping_changes_z_phot(trained, result):
    _, runs = trained
    _, table = result
    ens = ensemble.average_runs([p.parent / "test_pdf.h5" for p in runs])
    edges = ZGrid(0.0, 0.4, 20).edges
    z_ens = predictions_table(ens["object_id"], ens["pdf"], edges).z_phot.to_numpy()
    none = table[table.dropped == "none"]
    assert none.object_id.tolist() == ens["object_id"].tolist()
    assert np.allclose(none.z_phot, z_ens, rtol=0, atol=1e-6)
    for name in MODALITIES:
        z = table[table.dropped == name].z_phot.to_numpy()
        assert not np.allclose(z, none.z_phot, rtol=0, atol=1e-6), name


def test_schema_metadata_keeps_the_order(result):
    out, _ = result
    meta = pq.read_schema(out).metadata
    assert yaml.safe_load(meta[b"dropped"]) == ["none", *MODALITIES]


def test_model_without_modalities_is_refused(trained, tmp_path):
    cube, runs = trained
    _save_variant(runs[0], tmp_path / "baseline.pt", model="base", arch="baseline", options={"width": 0.05})
    with pytest.raises(ValueError, match="drop-modalities needs a multimodal model"):
        drop_modalities.main(["--runs", str(tmp_path / "baseline.pt"), "--datacube", str(cube), "--out",
                        str(tmp_path / "x.parquet")])  # fmt: skip
    assert not (tmp_path / "x.parquet").exists()


def test_runs_disagreeing_on_modalities_or_duplicated_are_refused(trained, tmp_path):
    cube, runs = trained
    meta = checkpoints.load_checkpoint(runs[1])["meta"]
    _save_variant(runs[1], tmp_path / "size2.pt", options={**meta["options"], "size": 2})
    with pytest.raises(ValueError, match=r"modalities \['g_r', 'r_i'\] differ"):
        drop_modalities.drop_modalities([runs[0], tmp_path / "size2.pt"], cube, tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="fold 0 seed 0 is also the run of"):
        drop_modalities.drop_modalities([runs[0], runs[1], runs[0]], cube, tmp_path / "x.parquet")
    assert not (tmp_path / "x.parquet").exists()


def test_dry_run_plans_one_drop_for_the_dropout_model(repo, tmp_path):
    extra = tmp_path / "dropout.yaml"
    extra.write_text(yaml.safe_dump({"models": {"multimodal": {"options": {"size": [2, 1], "modality_dropout": 2}}}}))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "--directory", str(tmp_path),
         "--cores", "2", "-n", "all", "--configfile", str(repo / "config" / "config.yaml"), str(extra)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = (line.split() for line in proc.stdout.splitlines())
    counts = {r[0]: int(r[1]) for r in rows if len(r) == 2 and r[1].isdigit()}
    assert counts["drop_modalities"] == 1 and counts["report"] == 1
    assert "results/metrics/dropout/multimodal.parquet" in proc.stdout
