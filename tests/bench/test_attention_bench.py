"""`scalefold bench attention` on the CPU: the recorded call sites and the rebuilt inputs."""

from __future__ import annotations

import dataclasses

import torch

from scalefold.bench.attention import (
    Signature,
    SignatureResult,
    TensorSpec,
    format_table,
    record_signatures,
    time_signature,
)
from scalefold.model import AlphaFoldConfig


def test_records_every_attention_call_of_a_forward():
    seen = record_signatures("tiny", torch.device("cpu"))
    cfg = AlphaFoldConfig.tiny()
    # Per block: Evoformer 4 (row, column, two triangles), extra MSA 3 (its column
    # attention is global, not a core call), template pair 2 (the triangles), plus the
    # template pointwise attention once.
    expected = (4 * cfg.evoformer.num_blocks + 3 * cfg.extra_msa.num_blocks
                + 2 * cfg.template.num_blocks + 1)
    assert sum(seen.values()) == expected
    # Gradient-needing biases (pair/triangle biases) are recorded as such, masks not.
    assert any(b.requires_grad for sig in seen for b in sig.biases)
    assert any(not b.requires_grad for sig in seen for b in sig.biases)


def test_rebuilt_inputs_keep_strides_and_results_tabulate():
    base = torch.randn(2, 6, 3, 4).permute(1, 2, 0, 3)  # a head-split column-wise view
    spec = TensorSpec.of(base.requires_grad_())
    t = spec.make(torch.device("cpu"), torch.Generator().manual_seed(0))
    assert t.shape == base.shape and t.stride() == base.stride() and t.requires_grad
    seen = record_signatures("tiny", torch.device("cpu"))
    sig: Signature = max(seen, key=lambda s: s.min_bytes())
    res = time_signature(sig, torch.device("cpu"), warmup=0, reps=1, candidates={})
    assert isinstance(res, SignatureResult) and res.default_s["fwd"] > 0
    assert res.default_s["bwd"] > 0  # it has a gradient-needing bias
    assert sig.label() in format_table([res], 4800.0)


def test_every_recorded_signature_times_on_the_cpu(tmp_path):
    """The whole CPU run: the calls recorded under bf16 autocast are replayed without it,
    so the small ones take the PyTorch fallback with bf16 inputs and fp32 masks."""
    import json

    from scalefold.bench.attention import AttnBenchConfig, main

    out = tmp_path / "attn.json"
    cfg = AttnBenchConfig(preset="tiny", device="cpu", warmup=0, reps=1, sweep=False)
    assert main(cfg, str(out)) == 0
    results = json.loads(out.read_text())["results"]
    assert len(results) == len(record_signatures("tiny", torch.device("cpu")))
    assert all(r["default_s"]["fwd"] > 0 for r in results)
    # the other form of the logits timed beside each signature, backward where one runs
    assert all(r["default_s"]["fwd_other_logits"] > 0 for r in results)
    assert any(r["default_s"]["bwd_other_logits"] > 0 for r in results)
    assert any(r["default_s"]["bwd_other_delta"] > 0 for r in results)
    assert all(r["default_s"]["fwd_other_loads"] > 0 for r in results)
    assert all("bwd_other_ds_dq" in r["default_s"] for r in results)
    assert any(r["default_s"]["bwd_other_loads"] > 0 for r in results)


def test_fallback_with_bf16_inputs_and_an_fp32_mask_matches_autocast():
    from scalefold.kernels.attention import flash_attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 4, 8, generator=g).bfloat16() for _ in range(3))
    mask = torch.zeros(1, 1, 1, 4)
    mask[..., 0] = -1e9
    got = flash_attention(q, k, v, [mask])  # Q = 4 < 16: the PyTorch fallback
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = flash_attention(q, k, v, [mask])
    assert got.dtype == want.dtype == torch.bfloat16
    torch.testing.assert_close(got, want)


def test_sweeps_only_the_backward_kernels_that_run():
    """With the stored dS a bias-gradient call runs only the dk/dv kernel, so only that
    one (and the forward) is swept; without it the bias kernel and the dq kernel run too."""
    from scalefold.bench.attention import backward_kernels
    from scalefold.kernels.attention import FlashConfig, Launch

    fast = FlashConfig(dq_kernel=True, store_ds=True)
    assert backward_kernels(fast, bias_grad=True) == ("bwd_kv",)
    # dq from the stored dS by its own kernel: another backward, timed beside the base
    with_dq = dataclasses.replace(fast, ds_dq_kernel=True)
    assert backward_kernels(with_dq, bias_grad=True) == ("bwd_kv", "ds_dq")
    assert backward_kernels(with_dq, bias_grad=False) == backward_kernels(fast, False)
    assert backward_kernels(fast, bias_grad=False) == ("bwd_kv", "bwd_dq")
    assert set(backward_kernels(FlashConfig(dq_kernel=True), True)) == {"bwd_kv", "bwd_dq",
                                                                        "bwd_q"}
    assert set(backward_kernels(FlashConfig(), True)) == {"bwd_kv", "bwd_q"}
    seen = record_signatures("tiny", torch.device("cpu"))
    sig = next(s for s in seen if any(b.requires_grad for b in s.biases))
    one = (Launch(16, 16, 4, 1),)
    res = time_signature(sig, torch.device("cpu"), warmup=0, reps=1,
                         candidates={k: one for k in ("fwd", "bwd_kv", "bwd_q", "bwd_dq")},
                         base=fast)
    assert set(res.sweep_s) == {"fwd", "bwd_kv"}


def test_records_at_another_length_and_times_forwards_only(tmp_path):
    """`--n-res` records the same calls at an evaluation chain's length; `--forward-only`
    times no backward and sweeps only the kernels `--kinds` names."""
    import json

    import pytest

    from scalefold.bench.attention import AttnBenchConfig, main
    from scalefold.kernels.attention import Launch

    crop = record_signatures("tiny", torch.device("cpu"))
    longer = record_signatures("tiny", torch.device("cpu"), n_res=24)
    assert sum(longer.values()) == sum(crop.values())
    assert {s.q.shape[-2] for s in longer} - {s.q.shape[-2] for s in crop}  # new lengths
    sig = next(s for s in longer if any(b.requires_grad for b in s.biases))
    res = time_signature(sig, torch.device("cpu"), warmup=0, reps=1,
                         candidates={"fwd": (Launch(16, 16, 4, 1),)}, forward_only=True)
    assert res.default_s["bwd"] == 0.0 and set(res.sweep_s) == {"fwd"}
    assert res.default_s["fwd_tile_bias"] > 0  # a mask broadcast over queries: timed both ways
    assert res.default_s["fwd_other_logits"] > 0 and res.default_s["bwd_other_logits"] == 0.0
    out = tmp_path / "attn.json"
    cfg = AttnBenchConfig(preset="tiny", device="cpu", warmup=0, reps=1, sweep=False,
                          n_res=24, forward_only=True, kinds=("fwd",))
    assert main(cfg, str(out)) == 0
    assert json.loads(out.read_text())["config"]["n_res"] == 24
    with pytest.raises(ValueError, match="unknown kernels"):
        AttnBenchConfig(kinds=("fwd", "bwd"))
