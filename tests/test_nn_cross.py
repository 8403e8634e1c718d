"""Cross fusion (paper Sec. 4.3 after Hong et al. 2020): 8 inception blocks on every path, each modality's block
applied to every modality's maps and averaged, a shared 1x1 conv, and what dropping a modality does."""

import pytest
import torch

from pipeline.nn import build_model
from pipeline.nn.blocks import Inception
from pipeline.nn.multimodal import FUSION

BANDS = list("ugrizyjhk")
TINY = {"width": 0.05}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    torch.manual_seed(0)


def n_blocks(module) -> int:
    return sum(isinstance(m, Inception) for m in module.modules())


@pytest.mark.parametrize("fusion", list(FUSION))
@pytest.mark.parametrize("fusion_type", ["concat", "cross"])
def test_eight_inception_blocks_on_every_path(fusion, fusion_type):
    model = build_model("multimodal", BANDS[:5], 5, 32, fusion=fusion, fusion_type=fusion_type, **TINY)
    n_par = FUSION[fusion]
    assert [n_blocks(b) for b in model.branches] == [n_par] * 4
    n_cross = 0
    if fusion_type == "cross":
        assert len(model.fuse.blocks) == 4 and n_blocks(model.fuse) == 4  # one per modality: each path runs one
        n_cross = 1
    assert n_par + n_cross + n_blocks(model.common) == 8


def _cross_model(**opts):
    return build_model("multimodal", BANDS[:5], 5, 32, fusion_type="cross", **TINY, **opts).eval()


def _feats(model, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, 32, 32, generator=g)
    return x, model.branches(x)


def test_each_block_sees_every_modality_one_by_one():
    model = _cross_model()
    _, feats = _feats(model)
    with torch.no_grad():
        ys = model.fuse.cross(feats)
        for k, block in enumerate(model.fuse.blocks):  # y_k = mean_j block_k(x_j), the same weights on every x_j
            torch.testing.assert_close(ys[k], torch.stack([block(f) for f in feats]).mean(0), atol=1e-6, rtol=1e-5)
        other = [f.clone() for f in feats]
        other[3] = torch.randn_like(other[3])  # change the last modality's maps only
        ys2 = model.fuse.cross(other)
    assert all(not torch.allclose(a, b) for a, b in zip(ys, ys2, strict=True))  # every block's output moves


def test_shared_conv_then_concatenation():
    model = _cross_model()
    _, feats = _feats(model)
    with torch.no_grad():
        fused = model.fuse(feats)
        ys = model.fuse.cross(feats)
    c = ys[0].shape[1]
    assert fused.shape[1] == model.fuse.out_chans == 4 * c
    for k, y in enumerate(ys):  # one 1x1 conv, the same weights for every modality, before the concatenation
        torch.testing.assert_close(fused[:, k * c : (k + 1) * c], model.fuse.shared(y))


def test_dropped_modality_left_out_of_every_mean():
    model = _cross_model()
    _, feats = _feats(model)
    keep = [0, 2, 3]
    with torch.no_grad():
        full, dropped = model.fuse.cross(feats), model.fuse.cross(feats, keep)
        for k, block in enumerate(model.fuse.blocks):
            torch.testing.assert_close(dropped[k], torch.stack([block(feats[j]) for j in keep]).mean(0))
            assert not torch.allclose(full[k], dropped[k])  # the others' fused maps change too
        assert all(y.abs().sum() == 0 for y in model.fuse.cross(feats, []))


def _fused(model, x):
    out = []
    hook = model.fuse.register_forward_hook(lambda m, i, o: out.append(o))
    with torch.no_grad():
        model(x, torch.zeros(x.shape[0]))
    hook.remove()
    return out[0]


def test_dropping_a_modality_removes_its_bands():
    model = _cross_model()  # modalities u_g, g_r, r_i, i_z: band u is in u_g only
    x, _ = _feats(model)
    x2 = x.clone()
    x2[:, 0] = torch.randn_like(x2[:, 0])
    c = model.fuse.out_chans // 4
    a, b = _fused(model, x), _fused(model, x2)
    for k in range(4):  # cross: a change in u reaches every modality's slot (concatenation: only u_g's)
        assert not torch.allclose(a[:, k * c : (k + 1) * c], b[:, k * c : (k + 1) * c])
    model.drop_modalities = ["u_g"]
    torch.testing.assert_close(_fused(model, x), _fused(model, x2))  # nothing of u is left
    assert not torch.allclose(_fused(model, x), a)


def test_modality_dropout_in_training_and_backward():
    model = _cross_model(modality_dropout=3).train()
    x, _ = _feats(model, n=4)
    torch.manual_seed(3)
    outs = [model(x, torch.zeros(4)) for _ in range(4)]
    assert any(not torch.allclose(outs[0][0], o[0]) for o in outs[1:])
    outs.append(model.eval()(x, torch.zeros(4)))  # nothing dropped: every branch in the graph
    sum(logits.sum() + z.sum() for logits, z in outs).backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("opts", [{"all_bands_modality": True}, {"size": [2, 1]}])
def test_cross_needs_one_branch_width(opts):
    with pytest.raises(ValueError, match="one branch width"):
        build_model("multimodal", BANDS[:5], 5, 32, fusion_type="cross", **TINY, **opts)
