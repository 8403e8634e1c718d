"""Test-time modality drop (``photoz drop-modalities``): photo-z of each test fold with one modality dropped at a time.

The experiment of the paper's Sec. 7.4 (its Fig. 10): a multimodal network trained with ``modality_dropout``
predicts its held-out fold once with every modality, then once per modality with that modality's branch features
zeroed (``model.drop_modalities = [name]``). As in ``photoz ensemble``, the PDFs of the seeds of a fold are averaged
and ``z_phot`` is the median of the averaged PDF; each variant is reduced to ``z_phot`` block by block, so memory
holds one block of PDFs, never the PDFs of every variant.

The output is the long table of :mod:`pipeline.store.dropouts`.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import defaultdict

import numpy as np
import pandas as pd

from pipeline.core import metrics, runtime
from pipeline.core.bands import channel_index
from pipeline.core.inference import build_from_meta, model_from_checkpoint, predict_batches
from pipeline.core.pdf import point_estimates
from pipeline.core.zgrid import ZGrid
from pipeline.store import cubes, dropouts, loader
from pipeline.store.checkpoints import check_identity, load_checkpoint
from pipeline.store.dropouts import COLUMNS, NONE

log = logging.getLogger("pipeline.drop_modalities")

# test objects read per block (9 bands of 64 px: 150 MB); a multiple of predict_batches' batch of 256, so that the
# batches are those of the training run's own test prediction
BLOCK = 1024
# what the checkpoints of one model must share for their PDFs to be averaged (fold, seed and statistics may differ)
SAME = ("model", "arch", "options", "bands", "image_size", "zgrid")


def modality_names(meta: dict, path) -> list[str]:
    """The modality names of a checkpoint's model, in its order; an error for a model without modalities."""
    model = build_from_meta(meta)
    names = list(getattr(model, "modality_names", None) or [])
    if not names or not hasattr(model, "drop_modalities"):
        raise ValueError(
            f"{path}: model {meta.get('model')!r} (arch {meta.get('arch')!r}) has no modalities: "
            "drop-modalities needs a multimodal model (arch multimodal, or plain with multimodal: true)"
        )
    return names


def read_runs(paths: list) -> tuple[dict, list[str], dict]:
    """Check the checkpoints of one model; returns {fold: [paths, by seed as given]}, modality names, a meta."""
    if not paths:
        raise ValueError("no runs given")
    by_fold, seen, names, ref, ref_path = defaultdict(list), {}, None, None, None
    cache = {}
    for path in paths:
        meta = load_checkpoint(path)["meta"]
        key = (int(meta["fold"]), int(meta["seed"]))
        if key in seen:
            raise ValueError(f"{path}: fold {key[0]} seed {key[1]} is also the run of {seen[key]}")
        seen[key] = path
        ident = json.dumps({k: meta.get(k) for k in ("arch", "bands", "image_size", "options")}, sort_keys=True)
        if ident not in cache:
            cache[ident] = modality_names(meta, path)
        if names is None:
            names, ref, ref_path = cache[ident], meta, path
        elif cache[ident] != names:
            raise ValueError(f"{path}: modalities {cache[ident]} differ from {names} of {ref_path}")
        else:
            check_identity(meta, {k: ref.get(k) for k in SAME}, path)
        by_fold[key[0]].append(path)
    return dict(sorted(by_fold.items())), names, ref


def drop_modalities(runs: list, cube_path, out, device: str = "auto") -> pd.DataFrame:
    """Predict every test fold with nothing and with each modality dropped; write and return the long table."""
    by_fold, names, ref = read_runs(runs)
    variants = [NONE, *names]
    zgrid = ZGrid(**ref["zgrid"])
    dev = runtime.pick_device(device)
    data = cubes.load(cube_path, cubes=False)
    cube_bands = list(data["attrs"]["bands"])
    chans = channel_index(ref["bands"], cube_bands, f"datacube {cube_path}")
    if int(data["attrs"]["size"]) != int(ref["image_size"]):
        raise ValueError(f"{cube_path}: cutouts of {data['attrs']['size']} px, the models take {ref['image_size']}")
    source = loader.file_source(cube_path, channels=chans)
    log.info(
        "%s: %d fold(s), %d run(s), %d modalities %s", ref.get("model"), len(by_fold), len(runs), len(names), names
    )
    parts = []
    for fold, paths in by_fold.items():
        idx = np.flatnonzero(data["fold"] == fold)
        if len(idx) == 0:
            raise ValueError(f"{paths[0]}: fold {fold} has no objects in {cube_path}")
        members = [model_from_checkpoint(p) for p in paths]
        # modalities the model's options drop always (drop_modalities) stay dropped in every variant
        fixed = [list(model.drop_modalities) for model, _ in members]
        z_phot = np.empty((len(variants), len(idx)))
        log.info("fold %d: %d test objects, %d seed(s), %d variants", fold, len(idx), len(members), len(variants))
        for start in range(0, len(idx), BLOCK):
            rows = idx[start : start + BLOCK]
            block = source.take(rows)  # read once, predicted once per variant and seed
            ebv = data["ebv"][rows]
            for v, name in enumerate(variants):
                probs = []
                for (model, meta), base in zip(members, fixed, strict=True):
                    model.drop_modalities = base if name in (NONE, *base) else [*base, name]
                    p, _ = predict_batches(model, block, ebv, meta["norm_mean"], meta["norm_std"], dev, zgrid.n_bins)
                    probs.append(p)
                # np.mean over the members, as photoz ensemble averages them, then reduced to z_phot at once
                est = point_estimates(np.mean(probs, axis=0), zgrid.edges)
                z_phot[v, start : start + len(rows)] = est["z_phot"]
            log.info("fold %d: %d/%d objects done, %d variants each", fold, start + len(rows), len(idx), len(variants))
        z_spec = data["z_spec"][idx].astype(np.float64)
        for v, name in enumerate(variants):
            sm = metrics.sigma_mad(metrics.delta_z(z_phot[v], z_spec))
            log.debug("fold %d, dropped %s: sigma_MAD %.4f", fold, name, sm)
        parts.append((data["object_id"][idx], z_spec, z_phot, fold))
        del members
    table = assemble(parts, variants)
    dropouts.write(table, out, names)
    for name, group in table.groupby("dropped", sort=False):
        sm = metrics.sigma_mad(metrics.delta_z(group.z_phot, group.z_spec))
        log.info("dropped %-8s sigma_MAD %.4f over %d objects", name, sm, len(group))
    log.info("wrote %d rows (%d variants) to %s", len(table), len(variants), out)
    return table


def assemble(parts: list, variants: list[str]) -> pd.DataFrame:
    """The long table from per-fold ``(object_id, z_spec, z_phot[variant, object], fold)``: variants in order, then
    objects by id."""
    object_id = np.concatenate([p[0] for p in parts]).astype(np.int64)
    if len(np.unique(object_id)) != len(object_id):
        raise ValueError("an object appears in more than one test fold")
    z_spec = np.concatenate([p[1] for p in parts])
    fold = np.concatenate([np.full(len(p[0]), p[3], np.int64) for p in parts])
    z_phot = np.concatenate([p[2] for p in parts], axis=1)
    order = np.argsort(object_id, kind="stable")
    n = len(object_id)
    return pd.DataFrame(
        {
            "object_id": np.tile(object_id[order], len(variants)),
            "z_spec": np.tile(z_spec[order], len(variants)),
            "fold": np.tile(fold[order], len(variants)),
            "dropped": np.repeat(np.asarray(variants, dtype=object), n),
            "z_phot": z_phot[:, order].reshape(-1).astype(np.float64),
        },
        columns=list(COLUMNS),
    )


def main(argv=None) -> None:
    from pipeline.core import log as plog

    parser = argparse.ArgumentParser(prog="photoz drop-modalities", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True, help="model.pt of every (fold, seed) run of one model")
    parser.add_argument("--datacube", required=True, help="the training datacube (HDF5) the runs were trained on")
    parser.add_argument("--out", required=True, help="z_phot per object and dropped modality (Parquet)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (sigma_MAD per fold and variant)")
    args = parser.parse_args(argv)
    plog.setup(args.verbose)
    runtime.set_threads(args.threads)
    drop_modalities(args.runs, args.datacube, args.out, args.device)


if __name__ == "__main__":
    main()
