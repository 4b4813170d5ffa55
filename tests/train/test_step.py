"""The shared training step: plain and fused update paths, lr tensors, state restore."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from scalefold.kernels import ComputeDtypeLayerNorm, apply_kernels
from scalefold.losses import AlphaFoldLoss, LossConfig
from scalefold.model import AlphaFold, AlphaFoldConfig
from scalefold.train.config import SpeedConfig
from scalefold.train.graphs import preserved_training_state, signature
from scalefold.train.step import TrainStep, make_adam, set_lr
from scalefold.train.swa import WeightEMA
from scalefold.utils.synthetic import synthetic_batch


def _build(fused: bool, seed: int = 0):
    torch.manual_seed(seed)
    model = AlphaFold(AlphaFoldConfig.tiny()).train()
    params = list(model.parameters())
    opt = make_adam(params, 1e-3, torch.device("cpu"), fused=fused)
    ema = WeightEMA(model, decay=0.9)
    step = TrainStep(model, params, opt, AlphaFoldLoss(LossConfig.mlperf()), ema, model,
                     max_grad_norm=0.1, fused=fused)
    return model, step


@pytest.fixture(scope="module")
def batches():
    cfg = AlphaFoldConfig.tiny()
    return [synthetic_batch(cfg, 16, 8, 16, 2, num_iterations=n + 1, seed=n) for n in (1, 0, 1)]


def test_fused_path_matches_plain_path(batches):
    plain_model, plain = _build(fused=False)
    fused_model, fused = _build(fused=True)
    uc = torch.ones(1)
    for i, b in enumerate(batches):
        torch.manual_seed(100 + i)  # the same dropout masks on both paths
        a = plain(b, uc)
        torch.manual_seed(100 + i)
        f = fused(b, uc)
        torch.testing.assert_close(a.loss, f.loss, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a.grad_norm, f.grad_norm, rtol=1e-5, atol=1e-6)
        assert float(a.grad_norm) > 0.1  # clipping is active, so the scale path is tested
    for p, q in zip(plain_model.parameters(), fused_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)
    for s, t in zip(plain.ema.shadow, fused.ema.shadow, strict=True):
        torch.testing.assert_close(s, t, rtol=1e-4, atol=1e-6)


def test_fused_path_skips_the_update_on_a_non_finite_loss(batches):
    model, step = _build(fused=True)
    uc = torch.ones(1)
    step(batches[0], uc)  # Adam state exists from here on
    with torch.no_grad():
        model.auxiliary_heads.distogram.linear.bias.fill_(float("nan"))
    before = [p.detach().clone() for p in model.parameters()]
    steps_before = [step.optimizer.state[p]["step"].clone() for p in model.parameters()
                    if p in step.optimizer.state]
    out = step(batches[1], uc)
    assert not torch.isfinite(out.terms["distogram"])
    for p, b in zip(model.parameters(), before, strict=True):
        torch.testing.assert_close(p, b, rtol=0, atol=0, equal_nan=True)
    steps_after = [step.optimizer.state[p]["step"] for p in model.parameters()
                   if p in step.optimizer.state]
    for a, b in zip(steps_after, steps_before, strict=True):
        assert torch.equal(a, b)


def test_plain_path_can_stop_before_the_update(batches):
    model, step = _build(fused=False)
    before = [p.detach().clone() for p in model.parameters()]

    def stop(out):
        raise RuntimeError(f"stopped at loss {float(out.loss):.3f}")

    with pytest.raises(RuntimeError, match="stopped at loss"):
        step(batches[0], torch.ones(1), before_update=stop)
    for p, b in zip(model.parameters(), before, strict=True):
        assert torch.equal(p, b)


def test_set_lr_updates_tensor_lr_in_place():
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([p], lr=torch.tensor(1e-3), fused=True)
    lr = opt.param_groups[0]["lr"]
    set_lr(opt, 5e-4)
    assert opt.param_groups[0]["lr"] is lr and float(lr) == pytest.approx(5e-4)
    opt2 = torch.optim.Adam([torch.nn.Parameter(torch.ones(3))], lr=1e-3)
    set_lr(opt2, 2e-4)
    assert opt2.param_groups[0]["lr"] == 2e-4


def test_preserved_state_restores_everything_in_place(batches):
    model, step = _build(fused=True)
    uc = torch.ones(1)
    fresh_model, fresh_step = _build(fused=True)
    addresses = [p.data_ptr() for p in model.parameters()]
    with preserved_training_state(model, step.optimizer, step.ema):
        for b in batches:
            step(b, uc)
    assert [p.data_ptr() for p in model.parameters()] == addresses
    assert step.ema.num_updates == 0
    for p, q in zip(model.parameters(), fresh_model.parameters(), strict=True):
        assert torch.equal(p, q) and p.grad is None
    # Adam state created inside counts as never created: the next step equals a fresh one.
    torch.manual_seed(5)
    a = step(batches[0], uc)
    torch.manual_seed(5)
    b = fresh_step(batches[0], uc)
    assert torch.equal(a.loss, b.loss)
    for p, q in zip(model.parameters(), fresh_model.parameters(), strict=True):
        assert torch.equal(p, q)
    for s, t in zip(step.ema.shadow, fresh_step.ema.shadow, strict=True):
        assert torch.equal(s, t)


def test_preserved_state_restores_existing_adam_state(batches):
    """With Adam's moments already there (a step before, as the single-pass update makes
    them at construction), the steps inside change them and the exit puts them back."""
    model, step = _build(fused=True)
    uc = torch.ones(1)
    step(batches[0], uc)
    before = {id(p): {k: v.clone() for k, v in step.optimizer.state[p].items()}
              for p in model.parameters()}
    shadow = [s.clone() for s in step.ema.shadow]
    with preserved_training_state(model, step.optimizer, step.ema):
        step(batches[1], uc)
        p0 = next(model.parameters())
        assert not torch.equal(step.optimizer.state[p0]["exp_avg_sq"], before[id(p0)]["exp_avg_sq"])
    for p in model.parameters():
        for k, v in step.optimizer.state[p].items():
            assert torch.equal(v, before[id(p)][k]), k
    for s, t in zip(step.ema.shadow, shadow, strict=True):
        assert torch.equal(s, t)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_preserved_state_holds_its_copies_off_the_device():
    """The copies of weights, EMA and Adam's moments are in host memory: the body (the
    captures) is where a run's GPU memory peaks."""
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = AlphaFold(AlphaFoldConfig.tiny()).to(device).train()
    params = list(model.parameters())
    opt = make_adam(params, 1e-3, device, fused=True)
    ema = WeightEMA(model, decay=0.9)
    for p in params:  # Adam's state as the single-pass update creates it
        opt.state[p].update(exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p),
                            step=torch.zeros((), device=device))
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated(device)
    with preserved_training_state(model, opt, ema):
        inside = torch.cuda.memory_allocated(device)
    assert inside - before < 2**20


def test_signature_tells_recycling_counts_apart(batches):
    uc = torch.ones(1)
    assert signature(batches[0], uc) == signature(batches[2], uc)
    assert signature(batches[0], uc) != signature(batches[1], uc)


def test_graphs_need_the_fused_path_and_cuda():
    with pytest.raises(ValueError, match="fused_optimizer"):
        SpeedConfig(cuda_graphs=True)
    with pytest.raises(ValueError, match="CUDA"):
        make_adam([torch.nn.Parameter(torch.ones(2))], 1e-3, torch.device("cpu"),
                  fused=True, capturable=True)


def test_compute_dtype_layer_norm_keeps_streams_in_bf16(batches):
    """LayerNorm output "compute": bf16 out of an fp32 input under autocast (where
    PyTorch's CUDA autocast returns fp32), so the streams leave the Evoformer in bf16;
    the loss stays finite. (CPU autocast's own LayerNorm keeps the input dtype, so the
    fp32 contrast is checked on the GPU, tests/kernels.)"""
    ln = ComputeDtypeLayerNorm.__new__(ComputeDtypeLayerNorm)
    torch.nn.Module.__init__(ln)
    ln.c, ln.eps = 8, 1e-5
    ln.weight, ln.bias = torch.nn.Parameter(torch.ones(8)), torch.nn.Parameter(torch.zeros(8))
    x = torch.randn(3, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = ln(x)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), torch.nn.functional.layer_norm(x, (8,)),
                               rtol=1e-2, atol=1e-2)
    assert ln(x).dtype == torch.float32  # outside autocast: the input's dtype

    torch.manual_seed(0)
    model = AlphaFold(AlphaFoldConfig.tiny()).train()
    apply_kernels(model, attention="eager", layer_norm="eager", layer_norm_output="compute")
    assert sum(isinstance(m, ComputeDtypeLayerNorm) for m in model.modules()) > 10
    seen = {}
    model.evoformer_stack.register_forward_hook(
        lambda mod, args, out: seen.update(m=out[0].dtype, z=out[1].dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batches[1])
    loss, _ = AlphaFoldLoss(LossConfig.mlperf())(
        out, {k: v[..., -1] for k, v in batches[1].items()}, torch.ones(1))
    assert torch.isfinite(loss)
    assert seen == {"m": torch.bfloat16, "z": torch.bfloat16}


def test_speed_config_fast_is_consistent():
    fast = SpeedConfig.preset("h200")
    assert fast.cuda_graphs and fast.fused_optimizer
    assert dataclasses.replace(fast, cuda_graphs=False).fused_optimizer


def test_flat_grad_sync_keeps_the_step_and_its_views(batches):
    """One rank with the flat gradient buffer: the same updates as without it, and the
    gradients stay views of the one buffer across steps (what the split graphs rely on)."""
    from scalefold.train.grad_sync import FlatGradSync

    ref_model, ref = _build(fused=True)
    model, step = _build(fused=True)
    step.grad_sync = FlatGradSync()
    uc = torch.ones(1)
    for i, b in enumerate(batches):
        torch.manual_seed(100 + i)
        a = ref(b, uc)
        torch.manual_seed(100 + i)
        f = step(b, uc)
        torch.testing.assert_close(a.loss, f.loss, rtol=1e-6, atol=1e-7)
    flat = step.grad_sync.flat
    with_grad = [p for p in model.parameters() if p.grad is not None]
    assert flat is not None and sum(p.numel() for p in with_grad) == flat.numel()
    assert all(p.grad.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr()
               for p in with_grad)
    assert len(with_grad) < len(list(model.parameters()))  # unused heads keep None
    for p, q in zip(ref_model.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)
