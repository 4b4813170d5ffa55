"""Census of ATen ops in one n=0 training backward (h200 swaps without compiles, CPU,
Triton interpreter for the kernels): op, autograd node, whether operands are
non-contiguous (strided elementwise = a layout copy on the GPU), shapes."""
import collections, dataclasses, re, sys
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from scalefold.model import AlphaFold, AlphaFoldConfig
from scalefold.train.config import SpeedConfig
from scalefold.kernels import apply_speedups
from scalefold.kernels._autocast import WeightCasts
from scalefold.utils.synthetic import synthetic_batch
from scalefold.losses import AlphaFoldLoss, LossConfig
from scalefold.train.step import last_iteration
import triton.runtime.interpreter as _I

_IN = [0]
_orig = _I.GridExecutor.__call__
def _w(self, *a, **k):
    _IN[0] += 1
    try: return _orig(self, *a, **k)
    finally: _IN[0] -= 1
_I.GridExecutor.__call__ = _w

speed = dataclasses.replace(SpeedConfig.preset("h200"), compile_glue=False,
                            compile_structure_module=False, cuda_graphs=False)
cfg = AlphaFoldConfig.mlperf()
cfg = dataclasses.replace(cfg, evoformer=dataclasses.replace(cfg.evoformer, num_blocks=1),
                          extra_msa=dataclasses.replace(cfg.extra_msa, num_blocks=1),
                          template=dataclasses.replace(cfg.template, num_blocks=1))
torch.manual_seed(0)
model = AlphaFold(cfg).train()
casts = WeightCasts()
apply_speedups(model, speed, "bf16", casts)
n = 32
batch = synthetic_batch(n_res=n, n_clust=16, n_extra=32, n_templ=4, num_iterations=1)
loss_fn = AlphaFoldLoss(LossConfig.mlperf())
FREE = {"aten.view", "aten._unsafe_view", "aten.unsqueeze", "aten.squeeze", "aten.permute",
        "aten.transpose", "aten.t", "aten.expand", "aten.slice", "aten.select", "aten.split",
        "aten.split_with_sizes", "aten.unbind", "aten.alias", "aten.as_strided", "aten.detach",
        "aten.empty", "aten.empty_strided", "aten.lift_fresh", "aten.reshape", "aten.sym_size",
        "aten.sym_stride", "aten.is_same_size", "aten.new_empty", "aten.new_empty_strided",
        "aten.empty_like", "aten.zeros_like", "aten._reshape_alias", "aten.expand_as",
        "aten.narrow", "aten.diagonal", "aten.unflatten", "aten.movedim", "aten.flatten"}
POINTWISE = {"aten.add", "aten.add_", "aten.mul", "aten.mul_", "aten.copy_", "aten._to_copy",
             "aten.clone", "aten.sub", "aten.div", "aten.where", "aten.sigmoid_backward",
             "aten.threshold_backward", "aten.fill_", "aten.zero_", "aten.neg", "aten.cat"}
class C(TorchDispatchMode):
    def __init__(s): super().__init__(); s.rows = collections.Counter(); s.on = False; s.shapes = collections.defaultdict(collections.Counter)
    def __torch_dispatch__(s, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        op = str(func.overloadpacket)
        if s.on and not _IN[0] and op not in FREE:
            node = torch._C._current_autograd_node()
            nname = type(node).__name__ if node is not None else "-"
            if nname in ("BackwardCFunction",) and node is not None:
                nname = node.name()
            if node is not None: nname = node.name()
            tens = [a for a in args if isinstance(a, torch.Tensor)]
            if isinstance(out, torch.Tensor): tens.append(out)
            big = max((t.numel() for t in tens), default=0)
            strided = any(not t.is_contiguous() and t.numel() > 1 and t.stride(-1) != 0 for t in tens) if op in POINTWISE else False
            shapes = tuple(tuple(t.shape) for t in tens[:3])
            s.rows[(op, nname, strided, big >= 16 * 32 * 32)] += 1
            if big >= 16 * 32 * 32 and (strided or op in ("aten.add", "aten.clone", "aten.copy_")):
                s.shapes[(op, nname, strided)][tuple((tuple(t.shape), tuple(t.stride()), str(t.dtype)[6:]) for t in tens[:3])] += 1
        return out
c = C()
with torch.autocast("cpu", dtype=torch.bfloat16), casts.scope():
    out = model(batch)
loss, _ = loss_fn(out, last_iteration(batch), torch.tensor(1.0))
with c:
    c.on = True
    loss.backward()
tot = sum(c.rows.values())
print("backward ATen ops (not views):", tot)
agg = collections.Counter()
for (op, node, strided, big), k in c.rows.items():
    agg[(op, strided)] += k
print("by op (strided pointwise marked):")
for (op, st), k in agg.most_common(25): print(f"  {k:5d} {op}{' STRIDED' if st else ''}")
print("strided pointwise ops and big copies by autograd node:")
for (op, node, strided, big), k in sorted(c.rows.items(), key=lambda kv: -kv[1]):
    if strided or (op in ("aten.copy_", "aten._to_copy", "aten.clone", "aten.cat", "aten.add", "aten.add_") and big):
        print(f"  {k:4d} {op:18s} {node:45s} {'STRIDED' if strided else ''} {'big' if big else ''}")

print("shapes:")
for key, cnt in sorted(c.shapes.items(), key=lambda kv: -sum(kv[1].values())):
    print(" ", key, sum(cnt.values()))
    for shp, k in cnt.most_common(6): print("     ", k, shp)
