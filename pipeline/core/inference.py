"""Networks from their checkpoints, and batched inference of PDFs."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.core.preprocess import standardise
from pipeline.store.checkpoints import load_checkpoint


def build_from_meta(meta: dict) -> torch.nn.Module:
    """The untrained network a checkpoint's ``meta`` describes (architecture, options, bands, size, z grid)."""
    from pipeline.nn import build_model

    return build_model(
        meta["arch"], meta["bands"], meta["zgrid"]["n_bins"], image_size=meta["image_size"], **meta["options"]
    )


def model_from_checkpoint(path, expect: dict | None = None) -> tuple[torch.nn.Module, dict]:
    """The trained network of a checkpoint, in eval mode, and its ``meta``."""
    state = load_checkpoint(path, expect)
    model = build_from_meta(state["meta"])
    model.load_state_dict(state["model"])
    model.eval()
    return model, state["meta"]


@torch.no_grad()
def predict_batches(model, cubes, ebv, mean, std, device, n_bins: int, batch_size: int = 256):
    """Softmax PDFs (N, n_bins) and regression estimates (N,) for raw cubes (N, n_bands, S, S).

    ``cubes`` may be an in-memory array, an h5py dataset or any reader with len() and slicing; it is read and
    standardised batch by batch, so memory stays bounded whatever N is.
    """
    model.to(device).eval()
    mean_t = torch.as_tensor(np.asarray(mean, dtype=np.float32), device=device)
    std_t = torch.as_tensor(np.asarray(std, dtype=np.float32), device=device)
    pdfs, regs = [], []
    use_bf16 = device.type == "cuda"
    for start in range(0, len(cubes), batch_size):
        x = torch.as_tensor(np.asarray(cubes[start : start + batch_size], dtype=np.float32), device=device)
        e = torch.as_tensor(np.asarray(ebv[start : start + batch_size], dtype=np.float32), device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            logits, z_reg = model(standardise(x, mean_t, std_t), e)
        pdfs.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        regs.append(z_reg.float().cpu().numpy())
    if not pdfs:
        return np.zeros((0, n_bins), np.float32), np.zeros(0, np.float32)
    return np.concatenate(pdfs), np.concatenate(regs)
