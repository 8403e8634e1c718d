"""Multiply-accumulate counts of a network's forward pass, for benchmarks and the architecture tables."""

from __future__ import annotations

import torch
from torch import nn


def count_macs(model: nn.Module, n_bands: int, size: int) -> int:
    """Conv and linear multiply-accumulates of one sample's forward pass (hooks on a zero input)."""
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            # the whole output: a cross-fusion block runs once per modality, stacked on the batch of this one sample
            total += out.numel() * mod.weight[0].numel()  # in_channels/groups * kh * kw per output value
        else:
            total += out.shape[0] * mod.in_features * mod.out_features

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    was_training = model.training
    device = next(model.parameters()).device  # the zero input goes where the model is (a GPU in bench_train.py)
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, n_bands, size, size, device=device), torch.zeros(1, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return total
