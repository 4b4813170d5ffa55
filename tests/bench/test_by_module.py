"""The forward's time by module: ranges wrap the blocks' parts, never nest, and go away."""

from __future__ import annotations

import torch
from torch.profiler import ProfilerActivity, profile

from scalefold.bench.by_module import (
    PREFIX,
    format_module_breakdown,
    module_breakdown,
    module_ranges,
    profiled_modules,
)
from scalefold.model import AlphaFold, AlphaFoldConfig
from scalefold.utils.synthetic import synthetic_batch


def test_the_parts_of_every_block_and_the_top_level_modules():
    model = AlphaFold(AlphaFoldConfig.tiny())
    names = {n for n, _ in profiled_modules(model)}
    assert "evoformer_stack.blocks.*.core.tri_att_start" in names
    assert "evoformer_stack.blocks.*.msa_att_row" in names
    assert "evoformer_stack.blocks.*.core" not in names  # a container: its parts instead
    assert {"structure_module", "input_embedder", "template_pointwise_attention"} <= names
    assert not any(n.startswith("structure_module.") for n in names)
    blocks = len(model.evoformer_stack.blocks)
    wrapped = [m for n, m in profiled_modules(model) if n.endswith(".core.tri_mul_out")]
    assert len(wrapped) >= blocks  # one per block (and per extra-MSA block)


def test_ranges_attribute_the_forward_and_leave_no_hooks():
    torch.manual_seed(0)
    model = AlphaFold(AlphaFoldConfig.tiny()).eval()
    batch = synthetic_batch(None, n_res=12, n_clust=5, n_extra=7, n_templ=1, num_iterations=1)
    with profile(activities=[ProfilerActivity.CPU]) as prof, module_ranges(model):
        with torch.no_grad():
            model(batch)
    rows = module_breakdown(prof)
    names = [r[0] for r in rows]
    assert "evoformer_stack.blocks.*.core.tri_att_start" in names
    assert "structure_module" in names
    # every range was entered once per block per iteration, and none holds another
    for evt in prof.events():
        if evt.name.startswith(PREFIX):
            stack = list(evt.cpu_children)
            while stack:
                c = stack.pop()
                assert not c.name.startswith(PREFIX), (evt.name, c.name)
                stack += c.cpu_children
    tri = next(r for r in rows if r[0] == "evoformer_stack.blocks.*.core.tri_att_start")
    assert tri[3] > 0.0  # host time charged to it
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    table = format_module_breakdown(rows, total_ms=10.0, total_launches=5)
    assert "(outside these modules)" in table and "tri_att_start" in table


def test_device_copies_of_the_ranges_are_not_counted_twice():
    """On a GPU the profiler also lists each range as a device-side annotation whose
    device time is its span: only the host-side range is charged."""
    from types import SimpleNamespace

    from torch.autograd import DeviceType

    kernel = SimpleNamespace(name="k")
    host = SimpleNamespace(name=PREFIX + "a", device_type=DeviceType.CPU,
                           device_time_total=2000.0, cpu_time_total=500.0,
                           kernels=[kernel, kernel], cpu_children=[])
    annotation = SimpleNamespace(name=PREFIX + "a", device_type=DeviceType.CUDA,
                                 device_time_total=3000.0, cpu_time_total=0.0,
                                 kernels=[], cpu_children=[])
    prof = SimpleNamespace(events=lambda: [host, annotation])
    assert module_breakdown(prof) == [("a", 2.0, 2, 0.5)]


def test_a_table_that_charges_more_than_the_profile_says_so():
    rows = [("a", 6.0, 30, 1.0), ("b", 5.0, 20, 1.0)]
    assert "NOT CONSISTENT" not in format_module_breakdown(rows, total_ms=12.0,
                                                           total_launches=60)
    table = format_module_breakdown(rows, total_ms=12.0, total_launches=40)
    assert "NOT CONSISTENT: the ranges hold 50 launches" in table
    assert "NOT CONSISTENT" in format_module_breakdown(rows, total_ms=10.0, total_launches=60)


def test_module_flops_charge_each_module_its_own_matmuls():
    """The FLOPs charged to the modules plus those outside them are the forward's count;
    a triangle attention's row is what that module alone counts, once per block; no hook
    is left; the table gains the TFLOP/s column."""
    from torch.utils.flop_counter import FlopCounterMode

    from scalefold.bench.by_module import module_flops

    torch.manual_seed(0)
    model = AlphaFold(AlphaFoldConfig.tiny()).eval()
    batch = synthetic_batch(None, n_res=12, n_clust=5, n_extra=7, n_templ=1, num_iterations=2)

    def run():
        with torch.no_grad():
            model(batch)

    flops = module_flops(model, run)
    with FlopCounterMode(display=False) as whole:
        run()
    assert 0 < sum(flops.values()) <= whole.get_total_flops()
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    name = "evoformer_stack.blocks.*.core.tri_att_start"
    block = model.evoformer_stack.blocks[0].core.tri_att_start
    calls = []
    handle = block.register_forward_hook(lambda _m, args, _o: calls.append(args))
    run()
    handle.remove()
    with torch.no_grad(), FlopCounterMode(display=False) as one:
        block(*calls[0])
    # two iterations, every block of the stack alike
    assert flops[name] == 2 * len(model.evoformer_stack.blocks) * one.get_total_flops()
    table = format_module_breakdown([(name, 2.0, 10, 1.0)], 4.0, 20, flops)
    assert "TFLOP/s" in table.splitlines()[0]
    assert f"{flops[name] / 1e9 / 2.0:8.1f}" in table.splitlines()[1]


def test_a_module_compiled_in_place_gets_its_range_around_the_compiled_call():
    """`compile_glue` compiles modules in place, whose hooks then run inside the compiled
    code where Dynamo drops profiler ranges: the range goes around the compiled call, and
    the compiled call is the module's own again afterwards."""
    from scalefold.kernels import compile_glue

    torch.manual_seed(0)
    model = AlphaFold(AlphaFoldConfig.tiny()).eval()
    compile_glue(model, dynamic=False, backend="eager")
    transition = model.evoformer_stack.blocks[0].core.msa_transition
    before = transition._compiled_call_impl
    assert before is not None
    batch = synthetic_batch(None, n_res=12, n_clust=5, n_extra=7, n_templ=1, num_iterations=1)
    with profile(activities=[ProfilerActivity.CPU]) as prof, module_ranges(model):
        with torch.no_grad():
            model(batch)
    names = {r[0] for r in module_breakdown(prof)}
    assert "evoformer_stack.blocks.*.core.msa_transition" in names
    assert "evoformer_stack.blocks.*.core.tri_mul_out" in names
    assert "evoformer_stack.blocks.*.msa_att_row" in names  # not compiled: hooks
    assert transition._compiled_call_impl is before
    torch._dynamo.reset()
