"""One fixed synthetic training step sequence of the tiny model with the h200 kernels
(CUDA-only fields off), in Triton's interpreter on the CPU: prints each step's loss bits
and a digest of the weights after, so two commits' training arithmetic can be compared.

Usage: cd <a checkout of the commit>/implementations/pytorch &&
  TRITON_INTERPRET=1 PYTHONPATH=$PWD python train_bits.py bf16 <today's checkout>"""
import dataclasses
import hashlib
import sys

# argv[2]: the tree holding tests/kernels/interpreter_bf16.py (today's checkout)
sys.path.append(sys.argv[2] if len(sys.argv) > 2 else ".")
import torch  # noqa: E402

from tests.kernels.interpreter_bf16 import patch_bf16  # noqa: E402

patch_bf16()
from scalefold.bench.step import (  # noqa: E402
    PRESET_SHAPES, StepRunner, _slice, parse_variant, step_config)
from scalefold.model import AlphaFoldConfig  # noqa: E402
from scalefold.train.config import SpeedConfig  # noqa: E402
from scalefold.utils.synthetic import synthetic_batch  # noqa: E402

precision = sys.argv[1] if len(sys.argv) > 1 else "bf16"
off = ["cuda_graphs", "compile_glue", "compile_structure_module", "input_copy_stream"]
names = {f.name for f in dataclasses.fields(SpeedConfig)}
v = parse_variant("h200@" + precision + "".join(f"+{n}=false" for n in off if n in names))
cfg = step_config("tiny", v, seed=7)
dev = torch.device("cpu")
runner = StepRunner(cfg, dev)
sh = PRESET_SHAPES["tiny"]
full = synthetic_batch(AlphaFoldConfig.tiny(), sh.n_res, sh.n_clust, sh.n_extra, sh.n_templ,
                       num_iterations=2, seed=7, device=dev)
for n in (0, 1, 0):
    loss = runner.step(_slice(full, n))
    print(f"n={n} loss {loss.item()!r} bits {loss.float().view(torch.int32).item():#x}")
h = hashlib.sha256()
for name, p in runner.model.named_parameters():
    h.update(p.detach().float().contiguous().numpy().tobytes())
print("weights", h.hexdigest()[:16])
