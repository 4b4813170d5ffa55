"""CPU, Triton interpreter (bf16 through float32, tests/kernels/interpreter_bf16.py): does
the `h200` evaluation copy (every evaluation kernel; the CUDA-only levers off; the
benchmark's widths, one block of each stack) predict two chains of one length stacked
as a batch of 2 as it predicts each alone? The groundwork of batched evaluation (perf-log
2026-12-07 section 7): the training step and the evaluation have only ever run batch 1.

Usage (repository root): TRITON_INTERPRET=1 python eval_interp_batch2.py LENGTH [VARIANT]
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

n = int(sys.argv[1])
variant = sys.argv[2] if len(sys.argv) > 2 else "h200"
build.model_config = lambda cfg: AlphaFoldConfig.mlperf().with_sizes(
    num_evoformer_blocks=1, num_extra_msa_blocks=1, num_template_blocks=1)
cpu = torch.device("cpu")
chains = [synthetic_batch(None, n, 16, 32, 1, num_iterations=1, seed=s) for s in (n, n + 1)]
stacked = {k: torch.cat([c[k] for c in chains]) for k in chains[0]}
CPU_OFF = dict(cuda_graphs=False, eval_cuda_graphs=False, compile_glue=False,
               compile_structure_module=False, eval_compile_glue=False,
               eval_compile_blocks=False, eval_compile_structure_module=False,
               eval_warm_up=False, eval_concurrent_chains="1")


def evaluator(precision, speed):
    cfg = TrainConfig(data_dir=Path("."), output_dir=Path("."), precision=precision,
                      speed=speed, seed=0)
    built = build_step(cfg, cpu, Topology(rank=0, world_size=1, num_eval_ranks=0))
    redraw_zero_weights(list(built.eval_model.parameters()), seed=1)
    return Evaluator.from_built(built, cpu)


for name, precision, speed in (
        ("fp32 eager", "fp32", SpeedConfig()),
        (variant, "bf16", dataclasses.replace(SpeedConfig.preset(variant.split("+")[0]),
                                              **CPU_OFF, **dict.fromkeys(
                                                  variant.split("+")[1:], True)))):
    t0 = time.time()
    ev = evaluator(precision, speed)
    alone = torch.cat([ev.predict(c) for c in chains])  # [2, N, 37, 3]
    together = ev.predict(stacked)
    spread = (alone - alone.mean(dim=(1, 2), keepdim=True)).norm()
    print(f"{name}: {n} residues, batch of 2 vs each alone: finite "
          f"{bool(torch.isfinite(together).all())}, max |diff| "
          f"{float((together - alone).abs().max()):.3e}, |diff| / spread "
          f"{float((together - alone).norm() / spread):.2e} ({time.time() - t0:.0f} s)",
          flush=True)
