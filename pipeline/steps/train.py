"""Train one model on one fold with one seed (``photoz train``): the unit the workflow scatters.

Writes into its run folder: ``checkpoint.pt`` after every epoch (the resume point), ``history.csv``, and at the
end ``model.pt`` (final weights with their resolved config and code version) and ``test_pdf.h5`` (the held-out
fold's PDFs and regression estimates). A job killed at any moment and started again resumes from its last
checkpoint; on the CPU the final weights equal those of an uninterrupted run, because every random draw of an
epoch (shuffle, augmentation, dropout) is seeded from (seed, fold, epoch).

A model entry may restrict the input to some of the datacube's bands (``bands``, taken in the datacube's order)
and the training to a fraction of the training folds (``train_fraction``, the same nested subset for every model
and seed of a fold); the test fold is always whole.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from pipeline.core import io, metrics, runtime
from pipeline.core.bands import channel_index
from pipeline.core.folds import fraction_subset, split_inner, validation_fraction
from pipeline.core.inference import build_from_meta, predict_batches
from pipeline.core.pdf import point_estimate_of, point_estimates
from pipeline.core.zgrid import ZGrid
from pipeline.store import checkpoints, cubes, loader, pdfs

log = logging.getLogger("pipeline.train")

# beyond the model's identity, what a checkpoint must share with this run to be resumed from
RESUME_KEYS = ("fold", "seed", "training", "loss", "norm_mean", "train_fraction", "tag")


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random flips and 90-degree rotations, drawn per object and applied to the batch in at most 8 groups."""
    code = torch.randint(0, 8, (x.shape[0],), generator=gen, device="cpu").to(x.device)
    out = torch.empty_like(x)
    for c in range(8):
        sel = code == c
        if sel.any():
            y = torch.rot90(x[sel], c % 4, dims=(2, 3))
            out[sel] = torch.flip(y, dims=(3,)) if c >= 4 else y
    return out


def regression_loss(z_reg, z, kind: str) -> torch.Tensor:
    if kind == "mae":
        return (z_reg - z).abs().mean()
    if kind == "rmse":
        return torch.sqrt(((z_reg - z) ** 2).mean() + 1e-12)
    return ((z_reg - z).abs() / (1 + z)).mean()  # nmae


def model_bands(spec: dict, cube_bands, model_name: str) -> list[str]:
    """The bands a model reads: its ``bands`` in the datacube's (wavelength) order, or all the datacube's bands."""
    cube_bands = [str(b) for b in cube_bands]
    wanted = spec.get("bands")
    if wanted is None:
        return cube_bands
    unknown = [b for b in wanted if b not in cube_bands]
    if unknown:
        raise ValueError(f"models.{model_name}.bands: {unknown} not among the datacube's bands {cube_bands}")
    return [b for b in cube_bands if b in wanted]


def run_meta(cfg: dict, model_name: str, fold: int, seed: int, data: dict, cube_path) -> tuple[dict, list[int]]:
    """What a run's checkpoints say of it (model, bands, image size, z grid, fold, seed, training settings, the
    fold's normalisation statistics of the model's bands), and the datacube channels the model reads."""
    spec = cfg["models"][model_name]
    cube_bands = data["attrs"]["bands"]
    bands = model_bands(spec, cube_bands, model_name)
    chan = channel_index(bands, cube_bands, f"datacube {cube_path}")
    meta = {
        "model": model_name,
        "arch": spec["arch"],
        "options": dict(spec.get("options", {})),
        "bands": bands,
        "image_size": int(data["attrs"]["size"]),
        "zgrid": ZGrid.from_config(cfg["zgrid"]).as_dict(),
        "fold": fold,
        "seed": seed,
        "training": cfg["training"],
        "loss": {**cfg["training"]["loss"], **(spec.get("loss") or {})},
        "train_fraction": float(spec.get("train_fraction", 1.0)),
        "code_version": checkpoints.code_version(),
        "norm_mean": data["norm_mean"][fold][chan].tolist(),
        "norm_std": data["norm_std"][fold][chan].tolist(),
    }
    return meta, chan


def split_objects(fold_of: np.ndarray, fold: int, meta: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices (train, validation, test) of a run: the test fold; the model's ``train_fraction`` of the other
    folds; an inner validation share of those (:func:`pipeline.core.folds.validation_fraction`: none by default,
    the paper's protocol)."""
    is_test = fold_of == fold
    test = np.flatnonzero(is_test)
    pool = fraction_subset(np.flatnonzero(~is_test), meta["train_fraction"], fold)
    train, val = split_inner(pool, validation_fraction(meta["training"]), meta["seed"], fold)
    if len(train) == 0 or len(test) == 0:
        raise ValueError(f"fold {fold}: {len(train)} training and {len(test)} test objects")
    log.info(
        "bands %s; train_fraction %g: %d of the %d objects of the training folds (%d train + %d validation)",
        ",".join(meta["bands"]), meta["train_fraction"], len(pool), int((~is_test).sum()), len(train), len(val),
    )  # fmt: skip
    return train, val, test


def make_model(meta: dict, device: torch.device, compile_: bool):
    """The network of ``meta`` on ``device`` (channels-last and cuDNN autotuning on a GPU), and what runs its steps:
    the ``torch.compile`` wrapper when asked for (state dicts are always taken from the plain module)."""
    torch.manual_seed(meta["seed"])
    model = build_from_meta(meta).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    return model, (torch.compile(model) if compile_ else model)


def make_optimizer(model: torch.nn.Module, tcfg: dict):
    """Adam and the learning-rate schedule of ``training`` (cosine over the epochs, or constant)."""
    opt = torch.optim.Adam(model.parameters(), lr=tcfg["lr"], weight_decay=tcfg["weight_decay"])
    if tcfg["lr_schedule"] == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=tcfg["epochs"])
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return opt, sched


class Run:
    """Everything one (model, fold, seed) training job holds; built from the config and the datacube."""

    def __init__(
        self, cfg: dict, model_name: str, fold: int, seed: int, cube_path, out_dir, max_memory_gb: float | None = None
    ):
        self.tcfg = cfg["training"]
        self.fold, self.seed, self.out = fold, seed, Path(out_dir)
        self.zgrid = ZGrid.from_config(cfg["zgrid"])
        self.data = data = cubes.load(cube_path, cubes=False)
        n_folds = int(data["attrs"]["n_folds"])
        if not 0 <= fold < n_folds:
            raise ValueError(f"fold {fold} out of range: the datacube has {n_folds} folds")
        self.meta, chan = run_meta(cfg, model_name, fold, seed, data, cube_path)
        self.device = runtime.pick_device(self.tcfg["device"])
        self.train_idx, self.val_idx, self.test_idx = split_objects(data["fold"], fold, self.meta)
        # standardised once on the device when the cube fits the memory budget (batches are index gathers there),
        # else read batch by batch from the file; the batches are the same either way
        mean, std = np.asarray(self.meta["norm_mean"]), np.asarray(self.meta["norm_std"])
        self.cubes = loader.open_cubes(cube_path, mean, std, self.device, max_memory_gb, channels=chan)
        self.ebv = torch.from_numpy(data["ebv"].astype(np.float32)).to(self.device)
        self.z = torch.from_numpy(data["z_spec"].astype(np.float32)).to(self.device)
        self.label = torch.from_numpy(self.zgrid.bin_index(data["z_spec"])).to(self.device)
        self.model, self.forward = make_model(self.meta, self.device, self.tcfg["compile"])
        self.opt, self.sched = make_optimizer(self.model, self.tcfg)
        self.history: list[dict] = []
        self.start_epoch = 0
        self.best = {"val_sigma_mad": math.inf, "epoch": -1, "state": None}

    # -- checkpoints ------------------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def save(self, epoch: int) -> None:
        checkpoints.save_checkpoint(
            {
                "meta": self.meta,
                "epoch": epoch,
                "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(),
                "history": self.history,
                "best": {k: v for k, v in self.best.items() if k != "state"},
                "best_state": self.best["state"] or {},
            },
            self.checkpoint_path,
        )

    def try_resume(self) -> None:
        if not self.checkpoint_path.exists():
            return
        state = checkpoints.load_checkpoint(self.checkpoint_path)
        if not checkpoints.same_meta(state["meta"], self.meta, (*checkpoints.IDENTITY_KEYS, *RESUME_KEYS)):
            log.warning("%s was made with another configuration: starting afresh", self.checkpoint_path)
            return
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.history = list(state["history"])
        self.best = {**state["best"], "state": state["best_state"] or None}
        self.start_epoch = int(state["epoch"]) + 1
        log.info("resuming from %s after epoch %d", self.checkpoint_path, state["epoch"])

    def z_phot(self, probs: np.ndarray, regs: list) -> np.ndarray:
        """The model's point estimates: the PDF median, or z_reg for a regression-only model."""
        if point_estimate_of(self.meta["loss"]) == "z_reg":
            return np.concatenate(regs)
        return point_estimates(probs, self.zgrid.edges)["z_phot"]

    # -- training ---------------------------------------------------------------------------------------------
    def loss(self, idx: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        x = self.cubes.batch(idx)
        if gen is not None:
            x = augment(x, gen)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        w = self.meta["loss"]
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            logits, z_reg = self.forward(x, self.ebv[idx])
        loss = w["classification"] * F.cross_entropy(logits.float(), self.label[idx])
        if w["regression"] > 0:
            loss = loss + w["regression"] * regression_loss(z_reg.float(), self.z[idx], w["regression_kind"])
        return loss

    def epoch(self, epoch: int) -> dict:
        t0 = time.monotonic()
        gen = torch.Generator().manual_seed(int(np.random.default_rng([self.seed, self.fold, epoch]).integers(2**62)))
        torch.manual_seed(int(gen.initial_seed()) + 1)  # dropout and other in-model draws
        perm = torch.from_numpy(self.train_idx)[torch.randperm(len(self.train_idx), generator=gen)]
        self.model.train()
        total, batches = 0.0, 0
        bs = self.tcfg["batch_size"]
        for start in range(0, len(perm), bs):
            idx = perm[start : start + bs].to(self.device)
            loss = self.loss(idx, gen if self.tcfg["augment"] else None)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"non-finite loss ({loss.item()}) at epoch {epoch}, batch {batches}: stopping; the last good "
                    f"checkpoint is kept at {self.checkpoint_path} (lower training.lr or check the inputs)"
                )
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            total += loss.item()
            batches += 1
        self.sched.step()
        row = {"epoch": epoch, "train_loss": total / max(batches, 1), "lr": self.opt.param_groups[0]["lr"]}
        row.update(self.validate())
        row["seconds"] = time.monotonic() - t0
        return row

    @torch.no_grad()
    def validate(self) -> dict:
        if len(self.val_idx) == 0:
            return {"val_loss": float("nan"), "val_sigma_mad": float("nan")}
        self.model.eval()
        idx = torch.from_numpy(self.val_idx).to(self.device)
        losses, probs, regs = [], [], []
        for start in range(0, len(idx), 512):
            b = idx[start : start + 512]
            losses.append(self.loss(b, None).item() * len(b))
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
                logits, z_reg = self.forward(self.cubes.batch(b), self.ebv[b])
            probs.append(torch.softmax(logits.float(), 1).cpu().numpy())
            regs.append(z_reg.float().cpu().numpy())
        z_phot = self.z_phot(np.concatenate(probs), regs)
        return {
            "val_loss": sum(losses) / len(idx),
            "val_sigma_mad": metrics.sigma_mad(metrics.delta_z(z_phot, self.data["z_spec"][self.val_idx])),
        }

    def fit(self) -> None:
        self.try_resume()
        patience = self.tcfg["early_stopping_patience"]
        for epoch in range(self.start_epoch, self.tcfg["epochs"]):
            if patience and epoch - self.best["epoch"] > patience and self.best["epoch"] >= 0:
                log.info("early stopping: no better validation sigma_MAD for %d epochs", patience)
                break
            row = self.epoch(epoch)
            self.history.append(row)
            if patience and row["val_sigma_mad"] < self.best["val_sigma_mad"]:
                state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                self.best = {"val_sigma_mad": row["val_sigma_mad"], "epoch": epoch, "state": state}
            log.info(
                "epoch %d/%d  loss %.4f  val_loss %.4f  val_sigma_mad %.4f  (%.1f s)",
                epoch + 1,
                self.tcfg["epochs"],
                row["train_loss"],
                row["val_loss"],
                row["val_sigma_mad"],
                row["seconds"],
            )
            self.save(epoch)
        if patience and self.best["state"] is not None:
            self.model.load_state_dict(self.best["state"])

    def finish(self) -> None:
        """Write history, the final model and the test fold's PDFs; model.pt last, as the run's completion mark."""
        with io.atomic_path(self.out / "history.csv") as tmp:
            pd.DataFrame(self.history).to_csv(tmp, index=False)
        mean, std = np.asarray(self.meta["norm_mean"]), np.asarray(self.meta["norm_std"])
        t = self.test_idx
        probs, z_reg = predict_batches(
            self.model, loader.Rows(self.cubes.raw, t), self.data["ebv"][t], mean, std, self.device, self.zgrid.n_bins
        )
        pdfs.write_pdfs(
            self.out / "test_pdf.h5",
            self.data["object_id"][t],
            probs,
            self.zgrid.edges,
            z_reg=z_reg,
            z_spec=self.data["z_spec"][t],
            fold=np.full(len(t), self.fold),
            seed=np.full(len(t), self.seed),
        )
        z_phot = self.z_phot(probs, [z_reg])
        log.info(
            "test fold %d: %d objects, sigma_MAD %.4f",
            self.fold,
            len(t),
            metrics.sigma_mad(metrics.delta_z(z_phot, self.data["z_spec"][t])),
        )
        checkpoints.save_checkpoint({"meta": self.meta, "model": self.model.cpu().state_dict()}, self.out / "model.pt")


def train_one(
    cfg: dict, model_name: str, fold: int, seed: int, cube_path, out_dir, tag: str = "", max_memory_gb=None
) -> Path:
    """Train, or resume, one (model, fold, seed) run; returns the path of its ``model.pt``.

    ``tag`` (the workflow passes a hash of the training code) is part of the checkpoint's identity, so a job rerun
    after a code change starts afresh instead of resuming from weights the old code made. ``max_memory_gb`` caps
    the memory the standardised cube may take on the device before it is streamed from the file instead
    (:func:`pipeline.store.loader.open_cubes`).
    """
    if model_name not in cfg["models"]:
        raise ValueError(f"model {model_name!r} is not in the config's models: {list(cfg['models'])}")
    run = Run(cfg, model_name, fold, seed, cube_path, out_dir, max_memory_gb)
    run.meta["tag"] = tag
    n_params = sum(p.numel() for p in run.model.parameters())
    log.info(
        "%s fold %d seed %d on %s: %d parameters, %d train / %d val / %d test objects",
        model_name,
        fold,
        seed,
        run.device,
        n_params,
        len(run.train_idx),
        len(run.val_idx),
        len(run.test_idx),
    )
    run.fit()
    run.finish()
    return run.out / "model.pt"


def main(argv=None) -> None:
    from pipeline.core import log as plog
    from pipeline.core.config import load_config

    parser = argparse.ArgumentParser(prog="photoz train", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="workflow config (training, zgrid and models are read)")
    parser.add_argument("--datacube", required=True, help="datacube store from photoz pack (HDF5)")
    parser.add_argument("--model", required=True, help="name of a model of the config")
    parser.add_argument("--fold", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out-dir", required=True, help="run folder (checkpoint.pt, history.csv, model.pt, ...)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--tag", default="", help="code hash: a checkpoint with another tag is not resumed")
    parser.add_argument(
        "--max-memory-gb",
        type=float,
        default=None,
        help=f"largest standardised cube held in memory on the device, else streamed from the file "
        f"(default: ${loader.ENV_BUDGET}, else half the free memory)",
    )
    args = parser.parse_args(argv)
    plog.setup()
    runtime.set_threads(args.threads)
    cfg = load_config(args.config, sections=("training", "zgrid", "models"))
    train_one(cfg, args.model, args.fold, args.seed, args.datacube, args.out_dir, args.tag, args.max_memory_gb)


if __name__ == "__main__":
    main()
