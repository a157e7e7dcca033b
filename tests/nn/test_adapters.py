import pytest
import torch

from skad_transfer import resnet26
from skad_transfer.nn import add_residual_adapters, count_trainable, freeze_for_adaptation


def test_adapter_keys_follow_the_reference():
    net = add_residual_adapters(resnet26(width=4))
    keys = set(net.state_dict())
    assert "pre_ra.weight" in keys
    assert {f"layer{s}.{b}.ra{i}.weight" for s in (1, 2, 3) for b in range(4) for i in (1, 2)} <= keys
    assert net.layer2[0].ra1.stride == (2, 2) and net.layer2[0].ra1.kernel_size == (1, 1)


def test_zero_adapters_start_at_theta0():
    torch.manual_seed(0)
    net = resnet26(width=4).eval()
    x = torch.randn(3, 3, 32, 32)
    before = net(x)
    add_residual_adapters(net)
    assert torch.equal(net(x), before)


def test_freeze_leaves_exactly_the_3x3_convs_fixed():
    net = add_residual_adapters(resnet26(width=4))
    trainable = freeze_for_adaptation(net)
    frozen = {n for n, p in net.named_parameters() if not p.requires_grad}
    convs = {n for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)}
    assert frozen == {f"{c}.weight" for c in convs}
    assert len(frozen) == 25
    assert {id(p) for p in trainable} == {id(p) for p in net.parameters() if p.requires_grad}


def test_paper_width_trains_about_0_65M_parameters():
    net = add_residual_adapters(resnet26(width=64))
    freeze_for_adaptation(net)
    adapters = sum(p.numel() for n, p in net.named_parameters() if ".ra" in n or n.startswith("pre_ra"))
    assert adapters == 647_360  # 3*64 + 8*64^2 + (64*128 + 7*128^2) + (128*256 + 7*256^2)
    assert count_trainable(net) == pytest.approx(0.65e6, rel=0.02)
    convs = sum(p.numel() for p in net.conv3x3_parameters())
    assert adapters / convs == pytest.approx(0.11, abs=0.005)


def test_adapters_reject_other_modules_and_double_attachment():
    with pytest.raises(TypeError, match="ResNet26"):
        add_residual_adapters(torch.nn.Linear(2, 2))
    net = add_residual_adapters(resnet26(width=4))
    with pytest.raises(ValueError, match="already"):
        add_residual_adapters(net)
