"""Each mask's attention bias made once per forward scope (`SharedMaskBias`, and the
folded key mask's reduction of it): the same bits and gradients, one computation per
mask however many blocks use it."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from scalefold.data.selection import last_iteration
from scalefold.kernels import SharedMaskBias, share_mask_biases
from scalefold.kernels._autocast import WeightCasts
from scalefold.kernels.key_mask import swap_folded_key_masks
from scalefold.losses import AlphaFoldLoss, LossConfig
from scalefold.model import AlphaFold, AlphaFoldConfig
from scalefold.model.attention import MaskBias
from scalefold.utils.synthetic import synthetic_batch


def test_derived_values_once_per_scope_and_tensor():
    casts = WeightCasts()
    made = []

    def make(t):
        made.append(t)
        return t * 2

    mask = torch.tensor([1.0, 0.0, 1.0])
    twin = mask.clone()  # equal values, another tensor
    assert casts.derived(("k",), mask, lambda: make(mask)) is not None and len(made) == 1
    with casts.scope():
        first = casts.derived(("k",), mask, lambda: make(mask))
        assert casts.derived(("k",), mask, lambda: make(mask)) is first
        assert casts.derived(("other",), mask, lambda: make(mask)) is not first
        assert casts.derived(("k",), twin, lambda: make(twin)) is not first
        assert len(made) == 4
        mask.mul_(1.0)  # an in-place change: made again
        assert casts.derived(("k",), mask, lambda: make(mask)) is not first
        assert len(made) == 5
        with torch.inference_mode():
            frozen = torch.ones(2)
        assert casts.derived(("k",), frozen, lambda: make(frozen)) is casts.derived(
            ("k",), frozen, lambda: make(frozen))
        grad = torch.ones(2, requires_grad=True)  # records gradients: never shared
        assert casts.derived(("k",), grad, lambda: grad * 2) is not casts.derived(
            ("k",), grad, lambda: grad * 2)
    assert casts.derived(("k",), mask, lambda: make(mask)) is not first  # scope closed


def _model(blocks: int, shared: bool, folded: bool = False):
    cfg = AlphaFoldConfig.tiny()
    cfg = dataclasses.replace(cfg, evoformer=dataclasses.replace(cfg.evoformer,
                                                                 num_blocks=blocks))
    torch.manual_seed(0)
    model = AlphaFold(cfg).eval()
    casts = WeightCasts()
    if folded:
        swap_folded_key_masks(model, casts if shared else None)
    if shared:
        share_mask_biases(model, casts)
        assert all(isinstance(m, SharedMaskBias) for m in model.modules()
                   if isinstance(m, MaskBias))
    return model, casts


class _Count(TorchDispatchMode):
    def __init__(self, name: str):
        super().__init__()
        self.name, self.count = name, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func.overloadpacket.__name__ == self.name
        return func(*args, **(kwargs or {}))


def _run(blocks: int, shared: bool, monkeypatch):
    """Loss, gradients and the plain MaskBias computations of a recycled forward (two
    iterations without gradients, one with) under CPU bf16 autocast in the scope."""
    calls = []
    plain = MaskBias.forward
    monkeypatch.setattr(MaskBias, "forward", lambda self, *a, **k: (calls.append(1),
                                                                    plain(self, *a, **k))[1])
    model, casts = _model(blocks, shared)
    batch = synthetic_batch(None, n_res=12, n_clust=4, n_extra=6, n_templ=1,
                            num_iterations=3, device="cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16), casts.scope():
        out = model(batch)
    loss, _ = AlphaFoldLoss(LossConfig.mlperf())(out, last_iteration(batch), True)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    return loss.detach(), grads, len(calls)


def test_shared_mask_biases_change_no_bit_and_are_made_once_per_mask(monkeypatch):
    l0, g0, plain_calls = _run(2, False, monkeypatch)
    l1, g1, shared_calls = _run(2, True, monkeypatch)
    assert torch.equal(l0, l1)
    for a, b in zip(g0, g1, strict=True):
        assert (a is None) == (b is None) and (a is None or torch.equal(a, b))
    assert shared_calls < plain_calls
    # one per mask and orientation, not per block: more blocks add no computation
    _, _, more_blocks = _run(4, True, monkeypatch)
    _, _, more_plain = _run(4, False, monkeypatch)
    assert more_blocks == shared_calls and more_plain > plain_calls


@pytest.mark.parametrize("blocks", [1, 3])
def test_folded_key_masks_reduce_a_shared_bias_once(blocks):
    """Without gradients the folded key mask reduces each shared mask bias to its keys
    once a forward (the triangle attentions of every block pass the same bias)."""
    outs, amax = [], []
    for shared in (False, True):
        model, casts = _model(blocks, shared, folded=True)
        batch = synthetic_batch(None, n_res=12, n_clust=4, n_extra=6, n_templ=1,
                                num_iterations=1, device="cpu")
        scope = casts.scope() if shared else contextlib.nullcontext()
        with torch.no_grad(), scope, _Count("amax") as count:
            outs.append(model(batch)["final_atom_positions"])
        amax.append(count.count)
    assert torch.equal(*outs)
    # every triangle attention of the Evoformer, extra-MSA and template stacks reduces
    # its own without sharing; shared, one per mask and orientation
    assert amax[1] < amax[0]
    assert amax[1] <= 4


def test_outer_product_means_share_one_denominator():
    """Without gradients (the epilogue's path) every block's outer product mean takes the
    MSA mask's count made once per scope: the same bits as its own."""
    from scalefold.kernels.opm import swap_outer_product_epilogue, swap_outer_product_mean

    model, casts = _model(3, shared=False)
    swap_outer_product_mean(model)
    swap_outer_product_epilogue(model, casts)
    opms = [b.core.outer_product_mean for b in model.evoformer_stack.blocks]
    mask = (torch.rand(1, 5, 12) > 0.3).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        own = opms[0].mean_denominator(mask)
        assert opms[0].shared_denominator(mask) is not opms[1].shared_denominator(mask)
        with casts.scope():
            dens = [o.shared_denominator(mask) for o in opms]
            other = opms[0].shared_denominator(mask.clone())  # another mask: its own
    assert all(d is dens[0] for d in dens) and other is not dens[0]
    assert torch.equal(dens[0], own) and dens[0].dtype == own.dtype == torch.bfloat16


def test_a_transposed_mask_bias_is_made_row_major_once():
    """The column attentions' transposed bias is made contiguous once per scope (the
    attention core would copy it row-major in every block), with the plain values."""
    model, casts = _model(2, shared=True)
    biases = [b.msa_att_col.mask_bias for b in model.evoformer_stack.blocks]
    mask = (torch.rand(1, 5, 12) > 0.3).float()
    with casts.scope():
        got = [mb(mask, transpose=True) for mb in biases]
    want = MaskBias.forward(biases[0], mask, transpose=True)
    assert got[0] is got[1] and got[0].is_contiguous() and not want.is_contiguous()
    assert torch.equal(got[0], want)
