"""Device time and kernel launches of a forward, by the module that launched them.

The kernel-family table says what kind of kernel the time goes to; this one says which
part of the network launches it: every child of a stack's blocks (folded over the
blocks: `evoformer.blocks.*.tri_att_start`) and every top-level module without blocks of
its own (embedders, structure module, heads). Each is wrapped in a profiler range
(`record_function`) by forward hooks, added from outside for the profiled forward only;
the device time and the launches of the kernels under a range are charged to it. Ranges
never nest (a block child's own children are not wrapped), and what falls outside every
range (the stacks' own glue) is reported as the remainder.

Forward only: backward kernels run on autograd's threads, outside the hooks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn
from torch.autograd import DeviceType
from torch.autograd.profiler import record_function

PREFIX = "module::"


def profiled_modules(model: nn.Module, containers: tuple[str, ...] = ("core",),
                     ) -> list[tuple[str, nn.Module]]:
    """(folded name, module) of what `module_ranges` wraps: each child of every block of
    a stack (a top-level module with a `blocks` list), children of the block parts named
    in `containers` (the Evoformer's pair `core`) instead of the part itself, and every
    other top-level module whole."""
    out = []
    for top, mod in model.named_children():
        blocks = getattr(mod, "blocks", None)
        if not isinstance(blocks, nn.ModuleList):
            out.append((top, mod))
            continue
        for block in blocks:
            for part, child in block.named_children():
                if part in containers:
                    out += [(f"{top}.blocks.*.{part}.{n}", c) for n, c in child.named_children()]
                else:
                    out.append((f"{top}.blocks.*.{part}", child))
    return out


@contextlib.contextmanager
def module_ranges(model: nn.Module) -> Iterator[None]:
    """Each module of `profiled_modules` runs its forward inside a profiler range named
    `module::<folded name>`; the hooks are removed on exit.

    A module compiled in place (`nn.Module.compile`, as `compile_glue` does) runs its
    hooks inside its compiled code, where Dynamo drops profiler ranges: such a module's
    range is opened around the compiled call instead. A module inside a compiled parent has
    no range of its own; its kernels fall to the remainder."""
    handles = []
    compiled: list[tuple[nn.Module, object]] = []
    for name, mod in profiled_modules(model):
        call = getattr(mod, "_compiled_call_impl", None)
        if call is not None:
            def ranged(*args, _call=call, _name=name, **kwargs):
                with record_function(PREFIX + _name):
                    return _call(*args, **kwargs)

            compiled.append((mod, call))
            mod._compiled_call_impl = ranged
            continue
        open_ranges: list = []

        def pre(_m, _args, name=name, open_ranges=open_ranges):
            r = record_function(PREFIX + name)
            r.__enter__()
            open_ranges.append(r)

        def post(_m, _args, _out, open_ranges=open_ranges):
            open_ranges.pop().__exit__(None, None, None)

        handles.append(mod.register_forward_pre_hook(pre))
        handles.append(mod.register_forward_hook(post))
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        for mod, call in compiled:
            mod._compiled_call_impl = call


def module_flops(model: nn.Module, run) -> dict[str, int]:
    """Model FLOPs (FlopCounterMode: matmul-class ops) charged to each folded name of
    `profiled_modules`, over whatever `run()` does with `model`. Run on the eager model
    (the counter does not see inside Triton kernels), e.g. on the meta device, beside a
    profile of the fast one: the swaps keep the module names, so the rows match."""
    from torch.utils.flop_counter import FlopCounterMode

    totals: dict[str, int] = {}
    handles = []
    with FlopCounterMode(display=False) as counter:
        for name, mod in profiled_modules(model):
            starts: list[int] = []

            def pre(_m, _args, starts=starts):
                starts.append(counter.get_total_flops())

            def post(_m, _args, _out, name=name, starts=starts):
                totals[name] = totals.get(name, 0) + counter.get_total_flops() - starts.pop()

            handles.append(mod.register_forward_pre_hook(pre))
            handles.append(mod.register_forward_hook(post))
        try:
            run()
        finally:
            for h in handles:
                h.remove()
    return totals


def _launches(evt) -> int:
    return len(evt.kernels) + sum(_launches(c) for c in evt.cpu_children)


def module_breakdown(prof) -> list[tuple[str, float, int, float]]:
    """(module, device ms, kernel launches, host ms) summed over the ranges of one
    profile, largest device time first."""
    rows: dict[str, list[float]] = {}
    for evt in prof.events():
        # Only the host's range: on a GPU the profiler also draws each range on the
        # device's timeline (a user annotation of the same name), whose span would count
        # the range's kernels a second time, gaps included.
        if not evt.name.startswith(PREFIX) or evt.device_type != DeviceType.CPU:
            continue
        r = rows.setdefault(evt.name[len(PREFIX):], [0.0, 0, 0.0])
        r[0] += evt.device_time_total / 1e3
        r[1] += _launches(evt)
        r[2] += evt.cpu_time_total / 1e3
    return sorted(((n, ms, int(k), cpu) for n, (ms, k, cpu) in rows.items()),
                  key=lambda r: (-r[1], -r[3]))


def format_module_breakdown(rows: list[tuple[str, float, int, float]],
                            total_ms: float, total_launches: int,
                            flops: dict[str, int] | None = None) -> str:
    """The table, with the remainder outside every range against the profile's totals;
    with `flops` (`module_flops` of the same forward), each module's TFLOP/s too."""
    lines = [f"{'module (forward)':52s} {'device ms':>10s} {'share':>7s} {'launches':>9s} "
             f"{'host ms':>9s}" + (f" {'GFLOP':>10s} {'TFLOP/s':>8s}" if flops else "")]
    denom = total_ms or 1.0
    for name, ms, k, cpu in rows:
        line = f"{name[:52]:52s} {ms:10.2f} {100 * ms / denom:6.1f}% {k:9d} {cpu:9.2f}"
        if flops:
            f = flops.get(name, 0)
            line += f" {f / 1e9:10.1f} {f / 1e9 / ms if ms > 0 else 0.0:8.1f}"
        lines.append(line)
    ms_in = sum(r[1] for r in rows)
    k_in = sum(r[2] for r in rows)
    lines.append(f"{'(outside these modules)':52s} {total_ms - ms_in:10.2f} "
                 f"{100 * (total_ms - ms_in) / denom:6.1f}% {total_launches - k_in:9d}")
    if k_in > total_launches or ms_in > 1.005 * total_ms:
        # Seen on the H200 (2026-12-04 call 28): 40,330 launches in the ranges against
        # 28,193 kernels. A table that charges more than the profile holds is not a basis
        # for decisions; say so where it is read.
        lines.append(f"NOT CONSISTENT: the ranges hold {k_in} launches and {ms_in:.1f} ms "
                     f"against the profile's {total_launches} kernels and {total_ms:.1f} ms "
                     "(kernels charged to more than one range); use the kernel table")
    return "\n".join(lines)
