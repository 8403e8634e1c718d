"""Networks: shapes, E(B-V) path, modalities (Table C.2), fusion variants, dropout, the baseline reduction, the
branch forms (loop vs grouped), the plain CNNs and the parameter-count trends of Table C.1."""

import pytest
import torch

from pipeline.nn import build_model, list_models, modalities
from pipeline.nn.branches import grouped_to_loop, loop_to_grouped
from pipeline.nn.modalities import modality_name
from pipeline.nn.multimodal import FUSION

BANDS = list("ugrizyjhk")
TINY = {"width": 0.05}


def _run(model, n=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, len(model.bands), size, size, generator=g)
    return model(x, torch.full((n,), 0.05))


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    torch.manual_seed(0)


@pytest.mark.parametrize(
    "name, opts", [("p19", {}), ("baseline", {}), ("multimodal", {}), ("plain", {}), ("plain", {"multimodal": True})]
)
def test_shapes_softmax_and_ebv(name, opts):
    model = build_model(name, BANDS[:5], 7, 32, **TINY, **opts).eval()
    x = torch.randn(3, 5, 32, 32)
    logits, z = model(x, torch.zeros(3))
    assert logits.shape == (3, 7) and z.shape == (3,)
    assert torch.allclose(logits.softmax(1).sum(1), torch.ones(3))
    logits2, z2 = model(x, torch.full((3, 1), 0.3))
    assert not torch.allclose(logits, logits2) and not torch.allclose(z, z2)
    assert model.forward_features(x).ndim == 2


@pytest.mark.parametrize("fusion", list(FUSION))
@pytest.mark.parametrize("fusion_type", ["concat", "cross"])
def test_fusion_stages(fusion, fusion_type):
    model = build_model("multimodal", BANDS, 5, 32, fusion=fusion, fusion_type=fusion_type, orders=[1, 2], **TINY)
    logits, z = _run(model.eval())
    assert logits.shape == (2, 5) and z.shape == (2,)


@pytest.mark.parametrize("image_size", [16, 23, 64])
def test_any_image_size(image_size):
    for name in list_models():
        logits, _ = _run(build_model(name, BANDS[:3], 4, image_size, **TINY).eval(), size=image_size)
        assert logits.shape == (2, 4)


def test_table_c2():
    assert ["_".join(m) for m in modalities(BANDS, 2, 1)] == "u_g g_r r_i i_z z_y y_j j_h h_k".split()
    assert ["_".join(m) for m in modalities(BANDS, 2, 2)] == "u_r g_i r_z i_y z_j y_h j_k".split()
    assert ["_".join(m) for m in modalities(BANDS, 2, 3)] == "u_i g_z r_y i_j z_h y_k".split()
    assert ["_".join(m) for m in modalities(BANDS, 3, 1)] == "u_g_r g_r_i r_i_z i_z_y z_y_j y_j_h j_h_k".split()
    assert ["_".join(m) for m in modalities(BANDS, 3, 2)] == "u_r_z g_i_y r_z_j i_y_h z_j_k".split()
    assert ["_".join(m) for m in modalities(BANDS, 3, 3)] == "u_i_j g_z_h r_y_k".split()
    assert ["_".join(m) for m in modalities(BANDS, 4, 1)] == "u_g_r_i g_r_i_z r_i_z_y i_z_y_j z_y_j_h y_j_h_k".split()
    assert ["_".join(m) for m in modalities(BANDS, 4, 2)] == "u_r_z_j g_i_y_h r_z_j_k".split()
    assert len(modalities(BANDS, 2, [1, 2, 3])) == 21
    with pytest.raises(ValueError):
        modalities(BANDS, 4, 3)  # no 4-band 3rd-order modality fits 9 bands (blank cell of Table C.2)


def test_size_one_modalities():
    assert modalities(BANDS, 1, 1) == [(b,) for b in BANDS]
    model = build_model("multimodal", BANDS, 5, 32, size=1, **TINY)
    assert model.modality_names == BANDS
    assert _run(model)[0].shape == (2, 5)


@pytest.mark.parametrize("name, opts", [("multimodal", {}), ("plain", {"multimodal": True, "n_layers": 5})])
def test_two_band_plus_single_band_modalities(name, opts):
    # the network of the paper's Sec. 7.4: 2-band first-order modalities and every band alone
    model = build_model(name, BANDS, 5, 32, size=[2, 1], modality_dropout=5, **opts, **TINY)
    assert model.modality_names == modalities_names(BANDS, 2) + BANDS
    model.eval()
    ref = _run(model)[0]
    model.drop_modalities = ["k"]
    assert not torch.allclose(ref, _run(model)[0])


def modalities_names(bands, size):
    return [modality_name(m) for m in modalities(bands, size, 1)]


def test_modality_dropout_and_drop_at_eval():
    model = build_model("multimodal", BANDS, 5, 32, modality_dropout=5, all_bands_modality=True, **TINY)
    assert model.modality_names[0] == "u_g" and model.modality_names[-1] == "_".join(BANDS)
    model.train()
    torch.manual_seed(1)
    outs = [_run(model, n=4)[0] for _ in range(4)]  # batch norm-free: differences come from the dropout only
    assert any(not torch.allclose(outs[0], o) for o in outs[1:])
    model.eval()
    ref = _run(model)[0]
    model.drop_modalities = ["g_r"]
    assert not torch.allclose(ref, _run(model)[0])


def test_unknown_names_and_options():
    with pytest.raises(ValueError, match="multimodal"):
        build_model("nope", BANDS, 5)
    with pytest.raises(ValueError, match="fusion_type"):
        build_model("multimodal", BANDS, 5, bogus=1)
    with pytest.raises(ValueError, match="early"):
        build_model("multimodal", BANDS, 5, fusion="sideways")
    with pytest.raises(ValueError, match="u_g"):
        build_model("multimodal", BANDS, 5, drop_modalities=["u_z"])


def test_single_all_band_modality_is_the_baseline():
    base = build_model("baseline", BANDS, 6, 32, **TINY).eval()
    multi = build_model("multimodal", BANDS, 6, 32, size=9, fusion="extremely_early", **TINY).eval()
    pb, pm = list(base.parameters()), list(multi.parameters())
    assert [p.shape for p in pb] == [p.shape for p in pm]
    with torch.no_grad():
        for a, b in zip(pb, pm, strict=True):
            b.copy_(a)
    for a, b in zip(_run(base), _run(multi), strict=True):
        torch.testing.assert_close(a, b)


def test_backward():
    model = build_model("multimodal", BANDS, 5, 32, fusion_type="cross", **TINY).train()
    logits, z = _run(model)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([1, 3])) + (z - 0.5).abs().mean()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


FORM_CASES = [
    ("multimodal", {}),
    ("multimodal", {"fusion_type": "cross", "orders": [1, 2]}),
    ("multimodal", {"all_bands_modality": True, "fusion": "late", "drop_modalities": ["g_r"]}),
    ("multimodal", {"size": 1, "fusion": "extremely_early"}),
    ("plain", {"multimodal": True, "n_layers": 5, "size": 3, "all_bands_modality": True}),
]


@pytest.mark.parametrize("name, opts", FORM_CASES)
def test_branch_forms_same_outputs_and_gradients(name, opts):
    loop = build_model(name, BANDS, 5, 32, branch_form="loop", **opts, **TINY).eval()
    grouped = build_model(name, BANDS, 5, 32, branch_form="grouped", **opts, **TINY).eval()
    assert sum(p.numel() for p in loop.parameters()) == sum(p.numel() for p in grouped.parameters())
    grouped.load_state_dict(loop.state_dict())  # the load hook converts the loop form's names
    outs_l, outs_g = _run(loop), _run(grouped)
    for a, b in zip(outs_l, outs_g, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    sum(o.sum() for o in outs_l).backward()
    sum(o.sum() for o in outs_g).backward()
    grads_g = grouped_to_loop({k: p.grad for k, p in grouped.named_parameters()}, grouped.branches.members)
    for k, p in loop.named_parameters():  # a dropped modality's loop branch is out of the graph: no gradient
        grad = p.grad if p.grad is not None else torch.zeros_like(p)
        torch.testing.assert_close(grad, grads_g[k], atol=1e-5, rtol=1e-4)
    back = build_model(name, BANDS, 5, 32, branch_form="loop", **opts, **TINY).eval()
    back.load_state_dict(grouped.state_dict())
    for a, b in zip(outs_l, _run(back), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_branch_form_state_dict_conversion_and_names():
    model = build_model("multimodal", BANDS, 5, 32, all_bands_modality=True, **TINY)
    sd = model.state_dict()
    assert "branches.0.0.0.weight" in sd and "branches.8.0.0.weight" in sd  # default form: checkpoints' names
    members = model.branches.members
    assert members == [list(range(8)), [8]]
    grouped = loop_to_grouped(sd, members)
    assert grouped["branches.groups.0.0.0.weight"].shape[0] == 8 * sd["branches.0.0.0.weight"].shape[0]
    assert not any(k.startswith("branches.0.") for k in grouped)
    back = grouped_to_loop(grouped, members)
    assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)
    with pytest.raises(ValueError, match="loop"):
        build_model("multimodal", BANDS, 5, branch_form="vectorised")


@pytest.mark.parametrize("n_layers", [5, 10, 21])
def test_plain_layers_and_fusion(n_layers):
    single = build_model("plain", BANDS, 5, 32, n_layers=n_layers, **TINY)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in single.modules()) == n_layers
    n_par = []
    for fusion in FUSION:
        multi = build_model("plain", BANDS, 5, 32, n_layers=n_layers, multimodal=True, fusion=fusion, **TINY)
        convs = sum(isinstance(m, torch.nn.Conv2d) for m in multi.modules())
        n_par.append((convs - n_layers) // (len(multi.modality_names) - 1))  # k parallel convs per extra branch
        assert multi.modality_names == [m for m in "u_g g_r r_i i_z z_y y_j j_h h_k".split()]
    assert n_par == sorted(n_par) and 1 == n_par[0] and n_par[-1] < n_layers
    assert _run(multi.train())[0].shape == (2, 5)
    with pytest.raises(ValueError, match="21"):
        build_model("plain", BANDS, 5, n_layers=7)


def test_parameter_trends_of_table_c1():
    """Full width, counts only: the baseline at the paper's 19.03 M, every Table C.1 row within 10 % of the paper's,
    more parameters with later fusion, larger modalities and more orders (exact counts: test_nn_widths.py)."""

    def count(name, **opts):
        with torch.device("meta"):  # shapes only: no memory, no init
            return sum(p.numel() for p in build_model(name, BANDS, 180, 64, **opts).parameters()) / 1e6

    assert count("baseline") == pytest.approx(19.03, rel=0.01)
    fusion = [count("multimodal", fusion=f) for f in FUSION]
    assert fusion == sorted(fusion) and fusion == pytest.approx([9.52, 11.16, 12.51, 15.22, 17.94], rel=0.1)
    sizes = [count("multimodal", size=s) for s in (1, 2, 3, 4, 5)]
    assert sizes == sorted(sizes) and sizes == pytest.approx([8.80, 12.51, 17.23, 22.11, 26.29], rel=0.1)
    o1, o12, o123, o23 = (count("multimodal", orders=o) for o in ([1], [1, 2], [1, 2, 3], [2, 3]))
    assert o23 < o12 < o123 and [o12, o123, o23] == pytest.approx([17.37, 21.54, 15.98], rel=0.1)
    assert (o12 - o1) / 7 == pytest.approx((o123 - o12) / 6, rel=1e-6)  # linear in the number of modalities
