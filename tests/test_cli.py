"""How `scalefold train` flags become a TrainConfig (speed-ups and the platform text)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from scalefold.cli import build_parser, default_platform, train_config_from_args
from scalefold.train.config import SpeedConfig


def _cfg(*argv: str, data_dir: str | None = "."):
    extra = ["--data-dir", data_dir] if data_dir else []
    return train_config_from_args(build_parser().parse_args(["train", *extra, *argv]))


def test_speed_presets_set_their_precision_and_flags_override():
    cfg = _cfg("--speed", "h200")
    assert cfg.precision == "bf16" and cfg.speed == SpeedConfig.preset("h200")
    cfg = _cfg("--speed", "h100")
    assert cfg.speed == dataclasses.replace(SpeedConfig.preset("h200"),
                                            recompute_outer_product=True,
                                            eval_plain_beside_training=True,
                                            single_pass_update=False)
    # explicit flags still win, both ways for booleans
    cfg = _cfg("--speed", "h200", "--precision", "tf32", "--layer-norm-output", "fp32",
               "--no-cuda-graphs", "--no-compile-glue")
    assert cfg.precision == "tf32" and cfg.speed.layer_norm_output == "fp32"
    assert not cfg.speed.cuda_graphs and not cfg.speed.compile_glue
    assert cfg.speed.fused_optimizer
    assert _cfg().speed == SpeedConfig() and _cfg().precision == "tf32"
    with pytest.raises(SystemExit):
        _cfg("--speed", "fast")


def test_single_speed_flags():
    cfg = _cfg("--attention", "triton", "--fused-optimizer")
    assert cfg.speed == SpeedConfig(attention="triton", fused_optimizer=True)
    with pytest.raises(ValueError, match="fused_optimizer"):
        _cfg("--cuda-graphs")


def test_every_speed_setting_has_a_flag_made_from_its_field():
    """The flags come from SpeedConfig's fields: each has one, with the field's help and
    its type's choices; a field without a flag could never be switched on."""
    import typing

    parser = build_parser()
    train = next(a for a in parser._subparsers._group_actions[0].choices.values()
                 if a.prog.endswith(" train"))
    by_dest = {a.dest: a for a in train._actions}
    hints = typing.get_type_hints(SpeedConfig)
    for f in dataclasses.fields(SpeedConfig):
        action = by_dest[f.name]
        assert action.help == f.metadata["help"] and action.help
        if hints[f.name] is bool:
            assert f"--no-{f.name.replace('_', '-')}" in action.option_strings
        else:
            assert tuple(action.choices) == typing.get_args(hints[f.name])
    cfg = _cfg("--trimul-channel-first", "--trimul-norm-kernel", "--layer-norm", "triton")
    assert cfg.speed.trimul_norm_kernel
    with pytest.raises(ValueError, match="trimul_channel_first"):
        _cfg("--trimul-norm-kernel")
    with pytest.raises(ValueError, match="need attention='triton'"):
        _cfg("--attention-fused-logits")
    assert _cfg("--attention", "triton", "--attention-fused-logits").speed.attention_fused_logits
    with pytest.raises(ValueError, match="need attention='triton'"):
        _cfg("--attention-precomputed-delta")
    with pytest.raises(ValueError, match="need attention='triton'"):
        _cfg("--attention-unmasked-loads")
    assert _cfg("--attention", "triton", "--attention-unmasked-loads").speed.attention_unmasked_loads
    with pytest.raises(ValueError, match="trimul_bias_in_gating needs trimul_channel_first"):
        _cfg("--trimul-bias-in-gating")
    assert _cfg("--trimul-channel-first", "--trimul-bias-in-gating").speed.trimul_bias_in_gating
    with pytest.raises(ValueError, match="trimul_gating_kernel needs trimul_channel_first"):
        _cfg("--trimul-gating-kernel")
    assert _cfg("--trimul-channel-first", "--trimul-gating-kernel").speed.trimul_gating_kernel


def test_presets_are_valid_and_named_once():
    from scalefold.train.config import PRESETS

    assert set(PRESETS) == {"eager", "h200", "h100"}
    assert PRESETS["eager"].speed == SpeedConfig()
    for name, preset in PRESETS.items():
        assert SpeedConfig.preset(name) is preset.speed
    with pytest.raises(ValueError, match="unknown speed preset"):
        SpeedConfig.preset("fast")
    # h100 is h200 with the outer product mean recomputed and PyTorch's fused Adam
    # (training) and, on ranks that also train, the plain evaluation: a rank that only
    # evaluates runs h200's.
    h100, h200 = PRESETS["h100"].speed, PRESETS["h200"].speed
    assert h100.eval_plain_beside_training and not h200.eval_plain_beside_training
    assert dataclasses.replace(h100.for_evaluation(trains=False),
                               recompute_outer_product=False, single_pass_update=True,
                               eval_plain_beside_training=False) == h200
    sync = h100.for_evaluation(trains=True)
    assert (sync.eval_length_buckets, sync.eval_cuda_graphs, sync.eval_warm_up,
            sync.eval_compile_glue) == ("off", False, False, False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU branch of the default")
def test_embedded_default_on_a_cpu_is_plain_fp32(tmp_path, monkeypatch):
    import scalefold.cli as cli

    monkeypatch.setattr(cli, "ensure_mini_dataset", lambda path: tmp_path)
    cfg = _cfg(data_dir=None)
    assert cfg.precision == "fp32" and cfg.speed == SpeedConfig()
    assert cfg.mlperf.platform.startswith("1xCPU (embedded default")
    assert default_platform(embedded=False) == "1xCPU"


def test_embedded_default_on_cuda_keeps_the_h200_recipe_under_single_flags(tmp_path,
                                                                           monkeypatch):
    """A speed flag on the embedded default overrides one field of the H200 recipe; it
    must not switch the run to plain fp32 (a silent change of what is measured)."""
    import scalefold.cli as cli

    monkeypatch.setattr(cli, "ensure_mini_dataset", lambda path: tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H200")
    cfg = _cfg("--fused-residual-dropout", "--no-compile-glue", data_dir=None)
    assert cfg.precision == "bf16"
    assert cfg.speed == dataclasses.replace(SpeedConfig.preset("h200"),
                                            fused_residual_dropout=True, compile_glue=False)
    assert _cfg("--precision", "fp32", data_dir=None).speed == SpeedConfig()
