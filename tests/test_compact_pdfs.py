"""Compact PDF stores for catalogue-wide runs: each qp representation through qp.read, chunks merged, the choice
carried from the command line to the merged catalogue, and an unknown representation refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.core.pdf import point_estimates
from pipeline.store import pdfs

qp = pytest.importorskip("qp")

EDGES = np.linspace(0.0, 0.4, 81)


def _pdfs(n=50, seed=0):
    """Network-like PDFs: a narrow peak, sometimes a second one, and a softmax floor in every bin."""
    rng = np.random.default_rng(seed)
    c = 0.5 * (EDGES[1:] + EDGES[:-1])
    mu, s = rng.uniform(0.03, 0.3, (n, 1)), rng.uniform(0.006, 0.03, (n, 1))
    p = np.exp(-0.5 * ((c - mu) / s) ** 2) + 0.4 * (rng.random((n, 1)) < 0.3) * np.exp(
        -0.5 * ((c - mu - 0.08) / s) ** 2
    )
    p += 1e-5
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


# representation -> (qp class, data arrays stored, largest |change| of the median allowed)
CASES = {
    "hist": ("hist_gen", {"pdfs": (80, np.float32)}, 1e-6),
    "quant": ("quant_gen", {"locs": (20, np.float32)}, 2e-3),
    "interp": ("interp_gen", {"yvals": (80, np.float32)}, 2e-3),
    "packed_interp": ("packed_interp_gen", {"ypacked": (80, np.uint8), "ymax": (1, np.float32)}, 2e-3),
}


@pytest.mark.parametrize("representation", list(CASES))
def test_each_representation_round_trips_through_qp(tmp_path, representation):
    import h5py

    p = _pdfs()
    path = tmp_path / "x.pdf.hdf5"
    pdfs.write_pdfs(path, np.arange(100, 150), p, EDGES, storage=representation, fold=np.zeros(50, np.int16))
    cls, arrays, tol = CASES[representation]
    with h5py.File(path, "r") as f:
        assert sorted(f) == ["ancil", "data", "meta"]  # qp reads every top-level key as a table
        assert {k: (f["data"][k].shape[1], f["data"][k].dtype) for k in f["data"]} == arrays
        assert f.attrs["pdf_representation"] == representation
    ens = qp.read(str(path))
    assert type(ens.dist).__name__ == cls and ens.npdf == 50
    assert np.array_equal(ens.ancil["object_id"], np.arange(100, 150))
    truth = point_estimates(p, EDGES)
    assert np.abs(ens.median().ravel() - truth["z_phot"]).max() < tol  # qp's own reading of the file
    back = pdfs.read_pdfs(path)  # the store's reading: integrated over the z grid's bins
    assert back["pdf"].shape == p.shape and np.allclose(back["pdf"].sum(axis=1), 1)
    assert np.array_equal(back["z_edges"], EDGES) and np.array_equal(back["object_id"], np.arange(100, 150))
    assert np.abs(point_estimates(back["pdf"], EDGES)["z_phot"] - truth["z_phot"]).max() < tol
    assert pdfs.read_storage(path)["representation"] == representation


def test_sizes_and_quantile_settings(tmp_path):
    p = _pdfs(n=400)
    sizes = {}
    for storage in ("hist", {"representation": "quant", "n_quantiles": 10},
                    {"representation": "interp", "n_points": 21}, "packed_interp"):  # fmt: skip
        path = tmp_path / f"{pdfs.describe(storage).split()[0]}.hdf5"
        pdfs.write_pdfs(path, np.arange(400), p, EDGES, storage=storage)
        sizes[pdfs.describe(storage)] = path.stat().st_size
    assert (
        sizes["quant (10 quantiles)"] < sizes["packed_interp (bin-centre points)"] < sizes["hist (the z grid's bins)"]
    )
    assert sizes["interp (21 points)"] < sizes["hist (the z grid's bins)"]
    ens = qp.read(str(tmp_path / "quant.hdf5"))
    assert np.allclose(ens.dist.quants[1:-1], (np.arange(10) + 0.5) / 10)
    ens = qp.read(str(tmp_path / "interp.hdf5"))
    assert np.allclose(ens.dist.xvals, np.linspace(0, 0.4, 21))
    # a PDF narrower than the interp cells keeps its mass (cell averages, not samples between the peaks)
    spike = np.zeros((1, 80), np.float32)
    spike[0, 41] = 1
    pdfs.write_pdfs(tmp_path / "s.hdf5", [1], spike, EDGES, storage={"representation": "interp", "n_points": 21})
    assert pdfs.read_pdfs(tmp_path / "s.hdf5")["pdf"][0, 36:47].sum() > 0.99


def test_chunks_merge_in_their_representation(tmp_path):
    p = _pdfs(n=30)
    storage = {"representation": "quant", "n_quantiles": 7}
    pdfs.write_pdfs(tmp_path / "a.hdf5", np.arange(20), p[:20], EDGES, storage=storage)
    pdfs.write_pdfs(tmp_path / "b.hdf5", np.arange(20, 30), p[20:], EDGES, storage=storage)
    assert pdfs.concat_pdfs([tmp_path / "a.hdf5", tmp_path / "b.hdf5"], tmp_path / "all.hdf5") == 30
    ens = qp.read(str(tmp_path / "all.hdf5"))
    assert ens.npdf == 30 and ens.dist.quants.size == 9
    whole = tmp_path / "whole.hdf5"
    pdfs.write_pdfs(whole, np.arange(30), p, EDGES, storage=storage)
    assert np.array_equal(ens.dist.locs, qp.read(str(whole)).dist.locs)
    pdfs.write_pdfs(tmp_path / "c.hdf5", np.arange(30, 40), p[:10], EDGES, storage="hist")
    with pytest.raises(ValueError, match=r"c\.hdf5: PDF grid or representation differs"):
        pdfs.concat_pdfs([tmp_path / "a.hdf5", tmp_path / "c.hdf5"], tmp_path / "bad.hdf5")


def test_an_unknown_representation_is_refused(tmp_path, tiny, capsys):
    from pipeline.cli import main
    from pipeline.core.config import ConfigError, validate_config

    with pytest.raises(ValueError, match="unknown PDF representation 'mixmod': valid are hist, quant, interp"):
        pdfs.write_pdfs(tmp_path / "x.hdf5", [1], _pdfs(1), EDGES, storage="mixmod")
    assert not (tmp_path / "x.hdf5").exists()
    tiny["production"] = {"pdf": {"representation": "quantiles"}}
    with pytest.raises(ConfigError, match="production.pdf.representation: 'quantiles' is not one of"):
        validate_config(tiny)
    argv = ["predict", "--cutouts", "c.h5", "--models", "m.pt", "--out", str(tmp_path / "p.parquet"),
            "--pdf-representation", "sparse"]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "photoz predict: error: unknown PDF representation 'sparse'" in err[0]


def test_the_choice_reaches_the_merged_catalogue(tmp_path):
    """predict writes each chunk in the representation asked for on its command line (as the workflow passes
    production.pdf); merge states it in the catalogue's Parquet and FITS metadata."""
    import pyarrow.parquet as pq
    from astropy.io import fits

    from pipeline.steps import merge, predict, train

    from synthetic import galaxies, make_datacube, train_config, write_shard

    cube, _ = make_datacube(tmp_path, n=40)
    train.train_one(train_config(epochs=1), "tiny", 0, 0, cube, tmp_path / "run")
    cubes, _ = galaxies(12, seed=5)
    sources = pd.DataFrame({"object_id": np.arange(12), "ebv": 0.02})
    sources.to_parquet(tmp_path / "sources.parquet")
    write_shard(tmp_path / "c.h5", sources.object_id, cubes)
    for k in range(2):  # two row ranges of one cutout file, as for an imported datacube
        predict.main(["--cutouts", str(tmp_path / "c.h5"), "--models", str(tmp_path / "run" / "model.pt"),
                      "--sources", str(tmp_path / "sources.parquet"), "--device", "cpu", "--rows", f"{k}/2",
                      "--pdf-representation", "packed_interp", "--pdf-n-points", "30",
                      "--out", str(tmp_path / f"chunk{k}.parquet")])  # fmt: skip
    assert len(pd.read_parquet(tmp_path / "chunk0.parquet")) == 6
    merged = merge.merge_chunks([tmp_path / "chunk0.parquet", tmp_path / "chunk1.parquet"], tmp_path / "all.parquet")
    assert merged.object_id.tolist() == list(range(12))
    meta = pq.read_schema(tmp_path / "all.parquet").metadata
    assert meta[b"pdf_representation"] == b"packed_interp" and b'"n_points": 30' in meta[b"pdf_storage"]
    assert fits.getheader(tmp_path / "all.fits", 1)["PDFREPR"] == "packed_interp"
    ens = qp.read(str(tmp_path / "all.pdf.hdf5"))
    assert type(ens.dist).__name__ == "packed_interp_gen" and ens.dist.xvals.size == 30
    # the catalogue's point estimates come from the full histogram, not from the stored compact form
    assert np.abs(ens.median().ravel() - merged.z_phot.to_numpy()).max() < 0.02
