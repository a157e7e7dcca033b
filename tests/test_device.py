"""Device and precision: skad_transfer.device."""

import pytest
import torch

from skad_transfer.device import Precision, cpu_has_native_bfloat16, resolve_device


def test_resolve_device():
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("CPU") == torch.device("cpu")
    with pytest.raises(ValueError, match="'gpu'"):
        resolve_device("gpu")
    with pytest.raises(TypeError):
        resolve_device(0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_precision():
    assert Precision.resolve(torch.device("cpu"), "float32").autocast_dtype is None
    assert Precision.resolve(torch.device("cpu"), "bfloat16").autocast_dtype == torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        Precision.resolve(torch.device("cpu"), "fp8")
    assert all(Precision.resolve(torch.device("cpu"), p).channels_last for p in ("auto", "float32", "bfloat16"))


@pytest.mark.parametrize("cpuid, env, native", [
    (True, {}, True),
    (False, {}, False),  # no bf16 instructions
    (True, {"ONEDNN_MAX_CPU_ISA": "avx2"}, False),  # oneDNN's convolutions capped below bf16
    (True, {"DNNL_MAX_CPU_ISA": "AVX512_CORE"}, False),  # the cap's former name
    (True, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, True),
    (True, {"ONEDNN_MAX_CPU_ISA": "ALL"}, True),
])
def test_auto_precision_is_bf16_only_where_the_convolutions_may_use_bf16_instructions(monkeypatch, cpuid, env, native):
    # Under a oneDNN cap of AVX2 an AVX512-BF16 CPU trained 11x slower in bf16 than in float32
    # (docs/benchmarks.md): "auto" must read the cap, not only the CPU's flags.
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: cpuid)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cpu_has_native_bfloat16() is native
    assert Precision.resolve(torch.device("cpu"), "auto").name == ("bfloat16" if native else "float32")
