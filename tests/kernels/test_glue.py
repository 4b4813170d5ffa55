"""`compile_structure_module`: one layer of the structure module compiled and run eight
times, the same numbers (aot_eager on the CPU; the GPU preset test runs inductor)."""

from __future__ import annotations

import torch

from scalefold.data.selection import last_iteration
from scalefold.kernels import apply_speedups, compile_structure_module
from scalefold.losses import AlphaFoldLoss, LossConfig
from scalefold.model import AlphaFold, AlphaFoldConfig
from scalefold.model.structure_module import StructureModule
from scalefold.train.config import SpeedConfig
from scalefold.utils.synthetic import synthetic_batch


def _loss_and_grads(model, batch):
    loss, _ = AlphaFoldLoss(LossConfig.mlperf())(model(batch), last_iteration(batch), True)
    loss.backward()
    return loss.detach(), [p.grad for p in model.parameters()]


def test_compiled_structure_layer_has_eagers_numbers_without_breaks():
    """Without dropout: the loss and every gradient bit for bit (aot_eager runs the same
    ATen ops). One layer is traced whole (no graph breaks) and serves all eight: the first
    layer, whose incoming translations need no gradient, gets a graph of its own."""
    from torch._dynamo.utils import counters

    batch = synthetic_batch(None, n_res=12, n_clust=4, n_extra=6, n_templ=1, num_iterations=1)
    results = []
    for compiled in (False, True):
        torch._dynamo.reset()
        counters.clear()
        torch.manual_seed(0)
        model = AlphaFold(AlphaFoldConfig.tiny()).eval()
        if compiled:
            compile_structure_module(model, backend="aot_eager")
        results.append(_loss_and_grads(model, batch))
    assert 1 <= counters["stats"]["unique_graphs"] <= 2 and not counters["graph_break"]
    (l0, g0), (l1, g1) = results
    assert torch.equal(l0, l1)
    for a, b in zip(g0, g1, strict=True):
        assert (a is None) == (b is None) and (a is None or torch.equal(a, b))
    torch._dynamo.reset()


def test_compiled_structure_module_keeps_its_dropout():
    """In training mode the compiled module still drops out: two seeds, two outputs."""
    batch = synthetic_batch(None, n_res=12, n_clust=4, n_extra=6, n_templ=1, num_iterations=1)
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = AlphaFold(AlphaFoldConfig.tiny()).train()
    compile_structure_module(model, backend="aot_eager")
    singles = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        with torch.no_grad():
            out = model.structure_module(torch.randn(1, 12, model.config.structure_module.c_s,
                                                     generator=torch.Generator().manual_seed(3)),
                                         torch.ones(1, 12, 12, model.config.structure_module.c_z),
                                         batch["aatype"][..., 0], batch["seq_mask"][..., 0])
        singles.append(out["sm_single"])
    assert torch.isfinite(singles[0]).all() and not torch.equal(singles[0], singles[1])
    torch._dynamo.reset()


def test_the_field_compiles_the_structure_module_alone():
    model = AlphaFold(AlphaFoldConfig.tiny())
    apply_speedups(model, SpeedConfig(compile_structure_module=True), "fp32")
    assert not any(m._compiled_call_impl is not None for m in model.modules())
    layers = [m for m in model.modules() if "layer" in vars(m)]
    assert layers == [model.structure_module] and isinstance(layers[0], StructureModule)
    assert hasattr(vars(layers[0])["layer"], "_torchdynamo_orig_callable")


# `compile_template_attention`: the template pointwise attention compiled, its core as
# broadcast float32 sums


def test_broadcast_core_matches_the_plain_core():
    from scalefold.kernels.cores import BroadcastAttentionCore
    from scalefold.model.attention import AttentionCore

    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 5, 5, 4, 1, 8, generator=g)  # [*, N, N, H, Q = 1, c]
    k = torch.randn(2, 5, 5, 4, 3, 8, generator=g)  # K = 3 templates
    v = torch.randn(2, 5, 5, 4, 3, 6, generator=g)
    bias = torch.tensor([0.0, -1e9, 0.0]).expand(2, 1, 1, 1, 1, 3)  # template 2 masked
    outs, grads = [], []
    for core in (AttentionCore(), BroadcastAttentionCore()):
        ins = [t.clone().requires_grad_() for t in (q, k, v)]
        o = core(*ins, [bias], scale=0.3)
        o.square().sum().backward()
        outs.append(o)
        grads.append(torch.cat([t.grad.flatten() for t in ins]))
    assert torch.allclose(outs[1], outs[0], rtol=1e-5, atol=1e-6)
    assert torch.allclose(grads[1], grads[0], rtol=1e-5, atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 in, bf16 out, as the matmul
        o = BroadcastAttentionCore()(q.bfloat16(), k.bfloat16(), v.bfloat16(), [bias])
    assert o.dtype == torch.bfloat16


def test_compiled_template_attention_has_the_plain_numbers():
    from scalefold.kernels import compile_template_attention
    from scalefold.kernels.cores import BroadcastAttentionCore
    from scalefold.model.template import TemplatePointwiseAttention

    torch._dynamo.reset()
    torch.manual_seed(0)
    plain = AlphaFold(AlphaFoldConfig.tiny())
    with torch.no_grad():  # the "final" init zeroes the output projections: give values
        for p in plain.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    fast = AlphaFold(AlphaFoldConfig.tiny())
    fast.load_state_dict(plain.state_dict())
    compile_template_attention(fast, backend="aot_eager", fullgraph=True)
    tpa = [m for m in fast.modules() if isinstance(m, TemplatePointwiseAttention)]
    assert len(tpa) == 1 and tpa[0]._compiled_call_impl is not None
    assert isinstance(tpa[0].mha.core, BroadcastAttentionCore)
    assert sum(m._compiled_call_impl is not None for m in fast.modules()) == 1
    batch = synthetic_batch(None, n_res=12, n_clust=4, n_extra=6, n_templ=2,
                            num_iterations=2)
    torch.manual_seed(1)
    l0, g0 = _loss_and_grads(plain, batch)
    torch.manual_seed(1)
    l1, g1 = _loss_and_grads(fast, batch)
    assert torch.allclose(l1, l0, rtol=1e-5)
    for a, b in zip(g1, g0):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    torch._dynamo.reset()


def test_the_template_field_leaves_the_evaluation_copy_alone(tmp_path):
    from scalefold.kernels.cores import BroadcastAttentionCore
    from scalefold.train.build import build_step
    from scalefold.train.config import TrainConfig
    from scalefold.train.topology import Topology

    cfg = TrainConfig(data_dir=tmp_path, output_dir=tmp_path, preset="tiny",
                      speed=SpeedConfig(compile_template_attention=True))
    built = build_step(cfg, torch.device("cpu"), Topology(rank=0, world_size=1, num_eval_ranks=0))
    assert any(isinstance(m, BroadcastAttentionCore) for m in built.model.modules())
    assert not any(isinstance(m, BroadcastAttentionCore) for m in built.eval_model.modules())
