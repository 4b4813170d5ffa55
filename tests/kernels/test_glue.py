"""`compile_structure_module`: one layer of the structure module compiled and run eight
times, the same numbers (aot_eager on the CPU; the GPU preset test runs inductor)."""

from __future__ import annotations

import pytest
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


def _divisibility_spy(record: list):
    """A torch.compile backend that records, for each graph and each symbolic input size
    (by the value it was traced at), whether the compile's shape environment can prove it,
    and its square, a multiple of 16 (what inductor asks before giving a Triton kernel its
    divisibility hints), and runs the graph as traced."""
    from torch._inductor.sizevars import SizeVarAllocator

    def backend(gm, example_inputs):
        shape_env = torch._guards.detect_fake_mode(example_inputs).shape_env
        sizes = SizeVarAllocator(shape_env)
        syms = set()
        for t in example_inputs:
            if isinstance(t, torch.Tensor):
                syms |= {s.node.expr for s in t.shape if isinstance(s, torch.SymInt)}
            elif isinstance(t, torch.SymInt):
                syms.add(t.node.expr)
        record.append({int(shape_env.var_to_val[s]): (sizes.statically_known_multiple_of(s, 16),
                                                       sizes.statically_known_multiple_of(s**2, 16))
                       for s in syms})
        return gm

    return backend


def test_aligned_lengths_give_dynamic_compiles_the_divisibility():
    """`compile_glue(..., aligned_lengths=True)` with dynamic shapes: the compile knows
    the bucketed length and its square are multiples of 16 (without the field it does
    not), one graph serves three bucketed lengths, and the outputs are the uncompiled
    module's; run eagerly the mixin changes nothing."""
    from scalefold.kernels.glue import GLUE_MODULES, AlignedLengths, compile_glue
    from scalefold.model.pair import TriangleMultiplication

    torch.manual_seed(0)
    plain = TriangleMultiplication(16, 8, outgoing=True).eval()
    for p in plain.parameters():
        torch.nn.init.normal_(p, std=0.3)
    for aligned in (False, True):
        torch._dynamo.reset()
        record: list = []
        mod = TriangleMultiplication(16, 8, outgoing=True).eval()
        mod.load_state_dict(plain.state_dict())
        compile_glue(mod, modules=GLUE_MODULES, aligned_lengths=aligned, dynamic=True,
                     backend=_divisibility_spy(record))
        assert isinstance(mod, AlignedLengths) == aligned
        with torch.no_grad():
            for n in (32, 48, 80):
                z, mask = torch.randn(1, n, n, 16), (torch.rand(1, n, n) > 0.2).float()
                assert torch.allclose(mod(z, mask), plain(z, mask), atol=1e-5)
        assert len(record) == 1 and list(record[0]) == [32]  # one graph, three lengths
        assert record[0][32] == ((True, True) if aligned else (False, False))
    # eagerly (not compiling) the mixin adds nothing: the same bits
    eager = TriangleMultiplication(16, 8, outgoing=True).eval()
    eager.load_state_dict(plain.state_dict())
    compile_glue(eager, modules=GLUE_MODULES, aligned_lengths=True, dynamic=True)
    z, mask = torch.randn(1, 24, 24, 16), torch.ones(1, 24, 24)
    with torch.no_grad():
        assert torch.equal(eager._call_impl(z, mask), plain(z, mask))


def test_aligned_structure_layer_compiles_once_for_three_lengths():
    """`compile_structure_module(..., dynamic=True, aligned_lengths=True)` (the
    evaluation's `eval_compile_structure_module` with `eval_aligned_lengths`): the layer's
    compile knows the bucketed length and its square are multiples of 16, one graph set
    serves three lengths, and the module's outputs are the eager ones (aot_eager: the
    same ATen ops)."""
    torch.manual_seed(0)
    plain = AlphaFold(AlphaFoldConfig.tiny()).eval().structure_module
    sm = AlphaFold(AlphaFoldConfig.tiny()).eval().structure_module
    sm.load_state_dict(plain.state_dict())
    torch._dynamo.reset()
    record: list = []
    compile_structure_module(sm, dynamic=True, aligned_lengths=True,
                             backend=_divisibility_spy(record))
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
    # the first layer and the seven after it (a graph each), not one per length; in each
    # the length proven aligned, the other symbolic sizes (not multiples of 16) not
    assert len(record) == 2
    for graph in record:
        assert graph[32] == (True, True)
        assert all(p == (False, False) for size, p in graph.items() if size % 16)
    torch._dynamo.reset()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_aligned_lengths_give_inductors_kernels_divisibility_hints():
    """On a GPU, inductor with dynamic shapes: with the aligned lengths stated, the
    generated Triton kernels carry more of Triton's divisibility hints, and the module's
    outputs are those of the compile without them (the same kernels' arithmetic)."""
    from torch._inductor.utils import run_and_get_code

    from scalefold.kernels.glue import GLUE_MODULES, compile_glue
    from scalefold.model.pair import TriangleMultiplication

    torch.manual_seed(0)
    plain = TriangleMultiplication(128, 128, outgoing=True).cuda().eval()
    z = torch.randn(1, 96, 96, 128, device="cuda")
    mask = torch.ones(1, 96, 96, device="cuda")
    hints, outs = [], []
    for aligned in (False, True):
        torch._dynamo.reset()
        mod = TriangleMultiplication(128, 128, outgoing=True).cuda().eval()
        mod.load_state_dict(plain.state_dict())
        compile_glue(mod, modules=GLUE_MODULES, aligned_lengths=aligned, dynamic=True)
        with torch.no_grad():
            out, code = run_and_get_code(mod, z, mask)
        hints.append(sum(c.count("tt.divisibility") for c in code))
        outs.append(out)
    assert hints[1] > hints[0], hints
    assert torch.allclose(outs[0], outs[1], rtol=1e-5, atol=1e-5)
    torch._dynamo.reset()
