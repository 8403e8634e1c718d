"""Colour-only reference photo-z through RAIL (``photoz reference``): one test fold, trained on the other folds.

The reference answers the first question a photo-z astronomer asks of an image-based network: how much better is
it than an established estimator given only the magnitudes of the same galaxies? It runs LSST DESC RAIL's own
informer and estimator stages (FlexZBoost or the k-nearest-neighbour estimator, :mod:`pipeline.core.reference`)
on magnitudes a user would have: those the pipeline measured on the same images (rule ``photometry``) or the
user's catalogue magnitudes (``mag_<band>``, ``magerr_<band>`` of the source catalog). They are dereddened with
the E(B-V) the CNNs get (the datacube catalog's ``ebv``) and the config's (or the simulated survey's) A_band/E(B-V).

The informer sees the training folds only; the estimator predicts the test fold. RAIL's PDFs are integrated onto
the project's z grid (the difference of their CDF at the bin edges) and written exactly as a CNN run writes its
test fold (``test_pdf.h5``: ancil ``z_reg`` = RAIL's ``zmode``, ``z_spec``, ``fold``, ``seed`` = RAIL's seed), so
that ``photoz ensemble``, ``evaluate``, ``compare`` and the report treat the reference as one more model.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core import io
from pipeline.core.reference import ref_band_default, stage_classes
from pipeline.core.zgrid import ZGrid
from pipeline.store import pdfs

log = logging.getLogger("pipeline.reference")

# RAIL evaluates its PDFs on a grid this many times finer than the project's, whose edges are among its points
REFINE = 5


def magnitude_table(catalog: pd.DataFrame, photometry: pd.DataFrame, bands, extinction: dict) -> pd.DataFrame:
    """Dereddened magnitudes of every catalog object: ``object_id``, ``z_spec``, ``fold``, ``mag_<band>``,
    ``magerr_<band>`` (AB), in the catalog's order.

    ``mag - A_band/E(B-V) * ebv`` with the catalog's ``ebv``; NaN magnitudes (no detection, no measurement) stay NaN
    and are RAIL's non-detections. Raises a ``ValueError`` naming missing columns or objects.
    """
    for col in ("object_id", "z_spec", "fold", "ebv"):
        if col not in catalog.columns:
            raise ValueError(f"datacube catalog: missing column {col!r}")
    wanted = [f"{kind}_{b}" for b in bands for kind in ("mag", "magerr")]
    missing = [c for c in ("object_id", *wanted) if c not in photometry.columns]
    if missing:
        raise ValueError(f"photometry: missing column(s) {missing} (it needs mag_<band> and magerr_<band>)")
    if photometry.object_id.duplicated().any():
        raise ValueError("photometry: object_id is not unique")
    missing_bands = [b for b in bands if b not in extinction]
    if missing_bands:
        raise ValueError(f"reference.extinction: no coefficient for band(s) {missing_bands}")
    rows = catalog[["object_id", "z_spec", "fold", "ebv"]].merge(
        photometry[["object_id", *wanted]], on="object_id", how="left", validate="one_to_one", indicator=True
    )
    absent = rows._merge != "both"
    if absent.any():
        raise ValueError(
            f"photometry: {int(absent.sum())} object(s) of the datacube catalog have no row, "
            f"e.g. object_id {rows.object_id[absent].iloc[0]}"
        )
    ebv = rows.ebv.to_numpy(float)
    for b in bands:
        rows[f"mag_{b}"] = rows[f"mag_{b}"].to_numpy(float) - float(extinction[b]) * ebv
    return rows.drop(columns=["ebv", "_merge"])


def _table(rows: pd.DataFrame, bands, with_redshift: bool) -> dict:
    """The in-memory table RAIL's stages read (a numpy dict): fresh arrays, since RAIL fills NaNs in place."""
    out = {f"{kind}_{b}": rows[f"{kind}_{b}"].to_numpy(np.float64).copy() for b in bands for kind in ("mag", "magerr")}
    if with_redshift:
        out["redshift"] = rows.z_spec.to_numpy(np.float64).copy()
    return out


def mag_limits(train: pd.DataFrame, bands) -> dict:
    """RAIL's replacement for a NaN magnitude, per ``mag_<band>``: the faintest magnitude of the training folds."""
    out = {}
    for b in bands:
        finite = train[f"mag_{b}"].to_numpy(float)
        finite = finite[np.isfinite(finite)]
        if not len(finite):
            raise ValueError(f"photometry: no training object has a magnitude in band {b}")
        out[f"mag_{b}"] = float(finite.max())
    return out


def stage_options(reference: dict, bands, mag_column: str, zgrid: ZGrid, train: pd.DataFrame) -> dict:
    """The options both RAIL stages get: the pipeline's (bands, columns, grid) and the user's ``reference.options``."""
    return {
        "ref_band": ref_band_default(bands, mag_column),
        "mag_limits": mag_limits(train, bands),
        **(reference.get("options") or {}),
        "bands": [f"mag_{b}" for b in bands],
        "err_bands": [f"magerr_{b}" for b in bands],
        "zmin": zgrid.z_min,
        "zmax": zgrid.z_max,
        "nzbins": REFINE * zgrid.n_bins + 1,
        "redshift_col": "redshift",
        "hdf5_groupname": "",
        "nondetect_val": float("nan"),
        "output_mode": "return",
        "calculated_point_estimates": ["zmode"],
    }


def on_grid(ensemble, zgrid: ZGrid) -> np.ndarray:
    """Probability of each project bin (N, n_bins), rows summing to one: the CDF of a qp ensemble at the bin edges,
    differenced. Mass outside the grid (a Gaussian kernel's tail below z_min) is dropped and the rest renormalised,
    as a CNN's softmax has none; a PDF with no mass on the grid becomes flat (logged)."""
    probs = np.clip(np.diff(ensemble.cdf(zgrid.edges), axis=1), 0.0, None)
    total = probs.sum(axis=1, keepdims=True)
    empty = total[:, 0] <= 0
    if empty.any():
        log.warning("%d PDF(s) with no mass on the z grid: set flat", int(empty.sum()))
        probs[empty], total[empty] = 1.0, zgrid.n_bins
    return (probs / total).astype(np.float32)


def fit_predict(estimator: str, train: dict, test: dict, options: dict, name: str = "reference", threads: int = 1):
    """Inform RAIL's ``estimator`` on ``train`` and estimate ``test`` (RAIL numpy-dict tables); both stages get
    ``options``, each the ones it declares. Returns the qp ensemble of the test objects, the trained model and the
    informer's resolved configuration (its ``seed`` among them)."""
    from threadpoolctl import threadpool_limits

    informer_cls, estimator_cls = stage_classes(estimator)
    # FlexCode fits its trees through joblib with n_jobs=-1: cap its process pool at the job's threads
    os.environ["LOKY_MAX_CPU_COUNT"] = str(max(1, threads))
    with threadpool_limits(max(1, threads)):
        informer = informer_cls.make_stage(
            name=f"{name}_inform", **{k: v for k, v in options.items() if k in informer_cls.config_options}
        )
        model = informer.inform(train)
        stage = estimator_cls.make_stage(
            name=f"{name}_estimate",
            model=model,
            **{k: v for k, v in options.items() if k in estimator_cls.config_options},
        )
        ensemble = stage.estimate(test).data
    return ensemble, model.data, informer.config


def _describe(model) -> str:
    """The hyperparameters RAIL's informer chose on its validation split, for the log."""
    if isinstance(model, dict):  # the k-nearest-neighbour model
        return f"sigma={model.get('bestsig')}, n_neighbours={model.get('nneigh')}"
    return (
        f"bump_threshold={getattr(model, 'bump_threshold', '?')}, sharpen_alpha={getattr(model, 'sharpen_alpha', '?')}"
    )


def reference_fold(
    catalog: pd.DataFrame,
    photometry: pd.DataFrame,
    fold: int,
    reference: dict,
    bands,
    mag_column: str,
    extinction: dict,
    zgrid: ZGrid,
    out=None,
    threads: int = 1,
) -> dict:
    """Train the reference on every fold but ``fold`` and predict ``fold``; write ``out`` when given.

    Parameters
    ----------
    catalog : DataFrame
        The datacube catalog: ``object_id``, ``z_spec``, ``fold``, ``ebv``.
    photometry : DataFrame
        ``object_id``, ``mag_<band>``, ``magerr_<band>`` (AB, not dereddened) of at least the catalog's objects.
    fold : int
        The test fold.
    reference : dict
        The config's ``reference`` section (``estimator``, ``options``).
    bands : list of str
        Survey bands, in wavelength order (RAIL's colours are those of adjacent bands).
    mag_column : str
        ``survey.mag_column``: the default of RAIL's ``ref_band``.
    extinction : dict
        Band -> A_band / E(B-V).
    zgrid : ZGrid
        The project's redshift grid.
    out : path, optional
        The run's PDF store (``test_pdf.h5``, :func:`pipeline.store.pdfs.write_pdfs`).
    threads : int
        CPU threads (and joblib processes) RAIL's estimator may use.

    Returns
    -------
    dict
        ``object_id``, ``pdf`` (N, n_bins), ``z_reg``, ``z_spec``, ``fold``, ``seed`` of the test fold's objects.
    """
    rows = magnitude_table(catalog, photometry, bands, extinction)
    is_test = rows.fold.to_numpy() == fold
    train, test = rows[~is_test], rows[is_test]
    if not len(test):
        raise ValueError(f"fold {fold}: no object of the datacube catalog is in it (folds {sorted(set(rows.fold))})")
    if not len(train):
        raise ValueError(f"fold {fold}: no training object outside it")
    options = stage_options(reference, bands, mag_column, zgrid, train)
    estimator = reference["estimator"]
    log.info("fold %d: RAIL %s trained on %d objects, predicting %d", fold, estimator, len(train), len(test))
    ensemble, model, informed = fit_predict(
        estimator, _table(train, bands, True), _table(test, bands, False), options, f"reference_fold{fold}", threads
    )
    log.info("fold %d: %s", fold, _describe(model))
    seed = int(informed["seed"])
    result = {
        "object_id": test.object_id.to_numpy(np.int64),
        "pdf": on_grid(ensemble, zgrid),
        "z_reg": np.asarray(ensemble.ancil["zmode"], dtype=np.float32).reshape(-1),
        "z_spec": test.z_spec.to_numpy(np.float32),
        "fold": np.full(len(test), fold),
        "seed": np.full(len(test), seed),
    }
    if out is not None:
        pdfs.write_pdfs(out, result["object_id"], result["pdf"], zgrid.edges, **{
            k: result[k] for k in ("z_reg", "z_spec", "fold", "seed")
        })  # fmt: skip
        log.info("wrote %d PDFs of fold %d to %s", len(test), fold, out)
    return result


def read_photometry(paths, bands) -> pd.DataFrame:
    """One table from the photometry files (the shards of rule ``photometry``, or the source catalog): ``object_id``
    and the bands' ``mag_<band>``, ``magerr_<band>`` (of a Parquet file, only those columns are read)."""
    import pyarrow.parquet as pq

    wanted = ["object_id", *(f"{kind}_{b}" for b in bands for kind in ("mag", "magerr"))]
    parts = []
    for path in paths:
        if str(path).lower().endswith((".parquet", ".pq")) and Path(path).exists():
            present = set(pq.read_schema(path).names)
            parts.append(io.read_table(path, columns=[c for c in wanted if c in present]))
        else:
            table = io.read_table(path)
            parts.append(table[[c for c in wanted if c in table.columns]])
    return pd.concat(parts, ignore_index=True)


def extinction_for(reference: dict, survey_meta=None) -> dict:
    """A_band / E(B-V): ``reference.extinction``, else the simulated survey's (``survey.json``), else an error."""
    if reference.get("extinction"):
        return dict(reference["extinction"])
    if survey_meta is not None:
        meta = io.read_json(survey_meta)
        if "extinction_r_coefficients" not in meta:
            raise KeyError(f"{survey_meta}: no extinction_r_coefficients")
        return dict(meta["extinction_r_coefficients"])
    raise ValueError(
        "reference.extinction: no A_band/E(B-V) coefficients: give them in the config, or --survey-meta "
        "(the simulated survey's survey.json)"
    )


def main(argv=None) -> None:
    import structlog

    from pipeline.core import log as plog
    from pipeline.core.bands import sort_bands
    from pipeline.core.config import load_config

    parser = argparse.ArgumentParser(prog="photoz reference", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="workflow config (reference, survey and zgrid are read)")
    parser.add_argument("--catalog", required=True, help="datacube catalog (object_id, z_spec, fold, ebv; Parquet)")
    parser.add_argument(
        "--photometry", nargs="+", required=True, help="tables with object_id, mag_<band>, magerr_<band>"
    )
    parser.add_argument("--fold", type=int, required=True, help="the test fold")
    parser.add_argument("--survey-meta", help="survey.json of a simulated survey (its extinction coefficients)")
    parser.add_argument("--out", required=True, help="the fold's PDF store (test_pdf.h5)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads RAIL may use")
    args = parser.parse_args(argv)
    plog.setup()
    # RAIL logs every data-store insertion through structlog; keep its warnings only
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    cfg = load_config(args.config, sections=("reference", "survey", "zgrid"))
    reference = cfg["reference"]
    if not reference["enabled"]:
        raise ValueError(f"{args.config}: reference.enabled is false")
    bands = sort_bands(cfg["survey"]["bands"])
    reference_fold(
        io.read_table(args.catalog),
        read_photometry(args.photometry, bands),
        args.fold,
        reference,
        bands,
        cfg["survey"]["mag_column"],
        extinction_for(reference, Path(args.survey_meta) if args.survey_meta else None),
        ZGrid.from_config(cfg["zgrid"]),
        args.out,
        args.threads,
    )


if __name__ == "__main__":
    main()
