"""Checkpoints that describe themselves, and batched inference of PDFs from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline import __version__, io
from pipeline.preprocess import standardise

# keys of a checkpoint's "meta" that must agree for it to be loaded in place of another
IDENTITY_KEYS = ("model", "arch", "options", "bands", "image_size", "zgrid")


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("training.device is 'cuda' but torch sees no CUDA device")
    return torch.device(name)


def save_checkpoint(state: dict, path) -> None:
    """torch.save atomically, so that a job killed while writing keeps its previous checkpoint."""
    with io.atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path, expect: dict | None = None) -> dict:
    """Load a checkpoint without unpickling arbitrary objects; ``expect`` lists meta values it must carry."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if expect:
        check_identity(state["meta"], expect, path)
    return state


def check_identity(meta: dict, expect: dict, path) -> None:
    wrong = [
        f"{key}: checkpoint has {meta.get(key)!r}, expected {expect[key]!r}"
        for key in IDENTITY_KEYS
        if key in expect and _canon(meta.get(key)) != _canon(expect[key])
    ]
    if wrong:
        raise ValueError(f"{path}: checkpoint made for another configuration:\n  " + "\n  ".join(wrong))


def _canon(value):
    if isinstance(value, dict):
        return {k: _canon(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [_canon(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def code_version() -> str:
    """Package version plus the git commit when run from a checkout (recorded in every checkpoint)."""
    head = Path(__file__).resolve().parents[1] / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            ref = (head.parent / ref[5:]).read_text().strip()
        return f"{__version__}+{ref[:12]}"
    except OSError:
        return __version__


def channel_index(bands, available, what: str = "the data") -> list[int]:
    """Positions of ``bands`` (a model's input channels, in its order) among ``available`` (a file's bands).

    Raises a ``ValueError`` naming the bands ``available`` lacks, so that a model trained on a band the data does not
    hold is refused instead of fed the wrong channels.
    """
    available = [str(b) for b in available]
    missing = [b for b in bands if b not in available]
    if missing:
        raise ValueError(f"{what} lacks band(s) {missing} of the model's bands {list(bands)}: it holds {available}")
    return [available.index(b) for b in bands]


def build_from_meta(meta: dict) -> torch.nn.Module:
    from pipeline.nn import build_model

    return build_model(
        meta["arch"], meta["bands"], meta["zgrid"]["n_bins"], image_size=meta["image_size"], **meta["options"]
    )


def model_from_checkpoint(path, expect: dict | None = None) -> tuple[torch.nn.Module, dict]:
    state = load_checkpoint(path, expect)
    model = build_from_meta(state["meta"])
    model.load_state_dict(state["model"])
    model.eval()
    return model, state["meta"]


@torch.no_grad()
def predict_batches(model, cubes, ebv, mean, std, device, n_bins: int, batch_size: int = 256):
    """Softmax PDFs (N, n_bins) and regression estimates (N,) for raw cubes (N, n_bands, S, S).

    ``cubes`` may be an in-memory array or an h5py dataset; it is read and standardised batch by batch, so memory
    stays bounded whatever N is.
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


def set_threads(n: int) -> None:
    """Cap torch's CPU threads so that parallel Snakemake jobs do not oversubscribe the cores."""
    torch.set_num_threads(max(1, n))
