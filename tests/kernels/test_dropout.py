"""The fused residual dropout: the same masks as the plain module, one rounding."""

from __future__ import annotations

import pytest
import torch

from scalefold.kernels import FusedResidualDropout, swap_residual_dropout
from scalefold.model import AlphaFold, AlphaFoldConfig
from scalefold.model.dropout import SharedDropout, dropout_columnwise, dropout_rowwise
from scalefold.utils.synthetic import synthetic_batch


def _pair(make, dtype, seed=0):
    plain = make(0.25)
    fused = make(0.25)
    swap_residual_dropout(fused)
    assert type(fused) is FusedResidualDropout
    g = torch.Generator().manual_seed(seed)
    r = torch.randn(2, 5, 7, 6, generator=g).to(dtype)
    x = torch.randn(2, 5, 7, 6, generator=g).to(dtype)
    return plain, fused, r, x


@pytest.mark.parametrize("make", [dropout_rowwise, dropout_columnwise])
def test_same_masks_and_values_in_fp32(make):
    plain, fused, r, x = _pair(make, torch.float32)
    r.requires_grad_(True)
    x.requires_grad_(True)
    torch.manual_seed(3)
    want = plain.residual(r, x)
    (gr_w, gx_w) = torch.autograd.grad(want, (r, x), torch.ones_like(want))
    torch.manual_seed(3)
    got = fused.residual(r, x)
    (gr_g, gx_g) = torch.autograd.grad(got, (r, x), torch.ones_like(got))
    # Where the plain module dropped x, r passes unchanged: the same mask was drawn.
    dropped = (want - r).detach() == 0
    assert dropped.any() and (~dropped).any()
    assert torch.equal(got.detach()[dropped], r.detach()[dropped])
    torch.testing.assert_close(got, want, rtol=2e-7, atol=1e-6)
    assert torch.equal(gr_g, gr_w)
    torch.testing.assert_close(gx_g, gx_w, rtol=2e-7, atol=0)
    # dx is the mask: 0 or 1/(1-p), the same all along the shared axis.
    scale = torch.tensor(1 / 0.75)
    assert bool(((gx_g == 0) | torch.isclose(gx_g, scale)).all())
    assert torch.equal(gx_g, gx_g.narrow(fused.shared_dim, 0, 1).expand_as(gx_g))


def test_bf16_one_rounding_and_dtype_promotion():
    plain, fused, r, x = _pair(dropout_rowwise, torch.bfloat16)
    torch.manual_seed(1)
    want = (r.double() + plain(x).double())  # the exact sum of the plain form's terms
    torch.manual_seed(1)
    got = fused.residual(r, x)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.double(), want, rtol=2 ** -7, atol=1e-2)
    # A float32 stream with a bf16 update stays float32, as `r + dropout(x)` does.
    torch.manual_seed(1)
    assert fused.residual(r.float(), x).dtype == torch.float32


def test_eval_mode_and_p0_are_the_plain_sum():
    plain, fused, r, x = _pair(dropout_rowwise, torch.float32)
    fused.eval()
    assert torch.equal(fused.residual(r, x), r + x)
    zero = FusedResidualDropout.__new__(FusedResidualDropout)
    SharedDropout.__init__(zero, 0.0, -3)
    assert torch.equal(zero.residual(r, x), r + x)


def test_swap_on_the_model_keeps_state_dict_and_training_forward():
    torch.manual_seed(0)
    model = AlphaFold(AlphaFoldConfig.tiny()).train()
    names = list(model.state_dict())
    n = sum(type(m) is SharedDropout for m in model.modules())
    assert n > 0
    batch = synthetic_batch(None, n_res=12, n_clust=4, n_extra=6, n_templ=1, num_iterations=1)
    torch.manual_seed(5)
    ref = model(batch)["final_atom_positions"]
    swap_residual_dropout(model)
    assert sum(type(m) is FusedResidualDropout for m in model.modules()) == n
    assert list(model.state_dict()) == names
    torch.manual_seed(5)
    got = model(batch)["final_atom_positions"]
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
