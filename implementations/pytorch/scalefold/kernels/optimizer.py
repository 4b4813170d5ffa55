"""The gradient clip, Adam and the SWA (EMA) update of every parameter in two launches.

The fused update path (`scalefold.train.step`) runs PyTorch's multi-tensor kernels: the
gradient norm (`_foreach_norm`), fused Adam with the clip as its `grad_scale`, and the
EMA (`_foreach_lerp_`). A multi-tensor launch takes at most 36 tensors (Adam's four
lists), and the model has 5,044 parameter tensors, 2,800 of them with at most 1,024
elements: ~390 launches, most of them a few busy blocks on a 132-multiprocessor GPU,
9.5 ms of the n = 0 step on the H200 (2026-12-04 call 15, 141 Adam launches 7.1 ms), for
about 3.7 GB of memory traffic that takes ~0.8 ms at the memory's rate.

Here a table holds each tensor's address (parameter, gradient, Adam's two moments, the
EMA's shadow) and size, and a table of blocks (tensor, first element) covers every
element once. Two Triton launches walk it: the per-block sums of squared gradients,
then (after their sum) the update of every element: the clip scale, Adam, the EMA.
Adam's step count is one device tensor, shared as every parameter's `state["step"]`
(Adam's state dict keeps its form; a load re-links it). A parameter without a gradient
(the experimentally-resolved head, whose loss weight is 0) is left alone by Adam, as
PyTorch's Adam leaves it, but holds zero moments and the shared count in the state.

The math is PyTorch's fused Adam (ADAM_MODE original, no weight decay) and `torch.lerp`,
in float32, with the clip as fused Adam's `grad_scale` and `found_inf` (a step whose
loss or gradient norm is not finite leaves the weights, the moments and the step count
as they were; the EMA still blends, as the plain path's EMA does after a skipped step).
The same update up to float rounding (tests compare with the plain path).

Gradient addresses change from step to step in eager mode (uploaded each step from a
pinned buffer when they change) and belong to each captured CUDA graph: a capture takes
a table allocated before it (`reserve_capture_table`, outside the graphs' memory pool,
whose blocks the graph reuses for its own tensors), which `fill_captured` writes once
the capture ends and keeps.
"""

from __future__ import annotations

import torch
from torch import nn

from scalefold.kernels._triton import tl, triton, triton_usable

if triton is not None:

    @triton.jit
    def _sumsq_kernel(GRADS, NUMEL, BLK_T, BLK_S, PART, BLOCK: tl.constexpr):
        # One block of one gradient: the sum of its squares (float32).
        # A parameter without a gradient (address 0) adds nothing.
        pid = tl.program_id(0)
        t = tl.load(BLK_T + pid)
        start = tl.load(BLK_S + pid)
        n = tl.load(NUMEL + t)
        g_addr = tl.load(GRADS + t)
        g_ptr = g_addr.to(tl.pointer_type(tl.float32))
        offs = start + tl.arange(0, BLOCK).to(tl.int64)
        lim = tl.where(g_addr != 0, n, 0)  # no gradient: every load masked off
        g = tl.load(g_ptr + offs, mask=offs < lim, other=0.0)
        tl.store(PART + pid, tl.sum(g * g, axis=0))

    @triton.jit
    def _update_kernel(PARAMS, GRADS, EXP_AVG, EXP_AVG_SQ, SHADOW, NUMEL, BLK_T, BLK_S,
                       SUMSQ, BAD, BIAS_CORR, LR_PTR, lr_value, beta1, beta2, eps, max_norm,
                       ema_weight, LR_ON_DEVICE: tl.constexpr, BLOCK: tl.constexpr):
        pid = tl.program_id(0)
        t = tl.load(BLK_T + pid)
        start = tl.load(BLK_S + pid)
        n = tl.load(NUMEL + t)
        offs = start + tl.arange(0, BLOCK).to(tl.int64)
        m = offs < n
        p_ptr = tl.load(PARAMS + t).to(tl.pointer_type(tl.float32))
        s_ptr = tl.load(SHADOW + t).to(tl.pointer_type(tl.float32))
        p = tl.load(p_ptr + offs, mask=m, other=0.0)
        g_addr = tl.load(GRADS + t)
        # Adam skips a parameter without a gradient, and every one in a skipped step
        if (tl.load(BAD) == 0) & (g_addr != 0):
            g_ptr = g_addr.to(tl.pointer_type(tl.float32))
            m1_ptr = tl.load(EXP_AVG + t).to(tl.pointer_type(tl.float32))
            m2_ptr = tl.load(EXP_AVG_SQ + t).to(tl.pointer_type(tl.float32))
            g = tl.load(g_ptr + offs, mask=m, other=0.0)
            exp_avg = tl.load(m1_ptr + offs, mask=m, other=0.0)
            exp_avg_sq = tl.load(m2_ptr + offs, mask=m, other=0.0)
            # the clip as fused Adam's grad_scale: max(1, (norm + 1e-6) / max_norm).
            # Round-to-nearest division and square roots, as PyTorch's CUDA kernel
            # computes them (Triton's `/` and `tl.sqrt` are approximations on a GPU).
            norm = tl.sqrt_rn(tl.load(SUMSQ))
            g = tl.div_rn(g, tl.maximum(tl.div_rn(norm + 1e-6, max_norm), 1.0))
            if LR_ON_DEVICE:
                lr = tl.load(LR_PTR)
            else:
                lr = lr_value
            exp_avg = beta1 * exp_avg + (1.0 - beta1) * g
            exp_avg_sq = beta2 * exp_avg_sq + (1.0 - beta2) * g * g
            bias_correction1 = tl.load(BIAS_CORR)
            bias_correction2_sqrt = tl.sqrt_rn(tl.load(BIAS_CORR + 1))
            step_size = tl.div_rn(lr, bias_correction1)
            denom = tl.div_rn(tl.sqrt_rn(exp_avg_sq), bias_correction2_sqrt) + eps
            p = p - tl.div_rn(step_size * exp_avg, denom)
            tl.store(p_ptr + offs, p, mask=m)
            tl.store(m1_ptr + offs, exp_avg, mask=m)
            tl.store(m2_ptr + offs, exp_avg_sq, mask=m)
        # EMA: torch.lerp(shadow, p, w), whose two forms make w = 1 an exact copy
        s = tl.load(s_ptr + offs, mask=m, other=0.0)
        if ema_weight < 0.5:
            s = s + ema_weight * (p - s)
        else:
            s = p - (p - s) * (1.0 - ema_weight)
        tl.store(s_ptr + offs, s, mask=m)


_BLOCK = 4096


def _blocks(numels: list[int], block: int) -> tuple[list[int], list[int]]:
    """(tensor index, first element) of every block of `block` elements, tensor by tensor."""
    ts, starts = [], []
    for i, n in enumerate(numels):
        for s in range(0, n, block):
            ts.append(i)
            starts.append(s)
    return ts, starts


class SinglePassUpdate:
    """Clip, Adam and EMA for `params` (float32, on one device) in two Triton launches.

    `optimizer` is the run's `torch.optim.Adam` (betas, eps, lr and its state, which this
    class fills and keeps in Adam's own form); `ema` the run's `WeightEMA` over
    `ema_model`'s parameters, which are `params` in the same order. Where Triton cannot
    run (a CPU without the interpreter) `active` is False and the caller keeps PyTorch's
    path.
    """

    def __init__(self, params: list[nn.Parameter], optimizer: torch.optim.Adam, ema,
                 ema_model: nn.Module, max_norm: float, block: int = _BLOCK) -> None:
        self.params = params
        self.optimizer = optimizer
        self.ema = ema
        self.max_norm = float(max_norm)
        self.block = block
        self.active = bool(params) and triton_usable(params[0])
        if not self.active:
            return
        if any(p.dtype != torch.float32 or not p.is_contiguous() for p in params):
            raise ValueError("the single-pass update needs contiguous float32 parameters")
        if [p.data_ptr() for p in ema_model.parameters()] != [p.data_ptr() for p in params]:
            raise ValueError("the EMA must average the optimizer's parameters, in order")
        groups = optimizer.param_groups
        if len(groups) != 1 or groups[0]["weight_decay"] or groups[0]["amsgrad"] \
                or groups[0].get("maximize"):
            raise ValueError("the single-pass update implements one group of plain Adam")
        if [id(p) for p in groups[0]["params"]] != [id(p) for p in params]:
            raise ValueError("the optimizer's parameters must be `params`, in order")
        self.device = params[0].device
        numels = [p.numel() for p in params]
        blk_t, blk_s = _blocks(numels, block)
        self.num_blocks = len(blk_t)
        self._numel = torch.tensor(numels, dtype=torch.int64, device=self.device)
        self._blk_t = torch.tensor(blk_t, dtype=torch.int32, device=self.device)
        self._blk_s = torch.tensor(blk_s, dtype=torch.int64, device=self.device)
        self._partial = torch.empty(self.num_blocks, dtype=torch.float32, device=self.device)
        self._params = self._table([p.data_ptr() for p in params])
        self._shadow = self._table([s.data_ptr() for s in ema.shadow])
        self._exp_avg = torch.empty(len(params), dtype=torch.int64, device=self.device)
        self._exp_avg_sq = torch.empty_like(self._exp_avg)
        self.step_count = torch.zeros((), dtype=torch.float32, device=self.device)
        self._link_state()
        optimizer.register_load_state_dict_post_hook(lambda opt: self._link_state())
        self._grads_eager: torch.Tensor | None = None
        self._grads_eager_ptrs: list[int] | None = None
        self._staging: list[tuple[torch.Tensor, torch.cuda.Event | None]] = []
        self._pending: list[tuple[torch.Tensor, list[int]]] = []
        self._captured_tables: list[torch.Tensor] = []
        self._reserved: list[torch.Tensor] = []  # tables for the next captures
        self._betas_of: tuple[float, float] | None = None
        self._betas: torch.Tensor | None = None
        self._beta_tensor(*groups[0]["betas"])  # made before any capture

    def _table(self, ptrs: list[int]) -> torch.Tensor:
        return torch.tensor(ptrs, dtype=torch.int64).to(self.device)

    def _link_state(self) -> None:
        """Adam's state in its own form (`step`, `exp_avg`, `exp_avg_sq` per parameter),
        with one shared step tensor; the moments' addresses in the tables, written in
        place (captured graphs hold the tables' addresses, not the moments')."""
        state = self.optimizer.state
        loaded = [state[p]["step"] for p in self.params if "step" in state.get(p, {})]
        if loaded:
            self.step_count.fill_(float(loaded[0]))
        for p in self.params:
            st = state[p]
            for k in ("exp_avg", "exp_avg_sq"):
                if k not in st:
                    st[k] = torch.zeros_like(p, memory_format=torch.preserve_format)
            st["step"] = self.step_count
        self._exp_avg.copy_(self._table([state[p]["exp_avg"].data_ptr() for p in self.params]))
        self._exp_avg_sq.copy_(
            self._table([state[p]["exp_avg_sq"].data_ptr() for p in self.params]))

    def _beta_tensor(self, beta1: float, beta2: float) -> torch.Tensor:
        if self._betas_of != (beta1, beta2):
            self._betas = torch.tensor([beta1, beta2], dtype=torch.float32, device=self.device)
            self._betas_of = (beta1, beta2)
        return self._betas

    def _capturing(self) -> bool:
        return self.device.type == "cuda" and torch.cuda.is_current_stream_capturing()

    def reserve_capture_table(self) -> None:
        """Before a capture that runs this update: a gradient table allocated outside the
        graphs' memory pool. A table allocated during the capture would come from that
        pool, where the graph itself (or a later one) may place other tensors at the
        same address (blocks freed earlier in the capture are reused), so that a replay
        would overwrite it before the update reads it."""
        self._reserved.append(torch.empty(len(self.params), dtype=torch.int64,
                                          device=self.device))

    def _grad_table(self) -> torch.Tensor:
        grads = [p.grad for p in self.params]
        if any(g is not None and (g.dtype != torch.float32 or not g.is_contiguous())
               for g in grads):
            raise ValueError("the single-pass update needs contiguous float32 gradients")
        ptrs = [0 if g is None else g.data_ptr() for g in grads]  # 0: no gradient
        if self._capturing():
            # The graph's gradients: the table is written once the capture has ended
            if not self._reserved:
                raise RuntimeError("a captured single-pass update needs a gradient table "
                                   "reserved before the capture (reserve_capture_table)")
            table = self._reserved.pop()
            self._pending.append((table, ptrs))
            return table
        if ptrs != self._grads_eager_ptrs:
            self._grads_eager = self._upload(ptrs)
            self._grads_eager_ptrs = ptrs
        return self._grads_eager

    def _upload(self, ptrs: list[int]) -> torch.Tensor:
        host = torch.tensor(ptrs, dtype=torch.int64)
        if self.device.type != "cuda":
            return host.to(self.device)
        # From pinned memory without waiting for the device; the staging buffer stays
        # alive (and unwritten) until its copy has run.
        self._staging = [(h, e) for h, e in self._staging if e is not None and not e.query()]
        pinned = host.pin_memory()
        table = torch.empty(len(ptrs), dtype=torch.int64, device=self.device)
        table.copy_(pinned, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        self._staging.append((pinned, done))
        return table

    def fill_captured(self) -> None:
        """Write the gradient tables of the graphs captured since the last call."""
        for table, ptrs in self._pending:
            table.copy_(torch.tensor(ptrs, dtype=torch.int64))
        # The graph reads the table at every replay: it lives as long as this object.
        self._captured_tables.extend(table for table, _ in self._pending)
        self._pending.clear()

    def __call__(self, guard: torch.Tensor | None = None) -> torch.Tensor:
        """One update (clip, Adam, EMA); returns the gradient norm before clipping (a
        device tensor). `guard`: values (the loss and its terms) whose non-finite entries
        skip the Adam update, as a non-finite gradient norm does."""
        grads = self._grad_table()
        grid = (self.num_blocks,)
        _sumsq_kernel[grid](grads, self._numel, self._blk_t, self._blk_s, self._partial,
                            BLOCK=self.block, num_warps=4)
        sumsq = self._partial.sum().reshape(1)
        bad = ~torch.isfinite(sumsq)
        if guard is not None:
            bad = bad | ~torch.isfinite(guard.detach()).all()
        bad = bad.to(torch.int32)
        group = self.optimizer.param_groups[0]
        lr = group["lr"]
        lr_on_device = isinstance(lr, torch.Tensor)
        beta1, beta2 = group["betas"]
        # 1 - beta^step for this step, with PyTorch's pow (the kernel's exp2 and log2
        # are approximations on a GPU: 1 - beta2 was off by ~1e-4 at step 1)
        bias_corr = 1.0 - self._beta_tensor(beta1, beta2).pow(self.step_count + 1.0)
        ema_weight = 1.0 if self.ema.num_updates == 0 else 1.0 - self.ema.decay
        _update_kernel[grid](
            self._params, grads, self._exp_avg, self._exp_avg_sq, self._shadow, self._numel,
            self._blk_t, self._blk_s, sumsq, bad, bias_corr,
            lr if lr_on_device else sumsq, 0.0 if lr_on_device else float(lr),
            float(beta1), float(beta2), float(group["eps"]), self.max_norm, ema_weight,
            LR_ON_DEVICE=lr_on_device, BLOCK=self.block, num_warps=4)
        self.step_count.add_(1 - bad.to(torch.float32).reshape(()))
        self.ema.num_updates += 1
        return sumsq.sqrt().reshape(())

