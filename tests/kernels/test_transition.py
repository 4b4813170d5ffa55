"""The transition with its ReLU in the first matmul's epilogue: the plain module's values
without gradients, the plain forward with them, one external kernel when compiled."""

from __future__ import annotations

import copy

import pytest
import torch

from scalefold.kernels import EpilogueReluTransition, swap_transitions
from scalefold.kernels._autocast import WeightCasts
from scalefold.model import AlphaFold, AlphaFoldConfig
from scalefold.model.msa import Transition
from scalefold.utils.synthetic import synthetic_batch


def _pair(seed: int = 0, c: int = 16, n: int = 4, device: str = "cpu"):
    torch.manual_seed(seed)
    plain = Transition(c, n).to(device)
    with torch.no_grad():  # a non-trivial LayerNorm and biases, some hidden units < 0
        for p in plain.parameters():
            p.add_(0.3 * torch.randn_like(p))
    fast = copy.deepcopy(plain)
    assert swap_transitions(fast) is fast and type(fast) is EpilogueReluTransition
    return plain, fast


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_without_gradients_the_plain_modules_values(bf16):
    plain, fast = _pair()
    x = torch.randn(3, 21, 16)  # [*, N, c]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        want, got = plain(x), fast(x)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert torch.equal(got, want)


def test_with_gradients_the_plain_forward_and_gradients():
    plain, fast = _pair(seed=1)
    x = torch.randn(2, 9, 16)
    want, got = plain(x), fast(x)
    assert torch.equal(got, want) and got.grad_fn is not None
    g_want = torch.autograd.grad(want.square().sum(), list(plain.parameters()))
    g_got = torch.autograd.grad(got.square().sum(), list(fast.parameters()))
    for a, b in zip(g_got, g_want, strict=True):
        assert torch.equal(a, b)


def test_shared_weight_casts_are_used_in_their_scope():
    plain, fast = _pair(seed=2)
    casts = WeightCasts()
    swap_transitions(fast, casts)
    asked = []
    cast = casts.cast
    casts.cast = lambda p, dt: asked.append(p) or cast(p, dt)  # the module's casts, counted
    x = torch.randn(4, 16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), casts.scope():
        want, got = plain(x), fast(x)
        assert {id(p) for p in asked} >= {id(fast.linear_1.weight), id(fast.linear_1.bias)}
        again = fast(x)
        held = casts.cast(fast.linear_1.weight, torch.bfloat16)
        assert held is casts.cast(fast.linear_1.weight, torch.bfloat16)
    assert torch.equal(got, want) and torch.equal(again, want)


def test_every_transition_of_the_model_swapped_keeping_its_state():
    model = AlphaFold(AlphaFoldConfig.tiny()).eval()
    names, params = list(model.state_dict()), [id(p) for p in model.parameters()]
    n = sum(type(m) is Transition for m in model.modules())
    ref = copy.deepcopy(model)
    swap_transitions(model)
    assert n > 0 and sum(type(m) is EpilogueReluTransition for m in model.modules()) == n
    assert list(model.state_dict()) == names and [id(p) for p in model.parameters()] == params
    batch = synthetic_batch(None, n_res=12, n_clust=5, n_extra=7, n_templ=1, num_iterations=2)
    with torch.no_grad():
        got = model(batch)["final_atom_positions"]
        want = ref(batch)["final_atom_positions"]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_compiled_with_dynamic_shapes_the_epilogue_stays_one_external_kernel():
    """Inductor keeps `_addmm_activation` as a fallback kernel (cuBLASLt's epilogue on a
    GPU) instead of decomposing it into a matmul and a ReLU it would generate."""
    from torch._inductor.utils import run_and_get_code

    plain, fast = _pair(seed=3)
    torch._dynamo.reset()
    compiled = torch.compile(fast, dynamic=True)
    for n in (11, 19):
        x = torch.randn(2, n, 16)
        with torch.no_grad():
            out, code = run_and_get_code(compiled, x)
            want = plain(x)
        torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)
    assert "aten._addmm_activation" in "\n".join(code)
    torch._dynamo.reset()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (cuBLASLt epilogue)")
def test_cuda_bf16_matches_the_plain_module():
    plain, fast = _pair(seed=4, c=128, device="cuda")
    x = torch.randn(64, 256, 128, device="cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        want, got = plain(x), fast(x)
    assert got.dtype == want.dtype
    torch.testing.assert_close(got.float(), want.float(), atol=2e-2, rtol=2e-2)
