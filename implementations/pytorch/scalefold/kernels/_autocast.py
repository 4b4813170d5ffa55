"""The autocast dtype in effect for a tensor's device, and weight casts made once per
autocast region, for kernels that cast by hand."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def autocast_dtype(x: torch.Tensor) -> torch.dtype | None:
    """The autocast dtype for x's device if autocast is on there; None otherwise
    (devices without autocast, like `meta`, included)."""
    dev = x.device.type
    # CPU and CUDA always have autocast; asking only for other devices keeps
    # `is_autocast_available` (which Dynamo in torch 2.11 cannot trace: a graph break in
    # every compiled module with a LayerNorm) out of compiled code.
    if dev not in ("cpu", "cuda") and not torch.amp.is_autocast_available(dev):
        return None
    if not torch.is_autocast_enabled(dev):
        return None
    return torch.get_autocast_dtype(dev)


class WeightCasts:
    """Reduced-precision copies of parameters for the forwards that need no gradient,
    made once per autocast region (and, through `constant`, values no gradient flows
    through, made once per scope with or without gradients).

    Kernels that run with autocast off cast their weights by hand (`p.to(dtype)`), which
    autocast's own cache never sees: every call of a module pays a cast kernel, and every
    recycling iteration again. Inside `scope()` (opened with the forward's autocast
    region) `cast` makes each (parameter, dtype) copy once for the code that runs without
    gradients (the recycling iterations, evaluation) and hands it out again; the scope's
    end drops them, so a captured CUDA graph holds the casts of its own forward and a
    weight update is never missed.

    With gradients every call still casts on its own: a shared copy would sum its uses'
    bf16 gradients before the cast back to float32, which rounds differently. Compiled
    code (where a dict would become guards) also casts directly.
    """

    def __init__(self) -> None:
        self._casts: dict[tuple, Any] | None = None

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        outer, self._casts = self._casts, {}
        try:
            yield
        finally:
            self._casts = outer

    def caching(self) -> bool:
        """Whether `cast` and `cached` hand out shared copies here (a scope is open, nothing
        records gradients, no compiled code is being traced)."""
        # is_compiling first: Dynamo then never reads (and guards on) the cache's state or
        # a parameter's id (an id guard recompiles a compiled module for every instance)
        return not (torch.compiler.is_compiling() or self._casts is None
                    or torch.is_grad_enabled())

    def cast(self, p: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if p.dtype == dtype or not self.caching():
            return p.to(dtype)
        return self.cached((id(p), dtype), lambda: p.to(dtype))

    def scoped(self) -> bool:
        """Whether `constant` shares its values here (a scope is open, no compiled code is
        being traced)."""
        # is_compiling first, as in `caching`: Dynamo then never guards on the scope
        return not torch.compiler.is_compiling() and self._casts is not None

    def constant(self, key: tuple, make: Callable[[], T]) -> T:
        """make() once per scope for `key`, with or without gradients, for values that no
        gradient flows through (the bias gradients' ones vectors); a fresh make() where no
        scope is open or compiled code is being traced."""
        if not self.scoped():
            return make()
        full = ("constant", *key)
        if full not in self._casts:
            self._casts[full] = make()
        return self._casts[full]

    def derived(self, key: tuple, t: torch.Tensor, make: Callable[[], T]) -> T:
        """make() once per scope for the tensor `t` and `key`, with or without gradients,
        for values computed from `t` alone that no gradient flows through (a mask's
        attention bias, made by every block from the same mask); a fresh make() where no
        scope is open, compiled code is being traced or `t` records gradients.

        `t` is known by its memory (address, shape, strides, dtype), so another view of
        the same values finds the entry too (a block's `bias[..., None, :]` of a shared
        bias); the entry holds `t`, so that memory is not freed and reused while the
        scope lasts, and its version (shared by every view), so an in-place change makes
        the value again."""
        if not self.scoped() or t.requires_grad:
            return make()
        if t.device.type == "meta" or t.numel() == 0:  # no memory to know it by
            where: tuple = ("id", id(t))
        else:
            where = (t.device, t.dtype, t.data_ptr(), tuple(t.shape), t.stride())
        full = ("derived", *key, *where)
        version = _version(t)
        hit = self._casts.get(full)
        if hit is not None and hit[1] == version:
            return hit[2]
        value = make()
        self._casts[full] = (t, version, value)
        return value

    def cached(self, key: tuple, make: Callable[[], T]) -> T:
        """make() once per scope for `key` where nothing records gradients; a fresh make()
        otherwise. `key` names what make() computes from parameters (their ids)."""
        if not self.caching():
            return make()
        full = (*key, torch.is_inference_mode_enabled())
        if full not in self._casts:
            self._casts[full] = make()
        return self._casts[full]


def _version(t: torch.Tensor) -> int | None:
    """t's in-place version counter; None for an inference tensor, which has none (it can
    change in place only inside inference mode)."""
    try:
        return t._version
    except RuntimeError:
        return None
