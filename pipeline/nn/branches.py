"""Parallel modality branches in two interchangeable forms: a loop of modules, or grouped convolutions.

``loop``: one module per modality, run one after the other (parameter names ``branches.<i>.<rest>``, the names
checkpoints were written with). ``grouped``: the modalities of equal size are batched into one set of convs with
``groups`` = number of such modalities; their bands are gathered by one index into the band axis (parameter
names ``branches.groups.<k>.<rest>``). For the same weights both forms compute the same function: the grouped
weight of a conv is the concatenation along the output axis of the loop form's weights, which is what
:func:`loop_to_grouped` and :func:`grouped_to_loop` do, and each form loads the other's state_dict (a load hook
converts it).

Which form is faster depends on the hardware: see ``bench/bench_nn_forms.py``. On the CPU where the default was
chosen (1 thread, batch 32, 64x64, 2-band early fusion, forward + backward) grouped was 1.07x (5 bands) and 1.23x
(9 bands) the loop's time at width 1.0, 0.92x and 0.94x at width 0.1 (with the earlier, narrower widths): the loop
form is ``DEFAULT_FORM``, which also keeps the parameter names of existing checkpoints. Not yet measured on a GPU.

Widths: the caller gives each branch's channel multiplier (:func:`pipeline.nn.widths.modality_mults`).
"""

from __future__ import annotations

import re

import torch
from torch import nn

FORMS = ("loop", "grouped")
DEFAULT_FORM = "loop"


def equal_size_groups(mods) -> list[list[int]]:
    """Runs of consecutive modalities of equal size: the modalities one grouped branch batches."""
    groups: list[list[int]] = []
    for i, m in enumerate(mods):
        if groups and len(mods[groups[-1][0]]) == len(m):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


class LoopBranches(nn.ModuleList):
    """One branch module per modality, run in a Python loop.

    Parameters
    ----------
    index : list of list of int
        Band indices (into the input's channel axis) of each modality.
    make : callable
        ``make(in_chans, mult, groups) -> (module, out_chans)``: ``groups`` branches of ``in_chans`` bands each and
        channel multiplier ``mult``, batched as grouped convs when ``groups`` > 1 (``out_chans`` per branch).
    mults : list of float
        Channel multiplier of each modality's branch.
    """

    form = "loop"

    def __init__(self, index, make, mults):
        built = [make(len(ix), m, 1) for ix, m in zip(index, mults, strict=True)]
        super().__init__(b for b, _ in built)
        self.chans, self.mults = [c for _, c in built], list(mults)
        self.members = equal_size_groups(index)
        for i, ix in enumerate(index):
            self.register_buffer(f"_idx{i}", torch.tensor(ix), persistent=False)
        self.register_load_state_dict_pre_hook(_convert_on_load)

    def forward(self, x) -> list[torch.Tensor]:
        """Per-modality feature maps."""
        return [branch(x[:, getattr(self, f"_idx{i}")]) for i, branch in enumerate(self)]

    def forward_cat(self, x) -> torch.Tensor:
        """Feature maps of all modalities concatenated along the channel axis."""
        return torch.cat(self(x), 1)


class GroupedBranches(nn.Module):
    """The branches of each run of equal-size modalities batched as one grouped-conv module."""

    form = "grouped"

    def __init__(self, index, make, mults):
        super().__init__()
        self.members = equal_size_groups(index)
        self.chans, self.mults, mods = [], list(mults), []
        for k, members in enumerate(self.members):
            mult = mults[members[0]]
            if any(mults[i] != mult for i in members):
                raise ValueError("modalities of one size must share their branch width")
            module, c = make(len(index[members[0]]), mult, len(members))
            mods.append(module)
            self.chans += [c] * len(members)
            self.register_buffer(f"_gidx{k}", torch.tensor([b for i in members for b in index[i]]), persistent=False)
        self.groups = nn.ModuleList(mods)
        self.register_load_state_dict_pre_hook(_convert_on_load)

    def forward_cat(self, x) -> torch.Tensor:
        """Feature maps of all modalities concatenated along the channel axis (no copy for a single group)."""
        outs = [g(x[:, getattr(self, f"_gidx{k}")]) for k, g in enumerate(self.groups)]
        return outs[0] if len(outs) == 1 else torch.cat(outs, 1)

    def forward(self, x) -> list[torch.Tensor]:
        """Per-modality feature maps (views into one tensor)."""
        return list(self.forward_cat(x).split(self.chans, 1))


def make_branches(form: str, bands, mods, make, mults) -> nn.Module:
    """``LoopBranches`` or ``GroupedBranches`` by ``form``: one branch per modality in ``mods`` (tuples of band names
    out of ``bands``, the input's channel order) with channel multipliers ``mults`` (one per modality)."""
    if form not in FORMS:
        raise ValueError(f"unknown branch_form {form!r}: valid are {', '.join(FORMS)}")
    index = [[bands.index(b) for b in m] for m in mods]
    return (LoopBranches if form == "loop" else GroupedBranches)(index, make, mults)


def loop_to_grouped(state: dict, groups, prefix: str = "branches.") -> dict:
    """State dict with loop-form branch entries ``<prefix><i>.<rest>`` replaced by grouped ones.

    ``groups``: the modality indices batched by each grouped module (:func:`equal_size_groups`).
    """
    out = {k: v for k, v in state.items() if not re.match(re.escape(prefix) + r"\d+\.", k)}
    for k, members in enumerate(groups):
        head = f"{prefix}{members[0]}."
        for key in [key for key in state if key.startswith(head)]:
            rest = key[len(head) :]
            out[f"{prefix}groups.{k}.{rest}"] = torch.cat([state[f"{prefix}{i}.{rest}"] for i in members], 0)
    return out


def grouped_to_loop(state: dict, groups, prefix: str = "branches.") -> dict:
    """Inverse of :func:`loop_to_grouped`."""
    gp = f"{prefix}groups."
    out = {k: v for k, v in state.items() if not k.startswith(gp)}
    for key, value in state.items():
        if key.startswith(gp):
            k, rest = key[len(gp) :].split(".", 1)
            members = groups[int(k)]
            for i, part in zip(members, value.chunk(len(members), 0), strict=True):
                out[f"{prefix}{i}.{rest}"] = part.clone()
    return out


def _convert_on_load(module, state, prefix, *args):
    """Load hook: convert a state_dict written by the other branch form, in place."""
    if module.form == "grouped":
        keys = [k for k in state if re.match(re.escape(prefix) + r"\d+\.", k)]
        convert = loop_to_grouped
    else:
        keys = [k for k in state if k.startswith(prefix + "groups.")]
        convert = grouped_to_loop
    if keys:
        new = convert({k: state.pop(k) for k in keys}, module.members, prefix)
        state.update(new)
