"""CPU, Triton interpreter with bf16 computed through float32 (tests/kernels/
interpreter_bf16.py): the `h200` evaluation copy as `build_step` makes it (bf16, every
evaluation kernel; the CUDA-only levers off), at the benchmark's widths with one block of
each stack, on synthetic chains, against the fp32 eager evaluation from the same weights:
finite positions, and their difference as a fraction of their spread. Variants:
"h200" and "h200+FIELD" (a field added, e.g. attention_half_key_blocks).

Usage (repository root): TRITON_INTERPRET=1 python eval_interp_synthetic.py LENGTHS VARIANTS
e.g. 90 h200,h200+attention_half_key_blocks  (90 residues: the 96 bucket, 64 + 32 keys)
"""
import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, ".")
from tests.kernels.interpreter_bf16 import patch_bf16  # noqa: E402

patch_bf16()

from scalefold.bench.eval import redraw_zero_weights  # noqa: E402
from scalefold.model import AlphaFoldConfig  # noqa: E402
from scalefold.train import build  # noqa: E402
from scalefold.train.build import build_step  # noqa: E402
from scalefold.train.config import SpeedConfig, TrainConfig  # noqa: E402
from scalefold.train.evaluate import Evaluator  # noqa: E402
from scalefold.train.topology import Topology  # noqa: E402
from scalefold.utils.synthetic import synthetic_batch  # noqa: E402

lengths = [int(n) for n in sys.argv[1].split(",")]
variants = sys.argv[2].split(",")
build.model_config = lambda cfg: AlphaFoldConfig.mlperf().with_sizes(
    num_evoformer_blocks=1, num_extra_msa_blocks=1, num_template_blocks=1)
cpu = torch.device("cpu")
chains = [synthetic_batch(None, n, 16, 32, 1, num_iterations=1, seed=n) for n in lengths]
CPU_OFF = dict(cuda_graphs=False, eval_cuda_graphs=False, compile_glue=False,
               compile_structure_module=False, eval_compile_glue=False,
               eval_compile_blocks=False, eval_compile_structure_module=False,
               eval_warm_up=False, eval_concurrent_chains="1")


def predict(precision, speed):
    cfg = TrainConfig(data_dir=Path("."), output_dir=Path("."), precision=precision,
                      speed=speed, seed=0)
    built = build_step(cfg, cpu, Topology(rank=0, world_size=1, num_eval_ranks=0))
    redraw_zero_weights(list(built.eval_model.parameters()), seed=1)
    evaluator = Evaluator.from_built(built, cpu)
    return [evaluator.predict(c) for c in chains]


t0 = time.time()
ref = predict("fp32", SpeedConfig())
print(f"fp32 eager reference ({time.time() - t0:.0f} s)", flush=True)
for v in ["eager@bf16"] + variants:
    t0 = time.time()
    if v == "eager@bf16":
        got = predict("bf16", SpeedConfig())
    else:
        name, *adds = v.split("+")
        speed = dataclasses.replace(SpeedConfig.preset(name), **CPU_OFF,
                                    **dict.fromkeys(adds, True))
        got = predict("bf16", speed)
    for n, x, r in zip(lengths, got, ref, strict=True):
        spread = (r - r.mean(dim=(1, 2), keepdim=True)).norm()
        print(f"{v}: {n} residues: finite {bool(torch.isfinite(x).all())}, "
              f"|x - fp32| / spread {float((x - r).norm() / spread):.4f} "
              f"({time.time() - t0:.0f} s)", flush=True)
