"""Census of ATen ops (each a CUDA kernel on the GPU) in one no-grad iteration of the
evaluation model (h200's eval swaps, without the compiles), by module, excluding the
modules compile_glue compiles (their glue becomes inductor kernels)."""
import collections, dataclasses, sys
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from scalefold.model import AlphaFold, AlphaFoldConfig
from scalefold.train.config import SpeedConfig
from scalefold.kernels import apply_speedups
from scalefold.kernels.glue import GLUE_MODULES
from scalefold.kernels.templates import reuse_template_pairs
from scalefold.kernels._autocast import WeightCasts
from scalefold.utils.synthetic import synthetic_batch

speed = dataclasses.replace(SpeedConfig.preset("h200"), compile_glue=False,
                            compile_structure_module=False, cuda_graphs=False)
cfg = AlphaFoldConfig.mlperf()
cfg = dataclasses.replace(cfg, evoformer=dataclasses.replace(cfg.evoformer, num_blocks=2),
                          extra_msa=dataclasses.replace(cfg.extra_msa, num_blocks=1))
torch.manual_seed(0)
model = AlphaFold(cfg).eval()
casts = WeightCasts()
apply_speedups(model, speed, "bf16", casts)
reuse_template_pairs(model)
n = int(sys.argv[1]) if len(sys.argv) > 1 else 32
batch = synthetic_batch(n_res=n, n_clust=16, n_extra=32, n_templ=4, num_iterations=2)

stack = []
def pre(mod, *a, **k): stack.append(mod)
def post(mod, *a, **k): stack.pop()
names = {m: nm for nm, m in model.named_modules()}
for m in model.modules():
    m.register_forward_pre_hook(pre); m.register_forward_hook(post)

FREE = {"aten.view", "aten._unsafe_view", "aten.unsqueeze", "aten.squeeze", "aten.permute",
        "aten.transpose", "aten.t", "aten.expand", "aten.slice", "aten.select", "aten.split",
        "aten.split_with_sizes", "aten.unbind", "aten.alias", "aten.as_strided", "aten.detach",
        "aten.unflatten", "aten.movedim", "aten.empty", "aten.empty_strided", "aten.lift_fresh",
        "aten._reshape_alias", "aten.reshape", "aten.flatten", "aten.chunk", "aten.narrow",
        "aten.diagonal", "aten.sym_size", "aten.sym_stride", "aten.is_same_size", "aten.unfold"}
import triton.runtime.interpreter as _I
_IN_KERNEL = [0]
_orig_call = _I.GridExecutor.__call__
def _wrapped(self, *a, **k):
    _IN_KERNEL[0] += 1
    try:
        return _orig_call(self, *a, **k)
    finally:
        _IN_KERNEL[0] -= 1
_I.GridExecutor.__call__ = _wrapped
TRITON_LAUNCHES = collections.Counter()
class Census(TorchDispatchMode):
    def __init__(self): super().__init__(); self.c = collections.Counter(); self.by = collections.Counter(); self.on = False
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.on and not _IN_KERNEL[0]:
            op = str(func.overloadpacket)
            if op not in FREE and not any(isinstance(m, GLUE_MODULES) for m in stack):
                path = names.get(stack[-1], "?") if stack else "-"
                # normalise block indices
                import re
                path = re.sub(r"\.\d+", ".#", path)
                self.c[op] += 1
                self.by[(path, op)] += 1
        return out

census = Census()
# iteration 2 only (the first warms caches: weight casts are made once per region)
with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), casts.scope(), census:
    feats0 = {k: v[..., 0] for k, v in batch.items()}
    out = model.iteration(feats0, {})  # no prev: same op count apart from the recycle embedder
    census.on = True
    census.c.clear(); census.by.clear()
    prev = {"m0_prev": out["msa_first_row"], "z_prev": out["pair"], "x_prev": out["final_atom_positions"]}
    model.iteration(feats0, prev)
tot = sum(census.c.values())
print("ops outside compiled glue, one iteration:", tot)
for op, k in census.c.most_common(30): print(f"  {k:6d} {op}")
print("by module (per block where '#'):")
agg = collections.Counter()
for (path, op), k in census.by.items(): agg[path] += k
for path, k in agg.most_common(40): print(f"  {k:6d} {path}")
