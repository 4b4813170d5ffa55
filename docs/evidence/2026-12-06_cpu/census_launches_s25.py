"""Census of the kernels one Evoformer block launches in the evaluation (today's h200
evaluation copy: `SpeedConfig.for_evaluation_model`), by module: Triton launches (each one
kernel on the GPU; counted through the interpreter, TRITON_INTERPRET=1) and ATen ops
outside the modules the evaluation compiles (each about one CUDA kernel); inside the
compiled glue modules the ATen ops are listed too, as an upper bound on the inductor
kernels they fuse into. One no-gradient iteration after a first (casts made once).
Usage: TRITON_INTERPRET=1 python census_launches_s25.py [N_RES]
(from implementations/pytorch, with the checkout's venv)"""
import collections
import dataclasses
import sys

import torch
from torch.utils._python_dispatch import TorchDispatchMode
import triton.runtime.interpreter as interp

from scalefold.kernels import apply_speedups
from scalefold.kernels._autocast import WeightCasts
from scalefold.kernels.glue import GLUE_MODULES
from scalefold.kernels.templates import reuse_template_pairs
from scalefold.model import AlphaFold, AlphaFoldConfig
from scalefold.train.config import SpeedConfig
from scalefold.utils.synthetic import synthetic_batch

speed = SpeedConfig.preset("h200").for_evaluation_model()
speed = dataclasses.replace(speed, cuda_graphs=False)
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

stack: list = []
names = {m: nm for nm, m in model.named_modules()}


def _enter(mod, *a, **k) -> None:  # (a hook's return value would replace the output)
    stack.append(mod)


def _leave(mod, *a, **k) -> None:
    stack.pop()


for m in model.modules():
    m.register_forward_pre_hook(_enter)
    m.register_forward_hook(_leave)


def where() -> str:
    return names.get(stack[-1], "?") if stack else "-"


def in_glue() -> bool:
    return any(isinstance(m, GLUE_MODULES) for m in stack)


ON = [False]
IN_KERNEL = [0]
TRITON = collections.Counter()
_orig = interp.GridExecutor.__call__


def _launch(self, *a, **k):
    if ON[0] and not IN_KERNEL[0]:
        TRITON[(where(), self.fn.__name__ if hasattr(self.fn, "__name__") else str(self.fn))] += 1
    IN_KERNEL[0] += 1
    try:
        return _orig(self, *a, **k)
    finally:
        IN_KERNEL[0] -= 1


interp.GridExecutor.__call__ = _launch
FREE = {"aten.view", "aten._unsafe_view", "aten.unsqueeze", "aten.squeeze", "aten.permute",
        "aten.transpose", "aten.t", "aten.expand", "aten.slice", "aten.select", "aten.split",
        "aten.split_with_sizes", "aten.unbind", "aten.alias", "aten.as_strided", "aten.detach",
        "aten.unflatten", "aten.movedim", "aten.empty", "aten.empty_strided", "aten.lift_fresh",
        "aten._reshape_alias", "aten.reshape", "aten.flatten", "aten.chunk", "aten.narrow",
        "aten.diagonal", "aten.sym_size", "aten.sym_stride", "aten.is_same_size", "aten.unfold",
        "aten.empty_like", "aten.new_empty", "aten.new_empty_strided"}
ATEN = collections.Counter()


class Census(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        op = str(func.overloadpacket)
        if ON[0] and not IN_KERNEL[0] and op not in FREE:
            ATEN[(where(), "glue" if in_glue() else "eager", op)] += 1
        return out


with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), casts.scope(), Census():
    feats0 = {k: v[..., 0] for k, v in batch.items()}
    out = model.iteration(feats0, {})
    ON[0] = True
    prev = {"m0_prev": out["msa_first_row"], "z_prev": out["pair"],
            "x_prev": out["final_atom_positions"]}
    model.iteration(feats0, prev)

block = "evoformer_stack.blocks.1"  # the second: what every block after the first costs
print(f"one Evoformer block (the second of two) of the evaluation copy (h200), {n} "
      "residues, one iteration")
print("Triton launches by module:")
tot_t = 0
for (path, fn), k in sorted(TRITON.items()):
    if path.startswith(block):
        tot_t += k
        print(f"  {k:4d}  {path[len(block) + 1:] or '(block)':45s} {fn}")
print(f"  total {tot_t}")
print("ATen ops outside the compiled glue (each ~one kernel) by module:")
tot_e = 0
for (path, kind, op), k in sorted(ATEN.items()):
    if path.startswith(block) and kind == "eager":
        tot_e += k
        print(f"  {k:4d}  {path[len(block) + 1:] or '(block)':45s} {op}")
print(f"  total {tot_e}")
print("ATen ops inside the compiled glue (an upper bound on its fused kernels) by module:")
glue = collections.Counter()
for (path, kind, op), k in ATEN.items():
    if path.startswith(block) and kind == "glue":
        glue[path[len(block) + 1:]] += k
for path, k in sorted(glue.items()):
    print(f"  {k:4d}  {path}")
print(f"  total {sum(glue.values())}")
print("whole iteration: Triton", sum(TRITON.values()), "ATen outside glue",
      sum(k for (p, kind, o), k in ATEN.items() if kind == "eager"))
