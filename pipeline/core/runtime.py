"""Where and how a step computes: the torch device and the number of CPU threads."""

from __future__ import annotations

import torch


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when torch sees a GPU, else the CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("training.device is 'cuda' but torch sees no CUDA device")
    return torch.device(name)


def set_threads(n: int) -> None:
    """Cap torch's CPU threads so that parallel Snakemake jobs do not oversubscribe the cores."""
    torch.set_num_threads(max(1, n))
