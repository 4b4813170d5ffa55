"""How `scalefold train` flags become a TrainConfig (speed-ups and the platform text)."""

from __future__ import annotations

import pytest
import torch

from scalefold.cli import build_parser, default_platform, train_config_from_args
from scalefold.train.config import SpeedConfig


def _cfg(*argv: str, data_dir: str | None = "."):
    extra = ["--data-dir", data_dir] if data_dir else []
    return train_config_from_args(build_parser().parse_args(["train", *extra, *argv]))


def test_fast_sets_bf16_and_every_speedup():
    cfg = _cfg("--fast")
    assert cfg.precision == "bf16" and cfg.speed == SpeedConfig.fast()
    # explicit flags still win
    cfg = _cfg("--fast", "--precision", "tf32", "--layer-norm-output", "fp32")
    assert cfg.precision == "tf32" and cfg.speed.layer_norm_output == "fp32"
    assert cfg.speed.cuda_graphs


def test_single_speed_flags():
    cfg = _cfg("--attention", "triton", "--fused-optimizer")
    assert cfg.speed == SpeedConfig(attention="triton", fused_optimizer=True)
    with pytest.raises(ValueError, match="fused_optimizer"):
        _cfg("--cuda-graphs")


def test_every_speed_setting_has_a_flag():
    """A SpeedConfig field without a `scalefold train` flag could never be switched on."""
    from dataclasses import fields

    args = build_parser().parse_args(["train"])
    missing = [f.name for f in fields(SpeedConfig) if not hasattr(args, f.name)]
    assert not missing, missing
    cfg = _cfg("--trimul-channel-first", "--trimul-projection-bias", "gate")
    assert cfg.speed.trimul_projection_bias == "gate"
    with pytest.raises(ValueError, match="trimul_channel_first"):
        _cfg("--trimul-projection-bias", "gate_matvec")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU branch of the default")
def test_embedded_default_on_a_cpu_is_plain_fp32(tmp_path, monkeypatch):
    import scalefold.cli as cli

    monkeypatch.setattr(cli, "ensure_mini_dataset", lambda path: tmp_path)
    cfg = _cfg(data_dir=None)
    assert cfg.precision == "fp32" and cfg.speed == SpeedConfig()
    assert cfg.mlperf.platform.startswith("1xCPU (embedded default")
    assert default_platform(embedded=False) == "1xCPU"
