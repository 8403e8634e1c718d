"""Widths of the inception networks: the rule's Table C.1 counts pinned, the paper's targets, the single-modality
identity and the valid tail ending in average pooling. Counting is done on the meta device (shapes only)."""

import pytest
import torch

from pipeline.nn import build_model
from pipeline.nn.blocks import Inception, ValidTail
from pipeline.nn.flops import count_macs
from pipeline.nn.widths import LATENT, modality_mults

BANDS = list("ugrizyjhk")

# (options, the paper's count in M, this rule's count); 9 bands, 64x64, 180 bins. A width change shows up here.
TABLE_C1 = {
    "baseline": (None, 19.03, 19_010_934),
    "extremely_early": ({"fusion": "extremely_early"}, 9.52, 9_377_790),
    "very_early": ({"fusion": "very_early"}, 11.16, 11_284_266),
    "early": ({"fusion": "early"}, 12.51, 12_646_638),
    "middle": ({"fusion": "middle"}, 15.22, 15_371_382),
    "late": ({"fusion": "late"}, 17.94, 18_096_126),
    "size1": ({"size": 1}, 8.80, 8_982_214),
    "size3": ({"size": 3}, 17.23, 17_264_027),
    "size4": ({"size": 4}, 22.11, 21_939_076),
    "size5": ({"size": 5}, 26.29, 25_961_518),
    "orders12": ({"orders": [1, 2]}, 17.37, 17_573_098),
    "orders123": ({"orders": [1, 2, 3]}, 21.54, 21_795_778),
    "orders23": ({"orders": [2, 3]}, 15.98, 16_165_538),
}
SERIES = {
    "fusion": ["extremely_early", "very_early", "early", "middle", "late"],
    "size": ["size1", "early", "size3", "size4", "size5"],
    "orders": ["orders12", "orders123", "orders23"],
}


def meta(name, image_size=64, **opts):
    with torch.device("meta"):
        return build_model(name, BANDS, 180, image_size, **opts)


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def counts():
    torch.set_num_threads(1)
    return {
        key: n_params(meta("baseline" if o is None else "multimodal", **(o or {})))
        for key, (o, _, _) in TABLE_C1.items()
    }


@pytest.mark.parametrize("key", list(TABLE_C1))
def test_table_c1_counts_pinned(counts, key):
    assert counts[key] == TABLE_C1[key][2]


def test_table_c1_targets(counts):
    paper = {key: p * 1e6 for key, (_, p, _) in TABLE_C1.items()}
    assert counts["baseline"] == pytest.approx(paper["baseline"], rel=0.01)
    for key in TABLE_C1:
        assert counts[key] == pytest.approx(paper[key], rel=0.10), key
    for rows in SERIES.values():
        assert sorted(rows, key=counts.get) == sorted(rows, key=paper.get)
    # the common part does not depend on the number of modalities: exactly linear in it (8, 15, 21, 13 modalities)
    step = (counts["orders12"] - counts["early"]) // 7
    assert counts["orders12"] - counts["early"] == 7 * step and counts["orders123"] - counts["orders12"] == 6 * step
    assert counts["orders23"] == counts["early"] + 5 * step


def test_two_band_early_fusion_cost():
    base, multi = meta("baseline"), meta("multimodal")
    assert n_params(multi) < n_params(base)
    assert count_macs(multi, 9, 64) <= 1.25 * count_macs(base, 9, 64)


def test_rule():
    assert modality_mults([9], 9, 0.5) == ([0.5], 0.5)  # one modality: the baseline on its bands
    assert modality_mults([5], 9, 1.0) == ([1.0], 1.0)
    branch, common = modality_mults([2, 2, 9, 1], 9, 1.0)
    assert branch[0] == branch[1] < 1 == branch[2] and branch[3] == pytest.approx(branch[0] / 2) and common < 1


@pytest.mark.parametrize("fusion", ["extremely_early", "early", "late"])
@pytest.mark.parametrize("branch_form", ["loop", "grouped"])
def test_single_all_band_modality_is_the_baseline_at_full_size(fusion, branch_form):
    base = meta("baseline")
    multi = meta("multimodal", size=9, fusion=fusion, branch_form=branch_form)
    assert [p.shape for p in base.parameters()] == [p.shape for p in multi.parameters()]
    assert sum(isinstance(m, Inception) for m in multi.modules()) == 8


@pytest.mark.parametrize("name, opts", [("baseline", {}), ("multimodal", {}), ("multimodal", {"fusion_type": "cross"})])
@pytest.mark.parametrize("image_size, convs", [(64, 3), (32, 1)])
def test_tail_is_valid_convs_then_average_pooling_to_96_maps(name, opts, image_size, convs):
    model = meta(name, image_size, **opts)
    tail = model.tail
    assert isinstance(tail, ValidTail) and tail.out_chans == LATENT == 96
    layers = list(tail)
    assert isinstance(layers[-2], torch.nn.AvgPool2d) and isinstance(layers[-1], torch.nn.Flatten)
    tail_convs = [m for m in layers if isinstance(m, torch.nn.Conv2d)]
    assert len(tail_convs) == convs and all(c.kernel_size == (3, 3) and c.padding == (0, 0) for c in tail_convs)
    shapes = []
    layers[-2].register_forward_hook(lambda m, i, o: shapes.append((tuple(i[0].shape), tuple(o.shape))))
    with torch.no_grad():
        model(torch.zeros(2, 9, image_size, image_size, device="meta"), torch.zeros(2, device="meta"))
    assert shapes == [((2, 96, 2, 2), (2, 96, 1, 1))]


@pytest.mark.parametrize("image_size", [16, 20, 23])
def test_tail_small_images(image_size):
    model = build_model("baseline", BANDS[:3], 4, image_size, width=0.05).eval()
    assert isinstance(list(model.tail)[-2], torch.nn.AvgPool2d)
    assert model.forward_features(torch.randn(2, 3, image_size, image_size)).shape == (2, model.tail.out_chans)
