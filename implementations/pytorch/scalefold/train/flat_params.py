"""A model's parameters as views of one flat buffer, for the optimizer's sake.

Fused Adam, the gradient norm and the SWA update each walk every parameter tensor: ~4,400
of them at the benchmark's size (93.2M values), which multi-tensor kernels cover in over a
hundred launches at a fraction of the memory bandwidth (docs/PERFORMANCE.md, session 4:
7.5 ms of fused Adam at ~350 GB/s). With the parameters and their gradients as views of
two flat buffers, each of these is one pass over one tensor. The model itself is not
touched: its Parameters stay the same objects, only their storage moves.

The optimizer then holds one parameter (`FlatParameters.param`). Its state dict is
written and read in the per-parameter form (`to_per_param_state`, `from_per_param_state`),
so checkpoints stay interchangeable with runs without flat parameters and with the
reference's.

Assumes, as the flat gradient all-reduce does (`FlatGradSync`), that which parameters
receive a gradient is fixed by the model's configuration. A parameter that never gets
one keeps a zero gradient here, and Adam leaves it unchanged (its moments stay zero);
one that got a gradient only on some steps would be moved by its moments on the others,
where per-parameter Adam skips it.
"""

from __future__ import annotations

import torch
from torch import nn

ALIGN = 64  # elements: every view starts on a 256-byte boundary (fp32), as kernels prefer


class FlatParameters:
    """Moves `params` into views of one buffer (values kept) and their gradients into
    views of another. `param` is a Parameter over the whole buffer whose `.grad` is the
    gradient buffer: give it, alone, to the optimizer."""

    def __init__(self, params: list[nn.Parameter]) -> None:
        if not params:
            raise ValueError("flat parameters need at least one parameter")
        if len({id(p) for p in params}) != len(params):
            raise ValueError("flat parameters: a parameter is listed twice")
        dtypes = {p.dtype for p in params}
        devices = {p.device for p in params}
        if len(dtypes) != 1 or len(devices) != 1:
            raise ValueError(f"flat parameters need one dtype and one device, got "
                             f"{sorted(map(str, dtypes))} on {sorted(map(str, devices))}")
        if not all(p.requires_grad for p in params):
            raise ValueError("flat parameters: every parameter must require a gradient")
        self.params = list(params)
        self.offsets: list[int] = []
        total = 0
        for p in params:
            self.offsets.append(total)
            total += -(-p.numel() // ALIGN) * ALIGN
        dtype, device = dtypes.pop(), devices.pop()
        flat = torch.zeros(total, dtype=dtype, device=device)
        grad = torch.zeros_like(flat)
        with torch.no_grad():
            for p, view, gview in zip(params, self.views(flat), self.views(grad), strict=True):
                view.copy_(p)
                p.data = view
                # Autograd accumulates into an existing gradient in place, so backward
                # writes the buffer directly; it must be zeroed, never set to None.
                p.grad = gview
        self.param = nn.Parameter(flat)
        self.param.grad = grad

    @property
    def grad(self) -> torch.Tensor:
        return self.param.grad

    def views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Each parameter's slice of a tensor laid out like the buffer."""
        return [flat[o:o + p.numel()].view_as(p)
                for p, o in zip(self.params, self.offsets, strict=True)]

    def check_attached(self) -> None:
        """Raise if something replaced a parameter's storage or gradient (a `.to()`, a
        `zero_grad(set_to_none=True)`): the optimizer would no longer see it."""
        for i, (p, o) in enumerate(zip(self.params, self.offsets, strict=True)):
            if p.data_ptr() != self.param.data_ptr() + o * self.param.element_size():
                raise RuntimeError(f"flat parameters: parameter {i} {tuple(p.shape)} no "
                                   "longer lives in the flat buffer")
            if p.grad is None or p.grad.data_ptr() != (
                    self.grad.data_ptr() + o * self.grad.element_size()):
                raise RuntimeError(f"flat parameters: the gradient of parameter {i} "
                                   f"{tuple(p.shape)} is not a view of the flat buffer")

    # ------------------------------------------------------------ optimizer state
    def to_per_param_state(self, state: dict) -> dict:
        """The state dict of an optimizer over `param` as if it held `params` one by one
        (indices 0..n-1 in their order)."""
        groups = state["param_groups"]
        if len(groups) != 1 or groups[0]["params"] != [0]:
            raise ValueError("not the state of an optimizer over the flat parameter alone")
        n = len(self.params)
        flat_state = state["state"].get(0)
        per: dict[int, dict] = {}
        if flat_state:
            # Each flat tensor split once (views per call would make this quadratic).
            split = {k: self.views(v) for k, v in flat_state.items()
                     if isinstance(v, torch.Tensor) and v.shape == self.param.shape}
            for i in range(n):
                per[i] = {k: (split[k][i].clone() if k in split else
                              v.clone() if isinstance(v, torch.Tensor) else v)
                          for k, v in flat_state.items()}
        return {"state": per, "param_groups": [{**groups[0], "params": list(range(n))}]}

    def from_per_param_state(self, state: dict) -> dict:
        """The inverse: a per-parameter state dict (one group over `params`, in order)
        for an optimizer over `param`. Parameters without state start from zero moments;
        every parameter with state must share one step count."""
        groups = state["param_groups"]
        n = len(self.params)
        if len(groups) != 1 or list(groups[0]["params"]) != list(range(n)):
            raise ValueError(f"optimizer state has {len(groups)} group(s) over "
                             f"{sum(len(g['params']) for g in groups)} parameters; flat "
                             f"parameters need one group over the model's {n}")
        entries = state["state"]
        flat_state: dict = {}
        split: dict[str, list[torch.Tensor]] = {}  # each flat tensor's per-parameter views
        steps = {}
        for i, entry in entries.items():
            i = int(i)
            if not 0 <= i < n:
                raise ValueError(f"optimizer state for parameter {i}; the model has {n}")
            for k, v in entry.items():
                if k == "step":
                    steps[i] = float(v)
                    flat_state.setdefault(k, v.clone() if isinstance(v, torch.Tensor) else v)
                    continue
                if not (isinstance(v, torch.Tensor) and v.shape == self.params[i].shape):
                    raise ValueError(f"optimizer state {k!r} of parameter {i} has shape "
                                     f"{tuple(getattr(v, 'shape', ()))}, the parameter "
                                     f"{tuple(self.params[i].shape)}")
                if k not in flat_state:
                    flat_state[k] = torch.zeros(self.param.shape, dtype=v.dtype,
                                                device=self.param.device)
                    split[k] = self.views(flat_state[k])
                split[k][i].copy_(v)
        if len(set(steps.values())) > 1:
            odd = sorted(steps, key=lambda i: steps[i])[:5]
            raise ValueError(f"flat parameters need one Adam step count; parameters {odd} "
                             f"have {sorted(set(steps.values()))[:5]}")
        return {"state": {0: flat_state} if flat_state else {},
                "param_groups": [{**groups[0], "params": [0]}]}
