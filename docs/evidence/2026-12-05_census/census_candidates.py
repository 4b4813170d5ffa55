"""The eager ATen ops (each a CUDA kernel on the GPU) of the second Evoformer, extra-MSA and
template pair block (what 47 of 48, 3 of 4 and 1 of 2 blocks run) in a recycling forward
of training (train mode, no gradients, bf16 autocast, h200's swaps without the compiles,
plus the fields named on the command line), outside the modules compile_glue compiles.
Usage: TRITON_INTERPRET=1 python census_candidates.py N_RES [FIELD ...]
(a variant of census_recycle_block.py: two blocks a stack, the second counted)."""
import collections, dataclasses, re, sys
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from scalefold.model import AlphaFold, AlphaFoldConfig
from scalefold.train.config import SpeedConfig
from scalefold.kernels import apply_speedups
from scalefold.kernels.glue import GLUE_MODULES
from scalefold.kernels._autocast import WeightCasts
from scalefold.utils.synthetic import synthetic_batch
import triton.runtime.interpreter as _I

speed = dataclasses.replace(SpeedConfig.preset("h200"), compile_glue=False,
                            compile_structure_module=False, cuda_graphs=False,
                            **{f: True for f in sys.argv[2:]})
cfg = AlphaFoldConfig.mlperf()
cfg = dataclasses.replace(cfg, evoformer=dataclasses.replace(cfg.evoformer, num_blocks=2),
                          extra_msa=dataclasses.replace(cfg.extra_msa, num_blocks=2))
torch.manual_seed(0)
model = AlphaFold(cfg).train()
casts = WeightCasts()
apply_speedups(model, speed, "bf16", casts)
n = int(sys.argv[1]) if len(sys.argv) > 1 else 16
batch = synthetic_batch(n_res=n, n_clust=8, n_extra=16, n_templ=2, num_iterations=2)

stack = []
names = {m: nm for nm, m in model.named_modules()}
def pre(mod, *a, **k):
    stack.append(mod)


def post(mod, *a, **k):  # returns None: a hook's return value would replace the output
    stack.pop()


for m in model.modules():
    m.register_forward_pre_hook(pre)
    m.register_forward_hook(post)
FREE = {"aten.view", "aten._unsafe_view", "aten.unsqueeze", "aten.squeeze", "aten.permute",
        "aten.transpose", "aten.t", "aten.expand", "aten.slice", "aten.select", "aten.split",
        "aten.split_with_sizes", "aten.unbind", "aten.alias", "aten.as_strided", "aten.detach",
        "aten.unflatten", "aten.movedim", "aten.empty", "aten.empty_strided", "aten.lift_fresh",
        "aten._reshape_alias", "aten.reshape", "aten.flatten", "aten.chunk", "aten.narrow",
        "aten.diagonal", "aten.sym_size", "aten.sym_stride", "aten.is_same_size", "aten.unfold"}
IN_KERNEL = [0]
_orig = _I.GridExecutor.__call__
def _wrapped(self, *a, **k):
    IN_KERNEL[0] += 1
    try:
        return _orig(self, *a, **k)
    finally:
        IN_KERNEL[0] -= 1
_I.GridExecutor.__call__ = _wrapped
KEEP = ("evoformer_stack.blocks.1", "extra_msa_stack.blocks.1", "template_pair_stack.blocks.1")


def describe(a):
    if isinstance(a, torch.Tensor):
        return f"{str(a.dtype).removeprefix('torch.')}{list(a.shape)}"
    if isinstance(a, (int, float)) and not isinstance(a, bool):
        return f"#{a:g}"
    return None


class Census(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.rows, self.on = [], False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.on and not IN_KERNEL[0]:
            op = str(func.overloadpacket)
            if op in FREE or any(isinstance(m, GLUE_MODULES) for m in stack):
                return out
            path = names.get(stack[-1], "?") if stack else "-"
            if not path.startswith(KEEP):
                return out
            ops = [d for d in map(describe, args) if d is not None]
            self.rows.append((path, op, ops))
        return out


census = Census()
with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), casts.scope(), census:
    feats0 = {k: v[..., 0] for k, v in batch.items()}
    feats1 = {k: v[..., 1] for k, v in batch.items()}  # the next iteration's own slices
    out = model.iteration(feats0, {})
    census.on = True
    prev = {"m0_prev": out["msa_first_row"], "z_prev": out["pair"],
            "x_prev": out["final_atom_positions"]}
    model.iteration(feats1, prev)
by_op = collections.Counter(op for _, op, _ in census.rows)
for path, op, ops in census.rows:
    print(f"{path:60s} {op:28s} {' '.join(ops)}")
print(f"\n{len(census.rows)} eager ops in the three blocks: "
      + ", ".join(f"{op.removeprefix('aten.')} {c}" for op, c in by_op.most_common()))
