"""The triangle attentions' key mask folded into their bias (`triangle_attention_folded_mask`):
the module against the plain one on real rows (eager core and the Triton kernel), the
plain biases with gradients, the whole tiny model with padded residues, the swap."""

from __future__ import annotations

import copy

import pytest
import torch

from scalefold.kernels import (
    FoldedKeyMaskTriangleAttention,
    apply_kernels,
    apply_speedups,
    swap_folded_key_masks,
)
from scalefold.model import AlphaFold, AlphaFoldConfig
from scalefold.model.pair import TriangleAttention
from scalefold.train.config import SpeedConfig
from scalefold.utils.synthetic import synthetic_batch

N, REAL = 37, 30  # residues, of which the first REAL are real


def _module(starting: bool) -> TriangleAttention:
    torch.manual_seed(1 if starting else 2)
    m = TriangleAttention(16, 8, 2, 1e9, starting=starting)
    with torch.no_grad():  # the "final" init zeroes linear_o: give it values
        for p in m.parameters():
            p.normal_(0, 0.3)
    return m.eval()


def _inputs(device):
    g = torch.Generator().manual_seed(5)
    z = torch.randn(1, N, N, 16, generator=g).to(device)
    seq = (torch.arange(N) < REAL).float()
    return z, (seq[:, None] * seq[None, :])[None].to(device)  # the pair mask [1, N, N]


def _real(out: torch.Tensor, starting: bool) -> torch.Tensor:
    # real rows of the starting node, real columns of the ending node
    return out[:, :REAL] if starting else out[:, :, :REAL]


@pytest.mark.parametrize("starting", [True, False], ids=["starting", "ending"])
def test_eager_real_rows_unchanged_padded_rows_not(starting):
    """fp32, the plain core: the same bits on real rows (an unmasked key adds 0 in both
    forms), other numbers on padded rows (the fold happened), one bias handed over."""
    plain = _module(starting)
    folded = swap_folded_key_masks(copy.deepcopy(plain))
    assert isinstance(folded, FoldedKeyMaskTriangleAttention)
    z, mask = _inputs(torch.device("cpu"))
    seen = []
    attend = folded.mha.attend
    folded.mha.attend = lambda *a, **kw: seen.append(a[4]) or attend(*a, **kw)
    with torch.no_grad():
        ref, out = plain(z, mask), folded(z, mask)
    (biases,) = seen
    assert len(biases) == 1 and biases[0].is_contiguous() and biases[0].shape[-4] == 1
    assert torch.equal(_real(out, starting), _real(ref, starting))
    assert not torch.allclose(out, ref)


def test_with_gradients_the_plain_biases():
    plain = _module(True)
    folded = swap_folded_key_masks(copy.deepcopy(plain))
    z, mask = _inputs(torch.device("cpu"))
    z.requires_grad_(True)
    assert torch.equal(folded(z, mask), plain(z, mask))


@pytest.mark.parametrize("starting", [True, False], ids=["starting", "ending"])
def test_kernel_real_rows_unchanged(kern, device, starting, monkeypatch):
    """fp32 through the Triton core (the one-bias form of the kernel): the plain module's
    real rows to the bit in the interpreter, to fp32 rounding on a GPU."""
    import scalefold.kernels.cores as cores

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    plain = apply_kernels(_module(starting).to(device), attention="triton")
    folded = swap_folded_key_masks(copy.deepcopy(plain))
    counts = []
    flash = cores.flash_attention
    monkeypatch.setattr(cores, "flash_attention",
                        lambda q, k, v, b, *a, **kw: counts.append(len(b)) or flash(
                            q, k, v, b, *a, **kw))
    z, mask = _inputs(device)
    with torch.no_grad():
        ref, out = plain(z, mask), folded(z, mask)
    assert counts == [2, 1]
    if device.type == "cuda":
        # the two compiled forms of the kernel need not round alike (ptxas contracts
        # multiply-adds per kernel); fp32 rounding is the bound there
        diff = (_real(out, starting) - _real(ref, starting)).abs().max().item()
        print(f"real rows: max |folded - plain| = {diff:.3e}")
        assert diff <= 1e-5 * _real(ref, starting).abs().max().item()
    else:
        assert torch.equal(_real(out, starting), _real(ref, starting))


@pytest.mark.parametrize("starting", [True, False], ids=["starting", "ending"])
def test_kernel_fp32_bias_same_output(kern, device, starting):
    """`triangle_attention_fp32_bias`: the folded bias written in fp32 holds the 16-bit
    bias's values, so the Triton forward (fused logits, the tile loaded stages ahead,
    where a 16-bit tile is converted to fp32 in the loop) gives the same output: the same
    bits in the interpreter (fp16 there, bf16 on a GPU), within bf16 rounding on a GPU."""
    from scalefold.kernels.attention import FlashConfig

    half = torch.bfloat16 if device.type == "cuda" else torch.float16
    cfg = FlashConfig(fused_logits=True, unmasked_loads=True, pipelined_bias_loads=True)
    plain = apply_kernels(_module(starting).to(device, half), attention="triton",
                          flash_config=cfg)
    z, mask = _inputs(device)
    outs, seen = [], []
    for dtype in (None, torch.float32):
        folded = swap_folded_key_masks(copy.deepcopy(plain), dtype=dtype)
        attend = folded.mha.attend

        def spy(*a, attend=attend, **kw):
            seen.append(a[4][0].dtype)
            return attend(*a, **kw)

        folded.mha.attend = spy
        with torch.no_grad():
            outs.append(folded(z.to(half), mask.to(half)))
    assert seen == [half, torch.float32]
    if device.type == "cuda":
        assert (outs[0].float() - outs[1].float()).abs().max() <= 1e-2 * outs[0].abs().max()
    else:
        assert torch.equal(outs[0], outs[1])


def test_kernel_in_triton_interpreter():
    """CPU: the kernel tests above rerun in a process under TRITON_INTERPRET=1."""
    from tests.kernels.conftest import rerun_in_interpreter

    rerun_in_interpreter(__file__, "kernel_real_rows or kernel_fp32_bias")


def test_tiny_model_with_padded_residues_unchanged_on_real_residues():
    """The tiny model without gradients, 4 of its residues padding (masked), every
    triangle attention folded (Evoformer, extra-MSA and template stacks): the same
    coordinates and single representation at the real residues."""
    torch.manual_seed(0)
    cfg = AlphaFoldConfig.tiny()
    plain = AlphaFold(cfg).eval()
    with torch.no_grad():  # the "final" inits zero every update's last projection
        for p in plain.parameters():
            p.add_(torch.randn_like(p), alpha=0.05)
    folded = copy.deepcopy(plain)
    assert swap_folded_key_masks(folded) is folded
    swapped = [m for m in folded.modules() if isinstance(m, TriangleAttention)]
    assert swapped and all(isinstance(m, FoldedKeyMaskTriangleAttention) for m in swapped)
    batch = synthetic_batch(cfg, 16, 6, 8, 2, num_iterations=2, seed=3)
    real = 12
    for k, v in batch.items():  # residues real..16 become padding
        if k in ("seq_mask", "msa_mask", "extra_msa_mask", "template_pseudo_beta_mask",
                 "template_all_atom_mask", "template_torsion_angles_mask"):
            idx = [slice(None)] * v.dim()
            dim = {"seq_mask": 1, "msa_mask": 2, "extra_msa_mask": 2}.get(k, 2)
            idx[dim] = slice(real, None)
            v[tuple(idx)] = 0
    with torch.no_grad():
        ref, out = plain(batch), folded(batch)
    for key, dim in (("final_atom_positions", 1), ("single", 1), ("msa", 2)):
        assert torch.equal(out[key].narrow(dim, 0, real), ref[key].narrow(dim, 0, real)), key
    assert torch.equal(out["pair"][:, :real, :real], ref["pair"][:, :real, :real])
    assert not torch.equal(out["pair"], ref["pair"])  # the padded rows changed


def test_the_field_swaps_the_training_model_and_the_evaluation_copy():
    model = AlphaFold(AlphaFoldConfig.tiny())
    apply_speedups(model, SpeedConfig(triangle_attention_folded_mask=True), "fp32")
    tri = [m for m in model.modules() if isinstance(m, TriangleAttention)]
    assert tri and all(isinstance(m, FoldedKeyMaskTriangleAttention) for m in tri)
    plain = AlphaFold(AlphaFoldConfig.tiny())
    apply_speedups(plain, SpeedConfig(), "fp32")
    assert not any(isinstance(m, FoldedKeyMaskTriangleAttention) for m in plain.modules())
