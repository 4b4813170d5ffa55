"""The one way a speed-up changes a built model: switch a module's class.

Every speed-up in `scalefold.kernels` is a subclass of a plain model module that computes
the same function differently (a Triton kernel, another layout, a recomputed backward, an
fp32 region), or a mixin that becomes such a subclass. `swap` sets `module.__class__` to
it on every matching module, in place, the way `parallelize_dap` and FSDP2's
`fully_shard` do. The module keeps its Parameter objects (optimizer state carries over),
buffers, submodules, hooks, state-dict keys and `isinstance` identity, and
`copy.deepcopy` copies it with the new class.

A replacement class may read attributes the plain class lacks (a launch configuration,
an output dtype); `swap` sets them from its keyword arguments.

The order in which a model's speed-ups are applied is written once, in
`scalefold.kernels.apply_speedups`; `torch.compile` of glue blocks (`nn.Module.compile`)
comes last, since it traces whatever forward the classes then have.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from torch import nn


@functools.cache
def _mixed(mixin: type, base: type) -> type:
    """`mixin` placed before `base` in one class (cached: one class per pair)."""
    return type(f"{mixin.__name__}{base.__name__}", (mixin, base), {"__module__": mixin.__module__})


def swap(model: nn.Module, match: type[nn.Module], new: type, *,
         alternatives: tuple[type, ...] = (),
         where: Callable[[nn.Module], bool] | None = None, **attrs: Any) -> int:
    """Switch the class of modules of `model` (itself included) to `new`; returns how many.

    - `new` a subclass of `match` (or `match` itself): modules whose class is exactly
      `match`, `new` or one of `alternatives` (other implementations of the same module
      that `new` may replace) become `new`. Other subclasses of `match` are left alone,
      so a different kind of replacement applied earlier is never silently undone.
    - `new` a mixin (not an `nn.Module`): every instance of `match`, whatever its current
      class, gets `new` in front of that class, once.

    `where`: only modules for which it is true. `attrs` are set on every switched module.
    """
    mixin = not issubclass(new, nn.Module)
    if not mixin and not issubclass(new, match):
        raise TypeError(f"{new.__name__} is not a subclass of {match.__name__}")
    count = 0
    for m in model.modules():
        cls = type(m)
        matched = isinstance(m, match) if mixin else (
            cls is match or cls is new or cls in alternatives)
        if not matched or (where is not None and not where(m)):
            continue
        if mixin and not isinstance(m, new):
            m.__class__ = _mixed(new, cls)
        elif not mixin:
            m.__class__ = new
        for k, v in attrs.items():
            setattr(m, k, v)
        count += 1
    return count
