"""Checkpoints that describe themselves: the one owner of ``model.pt`` / ``checkpoint.pt``.

A checkpoint is a ``torch.save`` of plain containers and tensors (never arbitrary objects, so that it loads with
``weights_only=True``): ``meta`` (the resolved model config, bands, image size, z grid, fold, seed, training
settings, normalisation statistics, code version and tag), ``model`` (the state dict) and, for the resume point,
the optimiser and scheduler states and the history.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline import __version__
from pipeline.core import io

# keys of a checkpoint's "meta" that must agree for it to be loaded in place of another
IDENTITY_KEYS = ("model", "arch", "options", "bands", "image_size", "zgrid")


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
    """Raise a ``ValueError`` listing every identity key on which ``meta`` and ``expect`` disagree."""
    wrong = [
        f"{key}: checkpoint has {meta.get(key)!r}, expected {expect[key]!r}"
        for key in IDENTITY_KEYS
        if key in expect and canonical(meta.get(key)) != canonical(expect[key])
    ]
    if wrong:
        raise ValueError(f"{path}: checkpoint made for another configuration:\n  " + "\n  ".join(wrong))


def canonical(value):
    """A comparable form of a meta value: dicts sorted by key, tuples as lists, integral floats as ints."""
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def same_meta(meta: dict, other: dict, keys) -> bool:
    """Whether two metas agree on ``keys`` (compared in :func:`canonical` form)."""
    return canonical({k: meta.get(k) for k in keys}) == canonical({k: other.get(k) for k in keys})


def code_version() -> str:
    """Package version plus the git commit when run from a checkout (recorded in every checkpoint)."""
    head = Path(__file__).resolve().parents[2] / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            ref = (head.parent / ref[5:]).read_text().strip()
        return f"{__version__}+{ref[:12]}"
    except OSError:
        return __version__
