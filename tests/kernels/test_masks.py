"""Mask biases built once per forward (`attention_shared_mask_biases`): the same bits as
every module building its own, built once per distinct mask, rebuilt when a mask changes."""

from __future__ import annotations

import copy

import pytest
import torch

from scalefold.data.selection import last_iteration
from scalefold.kernels import SharedMaskBias, swap_mask_biases
from scalefold.kernels._autocast import WeightCasts
from scalefold.losses import AlphaFoldLoss, LossConfig
from scalefold.model import AlphaFold, AlphaFoldConfig
from scalefold.model.attention import MaskBias
from scalefold.utils.synthetic import synthetic_batch


def _model() -> AlphaFold:
    torch.manual_seed(0)
    model = AlphaFold(AlphaFoldConfig.tiny())
    with torch.no_grad():  # the "final" inits zero some outputs: give them values
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def _batch(n_res: int = 14):
    batch = synthetic_batch(None, n_res=n_res, n_clust=5, n_extra=7, n_templ=2,
                            num_iterations=2)
    # masked residues and sequences, so that the biases are not all zero
    batch["seq_mask"][..., -3:, :] = 0
    batch["msa_mask"][..., 1, 2:5, :] = 0
    batch["extra_msa_mask"][..., 3, :, :] = 0
    return batch


def _run(model, batch, casts, grad: bool, bf16: bool):
    torch.manual_seed(1)  # the same dropout draws in both models
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), casts.scope():
        if not grad:
            with torch.no_grad():
                return model(batch), None
        out = model(batch)
    loss, _ = AlphaFoldLoss(LossConfig.mlperf())(out, last_iteration(batch), True)
    loss.backward()
    return out, torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("grad", [False, True])
def test_same_bits_as_every_module_building_its_own(grad, bf16):
    plain = _model().train(grad)
    shared = copy.deepcopy(plain)
    casts = WeightCasts()
    n = swap_mask_biases(shared, casts)
    assert all(type(m) is SharedMaskBias for m in shared.modules() if isinstance(m, MaskBias))
    assert n and list(shared.state_dict()) == list(plain.state_dict())
    batch = _batch()
    out0, g0 = _run(plain, batch, WeightCasts(), grad, bf16)
    out1, g1 = _run(shared, batch, casts, grad, bf16)
    for k in ("final_atom_positions", "pair", "msa", "single"):
        assert torch.equal(out0[k], out1[k]), k
    if grad:
        assert torch.equal(g0, g1)


def test_built_once_per_distinct_mask_and_scope(monkeypatch):
    model = _model().eval()
    casts = WeightCasts()
    swap_mask_biases(model, casts)
    names = {id(m): n for n, m in model.named_modules()}
    calls, builds = [], []
    real_forward, real_build = MaskBias.forward, SharedMaskBias._build
    monkeypatch.setattr(MaskBias, "forward",
                        lambda self, *a, **k: calls.append(1) or real_forward(self, *a, **k))
    monkeypatch.setattr(SharedMaskBias, "_build",
                        lambda self, m, t: builds.append((names[id(self)], t))
                        or real_build(self, m, t))
    batch = _batch()
    n_iters = batch["aatype"].shape[-1]
    with torch.no_grad(), casts.scope():
        model(batch)
    assert len(calls) == len(builds)  # MaskBias.forward runs only inside a build
    # The second Evoformer block finds every bias the first built.
    assert builds and not [n for n, _ in builds if n.startswith("evoformer_stack.blocks.1")]
    # Per recycling iteration: at most the 10 (mask, transpose) pairs of the tiny model's
    # 14 attention modules (here 8: the float32 pair mask of the template, extra-MSA and
    # Evoformer stacks is one tensor).
    assert len(builds) <= 10 * n_iters
    assert {t for _, t in builds} == {True, False}
    n_modules = sum(isinstance(m, MaskBias) for m in model.modules())
    calls.clear()
    with torch.no_grad():  # no scope open: every module builds its own
        model(batch)
    assert len(calls) == n_modules * n_iters


def test_a_mask_written_in_place_is_built_again():
    mb = MaskBias(1e9)
    casts = WeightCasts()
    swap_mask_biases(mb, casts)
    mask = torch.ones(3, 5)
    with casts.scope():
        b0 = mb(mask)
        assert mb(mask) is b0 and mb(mask.view(3, 5)) is b0  # the same memory and shape
        t0 = mb(mask, transpose=True)
        assert t0.is_contiguous() and torch.equal(t0, MaskBias(1e9)(mask, transpose=True))
        mask[1, 2] = 0
        b1 = mb(mask)
        assert b1 is not b0 and b1[1, 2] == -1e9 and torch.equal(b1, MaskBias(1e9)(mask))
    with torch.inference_mode():
        m2 = torch.ones(4, 4)
        with casts.scope():
            assert mb(m2) is mb(m2)


def test_needs_the_cache_in_apply_speedups():
    from scalefold.kernels import apply_speedups
    from scalefold.train.config import SpeedConfig

    with pytest.raises(ValueError, match="attention_shared_mask_biases"):
        apply_speedups(AlphaFold(AlphaFoldConfig.tiny()),
                       SpeedConfig(attention_shared_mask_biases=True), "fp32")
