"""`scalefold bench step` on the CPU with the tiny preset (the CI path)."""

from __future__ import annotations

import json

import torch

from scalefold.cli import main
from scalefold.train.step import fused_clip_into_adam


def test_bench_step_cli_tiny_cpu(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(["bench", "step", "--preset", "tiny", "--device", "cpu",
               "--variants", "fp32,bf16+tri+fused_opt", "--recycles", "0,1",
               "--warmup", "0", "--steps", "1", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "fp32" in text and "bf16+tri+fused_opt" in text and "model FLOPs/step" in text
    data = json.loads(out.read_text())
    assert [r["variant"]["name"] for r in data["results"]] == ["fp32", "bf16+tri+fused_opt"]
    assert all(r["error"] is None and len(r["per_n"]) == 2 for r in data["results"])
    flops = {int(k): v for k, v in data["flops"].items()}
    assert 0 < flops[0] < flops[1] and flops[1] * 3 == flops[0] * 4


def test_memory_report_tiny_cpu(capsys):
    rc = main(["bench", "step", "--preset", "tiny", "--device", "cpu",
               "--variants", "bf16+tri+fused_opt+bf16_ln", "--recycles", "0",
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


def test_fast_variants_are_what_train_fast_runs():
    """`bench step --variants fast` must time what `scalefold train --fast` runs (the H200
    config), and `fast+opm_recompute` the H100 configs' form of it."""
    import dataclasses

    from scalefold.bench.step import VARIANTS
    from scalefold.train.config import SpeedConfig

    fast = SpeedConfig.fast()
    assert VARIANTS["fast"].precision == "bf16"
    assert VARIANTS["fast"].speed() == fast
    assert VARIANTS["fast+opm_recompute"].speed() == dataclasses.replace(
        fast, recompute_outer_product=True)
    assert VARIANTS["fast_eager"].speed() == dataclasses.replace(fast, cuda_graphs=False)


def test_ckpt_variants_run_with_checkpointing_and_say_so(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(["bench", "step", "--preset", "tiny", "--device", "cpu",
               "--variants", "fp32+ckpt,fp32", "--recycles", "0",
               "--warmup", "0", "--steps", "1", "--no-flops", "--json", str(out)])
    assert rc == 0
    rows = json.loads(out.read_text())["results"]
    assert [r["checkpointing"] for r in rows] == [True, False]
    table = capsys.readouterr().out
    assert "fp32+ckpt " in table and "fp32+ckpt+ckpt" not in table


def test_flat_params_variant_runs_beside_its_base(tmp_path, capsys):
    """`flat_params` in the bench: one flat parameter for Adam, the same model, and the
    memory report's eager step keeps the flat gradients attached."""
    out = tmp_path / "bench.json"
    rc = main(["bench", "step", "--preset", "tiny", "--device", "cpu",
               "--variants", "bf16+tri+fused_opt,bf16+tri+fused_opt+flat", "--recycles", "0",
               "--warmup", "1", "--steps", "1", "--no-flops", "--memory-report",
               "--json", str(out)])
    assert rc == 0
    results = json.loads(out.read_text())["results"]
    assert [r["error"] for r in results] == [None, None]
    assert results[1]["variant"]["flat_params"] and not results[0]["variant"]["flat_params"]
    assert "saved for backward:" in capsys.readouterr().out
