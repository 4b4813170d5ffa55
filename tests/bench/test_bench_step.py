"""`scalefold bench step` on the CPU with the tiny preset (the CI path)."""

from __future__ import annotations

import json

import pytest
import torch

from scalefold.cli import main
from scalefold.train.step import fused_clip_into_adam


def test_bench_step_cli_tiny_cpu(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(["bench", "step", "--preset", "tiny", "--device", "cpu",
               "--variants", "eager@fp32,eager@bf16+attention=triton+fused_optimizer", "--recycles", "0,1",
               "--warmup", "0", "--steps", "1", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "eager@fp32" in text and "eager@bf16+attention=triton" in text
    assert "model FLOPs/step" in text
    data = json.loads(out.read_text())
    assert [r["name"] for r in data["results"]] == [
        "eager@fp32", "eager@bf16+attention=triton+fused_optimizer"]
    assert all(r["error"] is None and len(r["per_n"]) == 2 for r in data["results"])
    flops = {int(k): v for k, v in data["flops"].items()}
    assert 0 < flops[0] < flops[1] and flops[1] * 3 == flops[0] * 4


def test_memory_report_tiny_cpu(capsys):
    rc = main(["bench", "step", "--preset", "tiny", "--device", "cpu",
               "--variants", "h100+cuda_graphs=0+compile_glue=0", "--recycles", "0",
               "--warmup", "0", "--steps", "1", "--no-flops", "--memory-report"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "saved for backward:" in text and "evoformer_stack" in text
    total = float(text.split("saved for backward: ")[1].split(" GiB")[0])
    assert total > 0


def test_fused_clip_matches_clip_then_adam():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(7))]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in params]
    for p, r in zip(params, ref):
        p.grad = torch.randn_like(p) * 3
        r.grad = p.grad.clone()
    opt = torch.optim.Adam(params, lr=1e-2, eps=1e-6, fused=True)
    opt_ref = torch.optim.Adam(ref, lr=1e-2, eps=1e-6)
    for _ in range(3):
        fused_clip_into_adam(opt, params, 0.1)
        opt.step()
        torch.nn.utils.clip_grad_norm_(ref, 0.1)
        opt_ref.step()
        for p, r in zip(params, ref):
            r.grad = p.grad.clone()  # clip_grad_norm_ scaled r.grad in place
    for p, r in zip(params, ref):
        torch.testing.assert_close(p, r, rtol=1e-5, atol=1e-6)


def test_variants_are_presets_with_overrides():
    """A variant is a preset plus SpeedConfig overrides: `h200` times what `scalefold train
    --speed h200` runs, and nothing else names a speed-up."""
    import dataclasses

    from scalefold.bench.step import parse_variant
    from scalefold.train.config import SpeedConfig

    h200 = parse_variant("h200")
    assert h200.precision == "bf16" and h200.speed == SpeedConfig.preset("h200")
    # (how h100 differs from h200 is pinned once, in tests/test_cli.py)
    assert parse_variant("h100").speed == SpeedConfig.preset("h100")
    v = parse_variant("h200@tf32+cuda_graphs=0+fused_gate=0+ckpt")
    assert v.precision == "tf32" and v.checkpointing
    assert v.speed == dataclasses.replace(SpeedConfig.preset("h200"), cuda_graphs=False,
                                          fused_gate=False)
    assert parse_variant("eager").precision == "fp32"
    for bad, match in [("fast", "unknown preset"), ("h200+flat_params", "not a SpeedConfig"),
                       ("eager@fp16", "precision"), ("h200+cuda_graphs=maybe", "boolean"),
                       ("h200+attention", "needs a value")]:
        with pytest.raises(ValueError, match=match):
            parse_variant(bad)


def test_ckpt_variants_run_with_checkpointing_and_say_so(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(["bench", "step", "--preset", "tiny", "--device", "cpu",
               "--variants", "eager+ckpt,eager", "--recycles", "0",
               "--warmup", "0", "--steps", "1", "--no-flops", "--json", str(out)])
    assert rc == 0
    rows = json.loads(out.read_text())["results"]
    assert [r["checkpointing"] for r in rows] == [True, False]
    table = capsys.readouterr().out
    assert "eager+ckpt " in table and "eager+ckpt+ckpt" not in table
    assert "  eager: " in table and "s (build, compile, capture, timing)" in table


def test_the_json_is_written_after_every_variant(tmp_path, monkeypatch):
    """A process cut short (call 29: killed compiling its second variant) keeps the JSON
    of the variants that finished."""
    import scalefold.bench.step as step

    out = tmp_path / "bench.json"
    seen = []
    real = step.run_bench

    def spy(cfg, log=print, variants=None, after_variant=None):
        def after(results, flops):
            after_variant(results, flops)
            seen.append([r["name"] for r in json.loads(out.read_text())["results"]])
        return real(cfg, log, variants, after)

    monkeypatch.setattr(step, "run_bench", spy)
    rc = main(["bench", "step", "--preset", "tiny", "--device", "cpu",
               "--variants", "eager,eager+ckpt", "--recycles", "0",
               "--warmup", "0", "--steps", "1", "--no-flops", "--json", str(out)])
    assert rc == 0
    assert seen == [["eager"], ["eager", "eager+ckpt"]]


def test_profile_breakdown_groups_kernels_by_family():
    from scalefold.bench.step import family_breakdown, format_breakdown, kernel_family

    cases = {
        "_attn_fwd_0d1d2d3": "attention forward (Triton)",
        "_attn_bwd_dq": "attention backward (Triton)",
        "_ln_cf_fwd": "LayerNorm (Triton)",
        "triton_red_fused_native_layer_norm_0": "compiled glue (inductor)",
        "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n": "matmul (cuBLAS/CUTLASS)",
        "void at::native::vectorized_layer_norm_kernel<float>": "LayerNorm and softmax (PyTorch)",
        "void at::native::elementwise_kernel<128, 4, direct_copy_kernel_cuda>": "copies and layout",
        "void at::native::vectorized_elementwise_kernel<4, MulFunctor>": "other elementwise",
        "ncclDevKernel_AllReduce_Sum_f32_RING_LL": "communication (NCCL)",
        "something_new": "other",
    }
    for name, family in cases.items():
        assert kernel_family(name) == family, name
    rows = family_breakdown([("_attn_fwd", 20.0, 10), ("gemm_a", 60.0, 100),
                             ("gemm_b", 40.0, 200), ("foo", 5.0, 1)])
    assert rows[0] == ("matmul (cuBLAS/CUTLASS)", 100.0, 300)
    assert [r[0] for r in rows] == ["matmul (cuBLAS/CUTLASS)", "attention forward (Triton)",
                                    "other"]
    text = format_breakdown(rows)
    assert "80.0%" in text and "125.00" in text


def test_profile_difference_is_per_family():
    from scalefold.bench.step import breakdown_difference

    less = [("_attn_fwd", 20.0, 10), ("_attn_bwd_dq", 30.0, 10), ("gemm_a", 50.0, 100)]
    more = [("_attn_fwd", 35.0, 20), ("_attn_bwd_dq", 30.0, 10), ("gemm_a", 80.0, 150),
            ("triton_poi_fused_0", 4.0, 8)]
    rows = breakdown_difference(more, less)
    assert rows[0] == ("matmul (cuBLAS/CUTLASS)", 30.0, 50)
    assert rows[1] == ("attention forward (Triton)", 15.0, 10)
    assert ("compiled glue (inductor)", 4.0, 8) in rows
    assert ("attention backward (Triton)", 0.0, 0) in rows


def test_profile_leaves_out_annotation_spans():
    from scalefold.bench.step import is_annotation

    assert is_annotation("## Call CompiledFxGraph fyh2xycbytbax ##")
    assert is_annotation("Optimizer.step#Adam.step")
    assert not is_annotation("_attn_fwd")
    assert not is_annotation("void at::native::vectorized_elementwise_kernel<4, MulFunctor>")
