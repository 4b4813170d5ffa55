"""Which evaluation change makes 3pwp_A (275 residues, bucket 288) non-finite in today's
h200 evaluation? The trainer's evaluation (random weights, as check_lddt draws them) of
3pwp_A only, with one change at a time: "-FIELD" an EVAL_NO_GRAD_KERNELS field dropped,
"+FIELD" a field added (attention_half_key_blocks, withheld since the twenty-sixth
session), "pg_loop" the projection-gating kernel's one-block form, "ln_launches" the one
default LayerNorm-projection launch, "none" today's evaluation as it is.
NonFiniteEvaluation names a broken chain."""
import dataclasses
import os
import json
import sys
import time
from pathlib import Path

import torch

import scalefold.kernels.ln_linear as LL
import scalefold.kernels.trimul_projection as TP
import scalefold.train.config as C
from scalefold.bench.eval import EvalBenchConfig, redraw_zero_weights
from scalefold.train.config import SpeedConfig
from scalefold.train.distributed import discover
from scalefold.train.trainer import Trainer

full = C.EVAL_NO_GRAD_KERNELS
orig_launch_for = LL.launch_for
pg_defaults = (TP.project_gate_forward.__defaults__, TP._project_gate.__defaults__)
data = Path(".cache/mini")
split = json.loads((data / "mini_split.json").read_text())
for drop in sys.argv[1].split(","):
    t0 = time.time()
    C.EVAL_NO_GRAD_KERNELS = tuple(f for f in full if "-" + f != drop)
    if drop.startswith("+"):
        C.EVAL_NO_GRAD_KERNELS += (drop[1:],)
    LL.launch_for = orig_launch_for
    TP.project_gate_forward.__defaults__, TP._project_gate.__defaults__ = pg_defaults
    if drop == "ln_launches":
        LL.launch_for = lambda n, g, r: orig_launch_for(n, g, r) if r else LL.DEFAULT_LAUNCH
    if drop == "pg_loop":
        one = TP.ProjectionGatingLaunch(groups_in_loop=False)
        TP.project_gate_forward.__defaults__ = (None, one)
        TP._project_gate.__defaults__ = (None, one)
    cfg = EvalBenchConfig(speed=dataclasses.replace(SpeedConfig.preset(os.environ.get("SPEED", "h200")),
                                                    eval_warm_up=False), precision=os.environ.get("PREC", "bf16"))
    tcfg = dataclasses.replace(cfg.train_config(), data_dir=data, val_chain_ids=("3pwp_A",),
                               train_chain_ids=tuple(split["train"]))
    try:
        trainer = Trainer(tcfg, discover({}), torch.device(os.environ.get("DEV", "cuda")))
        redraw_zero_weights(trainer.swa.shadow, 0)
        trainer.build_data()
        trainer.swa.copy_to(trainer.eval_model)
        scores = trainer.evaluator.score_chains(trainer.val_loader,
                                                name=trainer.val_dataset.chain_id)
        print(f"=== {drop}: 3pwp_A lDDT-Ca {scores[0][1]:.6f} ({time.time() - t0:.0f} s)",
              flush=True)
    except Exception as e:  # noqa: BLE001
        print(f"=== {drop}: Error {type(e).__name__}: {e}"[:300]
              + f" ({time.time() - t0:.0f} s)", flush=True)
    trainer = None
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
