"""CPU, Triton interpreter: is the h200 evaluation's kernel logic right at 3pwp_A's shape?

3pwp_A (275 residues, padded to the 288-residue bucket) scored exactly 0 in the `h200`
evaluation on an H100 (trained and random weights; fp32: 0.135). This runs the trainer's
evaluation of that chain on the CPU with every Triton kernel in the interpreter, fp32,
on the benchmark's widths (c_m 256, c_z 128, heads as the mlperf model) with fewer blocks
(Evoformer/extra-MSA/template blocks as given, 1 each by default), for each variant:
"eager" (no speed-ups), "h200" (the preset's evaluation copy, CUDA-only levers off) and
"h200+FIELD" (a field added). Prints the lDDT-Ca and the largest difference of the final
positions from eager's. A logic error at this shape shows here; an sm90 compile or race
cannot.

Under TRITON_INTERPRET=1 the interpreter computes bf16 through float32
(tests/kernels/interpreter_bf16.py), so PREC=bf16 runs the evaluation as the GPU does.

Usage (repository root): TRITON_INTERPRET=1 [PREC=bf16] python eval_interp_3pwp.py
    [variants] [blocks] [chain]
"""
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, ".")
from tests.kernels.interpreter_bf16 import patch_bf16  # noqa: E402

patch_bf16()

import scalefold.train.build as B
from scalefold.bench.eval import redraw_zero_weights
from scalefold.model.config import AlphaFoldConfig
from scalefold.train.config import SpeedConfig, TrainConfig
from scalefold.train.distributed import discover
from scalefold.train.trainer import Trainer

variants = (sys.argv[1] if len(sys.argv) > 1 else "eager,h200").split(",")
blocks = int(sys.argv[2]) if len(sys.argv) > 2 else 1
chain = sys.argv[3] if len(sys.argv) > 3 else "3pwp_A"
data = Path(".cache/mini")
split = json.loads((data / "mini_split.json").read_text())
B.model_config = lambda cfg: AlphaFoldConfig.mlperf().with_sizes(
    num_evoformer_blocks=blocks, num_extra_msa_blocks=blocks, num_template_blocks=blocks)

CPU_OFF = dict(cuda_graphs=False, eval_cuda_graphs=False, compile_glue=False,
               compile_structure_module=False, eval_compile_glue=False,
               eval_compile_blocks=False, eval_compile_structure_module=False,
               eval_warm_up=False, eval_concurrent_chains="1")
ref = None
for v in variants:
    t0 = time.time()
    if v == "eager":
        speed = SpeedConfig()
    else:
        name, *adds = v.split("+")
        speed = SpeedConfig.preset(name)
        fields = {f.name for f in dataclasses.fields(SpeedConfig)}
        speed = dataclasses.replace(speed, **{k: val for k, val in CPU_OFF.items()
                                              if k in fields})
        for a in adds:
            speed = dataclasses.replace(speed, **{a: True})
    tcfg = TrainConfig(data_dir=data, output_dir=Path("/tmp/eval_interp_out"), device="cpu",
                       precision=os.environ.get("PREC", "fp32") if v != "eager" else "fp32", speed=speed, max_msa_clusters=16, max_extra_msa=32,
                       max_templates=1, num_recycling_iters=0, val_chain_ids=(chain,),
                       train_chain_ids=tuple(split["train"]), num_workers=0)
    trainer = Trainer(tcfg, discover({}), torch.device("cpu"))
    redraw_zero_weights(trainer.swa.shadow, 0)
    trainer.build_data()
    trainer.swa.copy_to(trainer.eval_model)
    out = {}
    for name, mod in trainer.eval_model.named_children():  # progress, by top-level module
        mod.register_forward_hook(lambda m, a, o, name=name: print(
            f"  {name} done at {time.time() - t0:.0f} s", flush=True))
    hook = trainer.eval_model.register_forward_hook(
        lambda m, a, o: out.__setitem__("x", o["final_atom_positions"].detach().clone()))
    try:
        scores = trainer.evaluator.score_chains(trainer.val_loader,
                                                name=trainer.val_dataset.chain_id)
        msg = f"lDDT-Ca {scores[0][1]:.6f}"
    except Exception as e:  # noqa: BLE001
        msg = f"{type(e).__name__}: {e}"[:300]
    hook.remove()
    x = out.get("x")
    if x is not None:
        x = x[0, :275] if x.dim() == 4 else x[:275]
        finite = bool(torch.isfinite(x).all())
        if ref is None:
            ref = x
            diff = "reference"
        else:
            n = min(ref.shape[0], x.shape[0])
            diff = f"max |x - eager| {float((x[:n] - ref[:n]).abs().nan_to_num(1e30).max()):.3e}"
        msg += f"; positions finite: {finite}; {diff}; shape {tuple(out['x'].shape)}"
    print(f"=== {v}: {msg} ({time.time() - t0:.0f} s)", flush=True)
