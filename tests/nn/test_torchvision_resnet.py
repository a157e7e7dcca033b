"""torchvision's ResNets as backbones: torchvision's keys, seeded initialisation, taps, adapters."""

import pytest
import torch
from torchvision.models import get_model

from skad_transfer.nn import (BACKBONES, Backbone, ResNet26, TorchvisionResNet, add_residual_adapters, build_backbone,
                              freeze_for_adaptation)


def seeded(arch, seed=0, **kwargs):
    return build_backbone(arch, generator=torch.Generator().manual_seed(seed), **kwargs)


def test_every_backbone_name_is_registered():
    assert BACKBONES["resnet26"] is ResNet26
    assert {"resnet18", "resnet34", "resnet50", "wide_resnet50_2"} <= set(BACKBONES)
    assert all(BACKBONES[name] is TorchvisionResNet for name in ("resnet18", "resnet50", "wide_resnet50_2"))


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_state_dict_keys_are_torchvision_s(arch):
    ours = seeded(arch, num_classes=1000)
    assert isinstance(ours, Backbone)
    theirs = get_model(arch, weights=None).state_dict()
    assert list(ours.state_dict()) == list(theirs)
    assert all(ours.state_dict()[k].shape == v.shape for k, v in theirs.items())


def test_random_initialisation_comes_from_the_generator_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    a, b = seeded("resnet18", 5), seeded("resnet18", 5)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(1), before)  # the global generator was neither read nor advanced
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    c = seeded("resnet18", 6)
    assert not torch.equal(a.conv1.weight, c.conv1.weight)
    # torchvision's initialisation: kaiming-normal (fan-out) convs, BatchNorm at 1 and 0.
    assert abs(float(a.conv1.weight.detach().std()) - (2 / (64 * 49)) ** 0.5) < 0.003
    assert torch.equal(a.bn1.weight, torch.ones(64)) and torch.equal(a.bn1.running_var, torch.ones(64))


@pytest.mark.parametrize("arch, channels", [("resnet18", (64, 64, 128, 256, 512)),
                                            ("resnet50", (64, 256, 512, 1024, 2048))])
def test_feature_taps(arch, channels):
    net = seeded(arch, input_size=64).eval()
    x = torch.randn(2, 3, 64, 64)
    taps = net.features(x, net.feature_layers)
    assert net.feature_layers == ("stem", "stage1", "stage2", "stage3", "stage4", "pooled")
    sides = (16, 16, 8, 4, 2)
    for (name, c, side) in zip(net.feature_layers[:5], channels, sides):
        assert taps[name].shape == (2, c, side, side), name
    assert taps["pooled"].shape == (2, channels[-1]) and net.feature_dim == channels[-1]
    assert torch.allclose(net.head(taps["pooled"]), net(x))
    assert set(net.features(x, ["stage2"])) == {"stage2"}
    with pytest.raises(ValueError, match="layers must be among"):
        net.features(x, ["stage9"])


@pytest.mark.parametrize("arch, adapted", [("resnet18", 16), ("resnet50", 16)])
def test_adapters_sit_beside_every_3x3_block_conv_and_start_at_theta0(arch, adapted):
    net = seeded(arch, input_size=32).eval()
    x = torch.randn(2, 3, 32, 32)
    before = net(x)
    theta0 = net.theta0_parameters()
    add_residual_adapters(net)
    assert torch.equal(net(x), before)
    adapters = [m for m in net.modules() if type(m).__name__ == "ResidualAdapter"]
    assert len(adapters) == adapted
    assert all(m.kernel_size == (1, 1) and not m.weight.any() for m in adapters)
    assert [id(p) for p in net.theta0_parameters()] == [id(p) for p in theta0]  # the same parameters, wrapped
    trainable = freeze_for_adaptation(net)
    frozen = {n for n, p in net.named_parameters() if not p.requires_grad}
    convs = {n for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d) and "adapter" not in n}
    assert frozen == {f"{c}.weight" for c in convs}  # the 7x7 stem, the 3x3s, the 1x1s and the downsamples
    assert {id(p) for p in trainable} == {id(p) for p in net.parameters() if p.requires_grad}
    with pytest.raises(ValueError, match="already"):
        add_residual_adapters(net)


def test_input_sizes_and_width_are_checked():
    with pytest.raises(ValueError, match="input_size must be an int >= 32"):
        seeded("resnet18", input_size=16)
    with pytest.raises(ValueError, match="width applies to backbone='resnet26' only"):
        seeded("resnet18", width=16)
    with pytest.raises(ValueError, match="unknown name 'vgg16'"):
        seeded("vgg16")
    assert seeded("resnet18").input_size == 224  # torchvision's ImageNet resolution without weights
    import numpy as np

    assert seeded("resnet18", input_size=np.int64(48)).input_size == 48  # e.g. from a parameter grid
