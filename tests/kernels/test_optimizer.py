"""`SinglePassUpdate`: the clip, Adam and EMA of the fused path in two launches, the same
update as PyTorch's (plain Adam after `clip_grad_norm_`, then the EMA) up to rounding.

Kernel tests (named `*_kernel_*`) run natively on a GPU and, on a CPU, in the
TRITON_INTERPRET=1 subprocess of `test_optimizer_kernels_in_triton_interpreter`.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from scalefold.kernels._triton import triton_usable
from scalefold.kernels.optimizer import SinglePassUpdate
from scalefold.train.step import fused_clip_into_adam
from scalefold.train.swa import WeightEMA
from tests.kernels.conftest import rerun_in_interpreter

# sizes around the block (4096 in the kernel, 64 in these tests), tiny ones, one of 1
SHAPES = [(3, 5), (64,), (65,), (130, 7), (1,), (17, 3, 2), (300,)]


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    m = nn.Module()
    m.ps = nn.ParameterList([nn.Parameter(torch.randn(s)) for s in SHAPES])
    return m.to(_device())


def _adam(params, lr_tensor: bool = False):
    """The run's Adam; `lr_tensor`: the lr a device tensor (capturable on a GPU, as the
    CUDA-graph presets build it)."""
    dev = params[0].device
    lr = torch.tensor(1e-2, device=dev) if lr_tensor else 1e-2
    return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0,
                            capturable=lr_tensor and dev.type == "cuda")


def _grads(model, step: int, scale: float = 1.0, skip: int | None = None) -> None:
    g = torch.Generator().manual_seed(100 + step)
    for i, p in enumerate(model.parameters()):
        p.grad = None if i == skip else (torch.randn(p.shape, generator=g) * scale).to(p.device)


def _reference_step(model, opt, ema, max_norm) -> torch.Tensor:
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    opt.step()
    ema.update(model)
    return norm


def _compare(model_a, model_b, opt_a, opt_b, ema_a, ema_b, tol=2e-6):
    for pa, pb in zip(model_a.parameters(), model_b.parameters(), strict=True):
        assert torch.allclose(pa, pb, rtol=tol, atol=tol)
        sa, sb = opt_a.state.get(pa, {}), opt_b.state[pb]
        if sa:
            for k in ("exp_avg", "exp_avg_sq"):
                assert torch.allclose(sa[k], sb[k], rtol=tol, atol=1e-9)
    for sa, sb in zip(ema_a.shadow, ema_b.shadow, strict=True):
        assert torch.allclose(sa, sb, rtol=tol, atol=tol)


@pytest.mark.parametrize("lr_tensor", [False, True])
def test_single_pass_kernel_matches_clip_adam_and_ema(kern, lr_tensor):
    ref, fast = _model(), _model()
    opt_r = _adam(list(ref.parameters()))
    opt_f = _adam(list(fast.parameters()), lr_tensor)
    ema_r, ema_f = WeightEMA(ref, 0.9), WeightEMA(fast, 0.9)
    up = SinglePassUpdate(list(fast.parameters()), opt_f, ema_f, fast, 0.1, block=64)
    assert up.active
    for step in range(5):
        # large gradients clip (norm >> 0.1); the last step's do not (scale 1e-3)
        scale = 1e-3 if step == 4 else 1.0
        _grads(ref, step, scale, skip=3)
        _grads(fast, step, scale, skip=3)
        n_r = _reference_step(ref, opt_r, ema_r, 0.1)
        n_f = up()
        assert torch.allclose(n_f, n_r.to(n_f.device), rtol=1e-6)
        _compare(ref, fast, opt_r, opt_f, ema_r, ema_f)
    assert ema_f.num_updates == 5 and float(up.step_count) == 5.0
    # a parameter without gradients is not updated by either
    assert torch.equal(list(fast.parameters())[3], list(ref.parameters())[3])


def test_single_pass_kernel_first_ema_update_is_a_copy(kern):
    model = _model()
    opt = _adam(list(model.parameters()))
    ema = WeightEMA(model, 0.9)
    with torch.no_grad():
        for s in ema.shadow:
            s.fill_(123.0)  # not the weights: the first update must overwrite it exactly
    up = SinglePassUpdate(list(model.parameters()), opt, ema, model, 0.1, block=64)
    _grads(model, 0)
    up()
    for p, s in zip(model.parameters(), ema.shadow, strict=True):
        assert torch.equal(p.detach(), s)


def test_single_pass_kernel_skips_a_non_finite_step(kern):
    model = _model()
    opt = _adam(list(model.parameters()))
    ema = WeightEMA(model, 0.9)
    up = SinglePassUpdate(list(model.parameters()), opt, ema, model, 0.1, block=64)
    _grads(model, 0)
    up()
    before = [p.detach().clone() for p in model.parameters()]
    moments = [opt.state[p]["exp_avg"].clone() for p in model.parameters()]
    with torch.no_grad():
        for s in ema.shadow:
            s.zero_()  # so that the two blends below give 0.19 of the weights
    for guard, poison in ((torch.tensor([1.0, float("nan")]), False), (None, True)):
        _grads(model, 1)
        if poison:
            list(model.parameters())[2].grad[0] = float("inf")
        norm = up(None if guard is None else guard.to(_device()))
        assert float(up.step_count) == 1.0  # not counted
        for p, b, m in zip(model.parameters(), before, moments, strict=True):
            assert torch.equal(p.detach(), b) and torch.equal(opt.state[p]["exp_avg"], m)
        if poison:
            assert not torch.isfinite(norm)
    # the EMA still blends toward the unchanged weights, as after fused Adam's skip
    for s, p in zip(ema.shadow, before, strict=True):
        assert torch.allclose(s, 0.19 * p, rtol=1e-6, atol=1e-9)


def test_single_pass_kernel_state_dict_round_trip(kern):
    """Adam's state dict keeps its form; loading it re-links the shared step and the
    moments' addresses, and the next steps continue as an uninterrupted run."""
    a, b = _model(), _model()
    opt_a, opt_b = _adam(list(a.parameters())), _adam(list(b.parameters()))
    ema_a, ema_b = WeightEMA(a, 0.9), WeightEMA(b, 0.9)
    up_a = SinglePassUpdate(list(a.parameters()), opt_a, ema_a, a, 0.1, block=64)
    up_b = SinglePassUpdate(list(b.parameters()), opt_b, ema_b, b, 0.1, block=64)
    for step in range(2):
        _grads(a, step)
        _grads(b, step)
        up_a()
        up_b()
    sd = copy.deepcopy(opt_a.state_dict())
    assert all(float(s["step"]) == 2.0 for s in sd["state"].values())
    opt_b.load_state_dict(sd)  # new tensors: the hook links them again
    st = [opt_b.state[p] for p in b.parameters()]
    assert all(s["step"] is up_b.step_count for s in st) and float(up_b.step_count) == 2.0
    _grads(a, 2)
    _grads(b, 2)
    up_a()
    up_b()
    _compare(a, b, opt_a, opt_b, ema_a, ema_b, tol=0)


def test_single_pass_kernel_refuses_what_it_does_not_implement(kern):
    model = _model()
    ema = WeightEMA(model, 0.9)
    params = list(model.parameters())
    wd = torch.optim.Adam(params, lr=1e-3, weight_decay=0.1)
    with pytest.raises(ValueError, match="plain Adam"):
        SinglePassUpdate(params, wd, ema, model, 0.1)
    with pytest.raises(ValueError, match="in order"):
        SinglePassUpdate(params[::-1], _adam(params[::-1]), ema, model, 0.1)


def test_inactive_without_triton_here():
    """Where Triton cannot run (CPU, no interpreter), the step keeps PyTorch's path."""
    if triton_usable(torch.zeros(1, device=_device())):
        pytest.skip("Triton runs here")
    model = _model()
    up = SinglePassUpdate(list(model.parameters()), _adam(list(model.parameters())),
                          WeightEMA(model, 0.9), model, 0.1)
    assert not up.active


def test_single_pass_kernel_in_the_train_step(kern, tmp_path):
    """The trainer's step with `single_pass_update` makes the update of the fused path:
    after a step of the tiny model the weights and the EMA agree to rounding (a few ulp;
    Adam amplifies such differences in weights whose gradients are near its eps, so
    later steps are compared by their losses)."""
    from scalefold.train.build import build_step
    from scalefold.train.config import SpeedConfig, TrainConfig
    from scalefold.train.topology import Topology
    from scalefold.utils.synthetic import synthetic_batch

    dev = _device()
    built = []
    for single in (False, True):
        speed = SpeedConfig(fused_optimizer=True, single_pass_update=single)
        cfg = TrainConfig(data_dir=tmp_path, output_dir=tmp_path, preset="tiny",
                          precision="fp32", speed=speed, seed=7)
        built.append(build_step(cfg, dev, Topology(rank=0, world_size=1, num_eval_ranks=0),
                                eval_copy=False))
    assert built[0].step.single_pass is None and built[1].step.single_pass is not None
    batch = synthetic_batch(None, n_res=12, n_clust=4, n_extra=6, n_templ=2,
                            num_iterations=1)
    batch = {k: v.to(dev) for k, v in batch.items()}
    uc = torch.tensor(True, device=dev)
    init = [p.detach().clone() for p in built[1].model.parameters()]
    for step in range(3):
        outs = []
        for b in built:
            torch.manual_seed(0)
            outs.append(b.step(batch, uc))
        assert torch.allclose(outs[1].loss, outs[0].loss, rtol=1e-4)
        assert torch.allclose(outs[1].grad_norm, outs[0].grad_norm, rtol=1e-4)
        if step == 0:
            b0, b1 = built
            for p0, p1 in zip(b0.model.parameters(), b1.model.parameters(), strict=True):
                assert torch.allclose(p0, p1, rtol=1e-6, atol=1e-8)
            for s0, s1 in zip(b0.swa.shadow, b1.swa.shadow, strict=True):
                assert torch.allclose(s0, s1, rtol=1e-6, atol=1e-8)
            assert not all(torch.equal(p1, i1) for p1, i1 in
                           zip(b1.model.parameters(), init, strict=True))  # they moved


def test_single_pass_kernel_captures_with_a_table_reserved_before(monkeypatch):
    """A captured update reads its gradient table at every replay, so the table must be
    memory the graphs never reuse: one allocated before the capture
    (`reserve_capture_table`), not during it (from the graphs' pool, where the replay
    wrote activations over it: an illegal address on the H100, 2026-12-05 calls A, E).
    `fill_captured` then writes the capture's gradient addresses into it and keeps it."""
    import gc
    import weakref

    model = _model()
    params = list(model.parameters())
    up = SinglePassUpdate(params, _adam(params), WeightEMA(model, 0.9), model, 0.1, block=64)
    if not up.active:
        pytest.skip("Triton cannot run here")
    _grads(model, 0, skip=3)
    monkeypatch.setattr(up, "_capturing", lambda: True)  # as inside torch.cuda.graph
    with pytest.raises(RuntimeError, match="reserved before the capture"):
        up._grad_table()
    up.reserve_capture_table()
    reserved = weakref.ref(up._reserved[-1])
    table = up._grad_table()
    assert table is reserved() and not up._reserved  # the reserved one, taken
    del table
    up.fill_captured()
    gc.collect()
    expected = [0 if p.grad is None else p.grad.data_ptr() for p in params]
    assert reserved() is not None and reserved().tolist() == expected  # written and kept
    assert expected[3] == 0 and not up._pending


def test_optimizer_kernels_in_triton_interpreter():
    """CPU: rerun this module's kernel tests in a fresh process under TRITON_INTERPRET=1."""
    rerun_in_interpreter(__file__, "single_pass_kernel")


def test_fused_clip_path_unchanged_without_the_field():
    """The fused path without the field still clips through Adam's grad_scale."""
    model = _model()
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=1e-2, eps=1e-6, fused=True)
    _grads(model, 0)
    norm = fused_clip_into_adam(opt, params, 0.1)
    assert float(opt.grad_scale) == pytest.approx(max(1.0, (float(norm) + 1e-6) / 0.1))
