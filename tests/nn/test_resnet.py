import math

import pytest
import torch

from skad_transfer import ResNet26, resnet26
from skad_transfer.nn.resnet import FEATURE_LAYERS


def reference_keys():
    """The key layout of the authors' resnet26.pth (facts.md), AD head included."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = {"pre_conv.weight", *(f"pre_bn.{s}" for s in bn), *(f"end_bn_relu.0.{s}" for s in bn),
            "linears.weight", "linears.bias"}
    for stage in (1, 2, 3):
        for block in range(4):
            for i in (1, 2):
                keys.add(f"layer{stage}.{block}.conv{i}.weight")
                keys.update(f"layer{stage}.{block}.bn{i}.{s}" for s in bn)
    return keys


def test_state_dict_has_exactly_the_reference_keys():
    assert set(resnet26(width=8).state_dict()) == reference_keys()


def test_paper_width_has_5_83M_conv_weights():
    net = resnet26()
    n = sum(p.numel() for p in net.conv3x3_parameters())
    assert n == pytest.approx(5.83e6, rel=0.01)
    assert net.linears.in_features == 256 and net.linears.out_features == 1


@pytest.mark.parametrize("size", [32, 96])
def test_feature_shapes(size):
    net = resnet26(width=4, input_size=size).eval()
    feats = net.features(torch.zeros(2, 3, size, size), FEATURE_LAYERS)
    assert feats["stem"].shape == (2, 4, size, size)
    assert feats["stage1"].shape == (2, 4, size, size)
    assert feats["stage2"].shape == (2, 8, size // 2, size // 2)
    assert feats["stage3"].shape == (2, 16, size // 4, size // 4)
    assert feats["pooled"].shape == (2, 16)
    logits = net(torch.zeros(2, 3, size, size))
    assert torch.allclose(net.linears(feats["pooled"]), logits)


def test_shortcut_pools_and_zero_pads_channels():
    block = resnet26(width=4).layer2[0]
    x = torch.randn(2, 4, 8, 8)
    out = block.shortcut(x)
    assert out.shape == (2, 8, 4, 4)
    assert torch.allclose(out[:, :4], torch.nn.functional.avg_pool2d(x, 2))
    assert torch.count_nonzero(out[:, 4:]) == 0
    assert not any(p.numel() for n, p in block.named_parameters() if "short" in n)


def test_reference_initialisation():
    torch.manual_seed(0)
    net = resnet26(width=16)
    w = net.layer3[1].conv1.weight
    assert w.std().item() == pytest.approx(math.sqrt(2 / (9 * 64)), rel=0.05)
    assert torch.all(net.pre_bn.weight == 1) and torch.all(net.pre_bn.bias == 0)
    assert all(m.bias is None for m in net.modules() if isinstance(m, torch.nn.Conv2d))


def test_reference_checkpoint_with_1000_way_head_loads_as_theta0(tmp_path):
    source = ResNet26(width=4, num_classes=1000)
    path = tmp_path / "resnet26.pth"
    torch.save(source.state_dict(), path)  # the authors' format: a flat state dict
    net = resnet26(weights=path)
    assert net.width == 4 and net.linears.out_features == 1
    assert torch.equal(net.layer2[3].conv2.weight, source.layer2[3].conv2.weight)
    assert torch.equal(net.end_bn_relu[0].running_var, source.end_bn_relu[0].running_var)
    same = resnet26(weights=path, num_classes=1000).eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(same(x), source.eval()(x))


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    state = ResNet26(width=4).state_dict()
    del state["layer1.0.conv1.weight"]
    state["layer9.extra"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"missing keys: layer1\.0\.conv1\.weight.*unexpected keys: layer9\.extra"):
        resnet26(weights=path)


def test_shape_mismatch_is_reported(tmp_path):
    path = tmp_path / "w8.pth"
    torch.save(ResNet26(width=8).state_dict(), path)
    with pytest.raises(ValueError, match="width=4 does not match"):
        resnet26(width=4, weights=path)


@pytest.mark.parametrize("kwargs", [dict(width=0), dict(width=2.5), dict(input_size=64), dict(num_classes=0)])
def test_bad_constructor_arguments(kwargs):
    with pytest.raises(ValueError):
        ResNet26(**kwargs)


def test_unknown_feature_layer():
    with pytest.raises(ValueError, match="conv9"):
        resnet26(width=4).features(torch.zeros(1, 3, 32, 32), ["conv9"])
