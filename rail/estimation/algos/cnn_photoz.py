"""RAIL estimator of the cnn-photoz pipeline: redshift PDFs of objects from their image cutouts, by a trained CNN
ensemble (every fold and seed of one model of the workflow), as a qp ensemble.

The stage follows RAIL's estimator API: ``CNNPhotozEstimator.make_stage(...)``, ``estimate(table)`` (or a
``RailPipeline``/ceci pipeline), chunked ``_process_chunk``, output through RAIL's ``QPHandle``. Its ``model`` is
the folder of a model's runs, ``results/models/<model>`` (every ``fold*/seed*/model.pt`` in it) or one
``model.pt``; checkpoints are read with torch's ``weights_only`` loader, never unpickled. Its input table holds
``object_id`` (``id_col``) and Galactic E(B-V) (``ebv_col``, else ``ra``/``dec`` to read the SFD map); the
pixels are read from ``cutouts``, a cutout store of the pipeline (``results/cutouts/shard-K-of-N.h5``, or the
datacube) holding every input object, by object id. Each model reads its own bands, picked by name.

The PDFs are those of ``photoz predict`` for the same objects: the softmax PDFs of every checkpoint averaged with
equal weights, a ``qp.hist`` ensemble on the models' z grid, with the averaged regression estimate as ancil
``z_reg`` (and ``zmode`` etc. when ``calculated_point_estimates`` asks).

Example::

    from rail.estimation.algos.cnn_photoz import CNNPhotozEstimator

    stage = CNNPhotozEstimator.make_stage(
        name="cnn_photoz", model="results/models/baseline", cutouts="results/cutouts/shard-1-of-1.h5",
        hdf5_groupname="", output_mode="return",
    )
    ensemble = stage.estimate({"object_id": ids, "ebv": ebv}).data
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import qp
from ceci.config import StageParameter as Param
from rail.core.data import ModelHandle, QPHandle, TableHandle
from rail.estimation.estimator import CatEstimator

__all__ = ["CNNModelHandle", "CNNPhotozEstimator", "load_models"]

# what every checkpoint of an ensemble must share with the first (the checks of photoz predict)
SHARED = ("bands", "image_size", "zgrid")


def _run_key(path: Path) -> tuple:
    """Sort runs by (fold, seed) as numbers, the order in which the workflow hands them to ``photoz predict``."""
    numbers = [int(n) for n in re.findall(r"(?:fold|seed)(\d+)", str(path))]
    return (*numbers, str(path))


def load_models(path) -> list[tuple]:
    """The trained networks of a model: ``[(network in eval mode, meta), ...]`` of every ``fold*/seed*/model.pt``
    under a folder (in fold, then seed order), or of one checkpoint file. All must share bands, image size and
    z grid."""
    from pipeline.core.inference import model_from_checkpoint

    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("fold*/seed*/model.pt"), key=_run_key)
        if not files:
            raise FileNotFoundError(f"{path}: no fold*/seed*/model.pt checkpoint in it")
    elif path.is_file():
        files = [path]
    else:
        raise FileNotFoundError(f"model not found: {path} (a model's folder, results/models/<model>, or a model.pt)")
    models = []
    for f in files:
        expect = {k: models[0][1][k] for k in SHARED} if models else None
        models.append(model_from_checkpoint(f, expect))
    return models


class CNNModelHandle(ModelHandle):
    """A model's checkpoints (a folder of runs, or one ``model.pt``), read with torch's ``weights_only`` loader."""

    suffix = "pt"
    interactive_type = "list of (torch.nn.Module, dict)"

    @classmethod
    def _open(cls, path: str, **kwargs):
        return load_models(path)

    @classmethod
    def _read(cls, path: str, **kwargs):
        return load_models(path)

    @classmethod
    def _write(cls, data, path: str, **kwargs):
        raise NotImplementedError("CNN checkpoints are written by the workflow's training (photoz train)")


class CNNPhotozEstimator(CatEstimator):
    """Redshift PDFs from image cutouts by a trained CNN ensemble of the cnn-photoz pipeline."""

    name = "CNNPhotozEstimator"
    entrypoint_function = "estimate"
    interactive_function = "cnn_photoz_estimator"
    config_options = CatEstimator.config_options.copy()
    config_options.update(
        cutouts=Param(
            str,
            None,
            required=True,
            msg="cutout store of the pipeline (HDF5: cubes, object_id, attrs bands and size) holding every input "
            "object, found by id_col",
        ),
        ebv_col=Param(
            str, "ebv", msg="column of Galactic E(B-V); without it, E(B-V) is read from the SFD map at ra, dec"
        ),
        device=Param(str, "auto", msg="torch device: auto (CUDA when available), cpu or cuda"),
        batch_size=Param(int, 256, msg="objects per forward pass"),
    )
    inputs = [("model", CNNModelHandle), ("input", TableHandle)]
    outputs = [("output", QPHandle)]

    def __init__(self, args, **kwargs):
        super().__init__(args, **kwargs)
        self._reader = None
        self._rows = None
        self._device = None

    def open_model(self, **kwargs):
        """Load the checkpoints named by ``model`` (a path), or take a handle or already loaded networks."""
        model = kwargs.get("model")
        if isinstance(model, str | Path) and str(model) not in ("", "None", "none"):
            self.model = load_models(model)
            self.config["model"] = str(model)
            return self.model
        return super().open_model(**kwargs)

    def _open_cutouts(self) -> None:
        """Check the cutout store against the models and index its objects (once, at the first chunk)."""
        from pipeline.core import runtime
        from pipeline.core.bands import channel_index
        from pipeline.store import cubes, loader

        meta = self.model[0][1]
        path = self.config.cutouts
        attrs = cubes.read_attrs(path)
        chan = channel_index(meta["bands"], attrs["bands"], f"cutout file {path}")
        if int(attrs["size"]) != meta["image_size"]:
            raise ValueError(
                f"{path}: cutout size {int(attrs['size'])} does not match the models' {meta['image_size']}"
            )
        (object_id,) = cubes.read_columns(path, "object_id")
        self._rows = pd.Index(object_id)
        self._reader = loader.file_source(path, channels=chan)
        self._device = runtime.pick_device(self.config.device)

    def _ebv(self, data, object_id: np.ndarray) -> np.ndarray:
        if self.config.ebv_col in data.keys():
            return np.asarray(data[self.config.ebv_col], dtype=np.float32)
        if "ra" in data.keys() and "dec" in data.keys():
            from pipeline.core.extinction import ebv_at

            return ebv_at(np.asarray(data["ra"]), np.asarray(data["dec"])).astype(np.float32)
        raise KeyError(f"input table: no column {self.config.ebv_col!r} (E(B-V)) and no ra, dec to read it from SFD")

    def _process_chunk(self, start, end, data, first):
        from pipeline.core.inference import predict_batches
        from pipeline.core.zgrid import ZGrid

        if self._reader is None:
            self._open_cutouts()
        object_id = np.asarray(data[self.config.id_col], dtype=np.int64)
        rows = self._rows.get_indexer(object_id)
        if (rows < 0).any():
            raise KeyError(
                f"{self.config.cutouts}: no cutout for {int((rows < 0).sum())} input object(s), "
                f"e.g. {self.config.id_col} {object_id[rows < 0][0]}"
            )
        ebv = self._ebv(data, object_id)
        zgrid = ZGrid(**self.model[0][1]["zgrid"])
        block = self._reader.take(rows)
        probs = np.zeros((len(rows), zgrid.n_bins), np.float32)
        z_reg = np.zeros(len(rows), np.float32)
        # equal weights, summed in the order of the runs: the averaging of photoz predict
        for net, meta in self.model:
            p, r = predict_batches(
                net, block, ebv, meta["norm_mean"], meta["norm_std"], self._device, zgrid.n_bins,
                self.config.batch_size,
            )  # fmt: skip
            probs += p / len(self.model)
            z_reg += r / len(self.model)
        ensemble = qp.Ensemble(qp.hist, data=dict(bins=zgrid.edges, pdfs=probs), ancil=dict(z_reg=z_reg))
        self._do_chunk_output(ensemble, start, end, first, data=data)

    def _calculate_mode_point_estimate(self, qp_dist, grid=None):
        """RAIL's ``zmode``, on the models' bin centres unless a grid is given (not on zmin/zmax/nzbins)."""
        if grid is None:
            from pipeline.core.zgrid import ZGrid

            grid = ZGrid(**self.model[0][1]["zgrid"]).centres
        return qp_dist.mode(grid=grid)
