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


def _graph_counter(record: list):
    """A torch.compile backend that counts the graphs it is given and runs each as traced."""

    def backend(gm, example_inputs):
        record.append(gm)
        return gm

    return backend


def test_dynamic_structure_layer_compiles_once_for_three_lengths():
    """`compile_structure_module(..., dynamic=True)` (the evaluation's
    `eval_compile_structure_module`): one graph set serves three chain lengths, and the
    module's outputs are the eager ones (aot_eager: the same ATen ops)."""
    torch.manual_seed(0)
    plain = AlphaFold(AlphaFoldConfig.tiny()).eval().structure_module
    sm = AlphaFold(AlphaFoldConfig.tiny()).eval().structure_module
    sm.load_state_dict(plain.state_dict())
    torch._dynamo.reset()
    record: list = []
    compile_structure_module(sm, dynamic=True, backend=_graph_counter(record))
    c = sm.cfg
    # (lengths unlike the tiny model's widths, which a first trace would specialise on)
    for n in (32, 80, 96):
        g = torch.Generator().manual_seed(n)
        s, z = torch.randn(1, n, c.c_s, generator=g), torch.randn(1, n, n, c.c_z, generator=g)
        aatype, mask = torch.randint(0, 20, (1, n), generator=g), torch.ones(1, n)
        with torch.no_grad():
            got, ref = sm(s, z, aatype, mask), plain(s, z, aatype, mask)
        for k in ref:
            assert torch.equal(got[k], ref[k]), k
    # the first layer and the seven after it (a graph each), not one per length
    assert len(record) == 2
    torch._dynamo.reset()


