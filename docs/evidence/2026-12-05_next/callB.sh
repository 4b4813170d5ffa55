#!/bin/bash
# Call B (an H200 preferred, ~5 min): the training step with the evaluation's no-gradient
# kernels (EVAL_NO_GRAD_KERNELS, scalefold/train/config.py) in its recycling iterations
# too (1.5 of an averaged step's ~2.5 forward-equivalents run without gradients): h200
# against h200 with the six, one process. If faster: callS.sh with them (5 seeds), then
# into h200 for training (and eval_no_grad_kernels retires).
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
E=$(python3 -c "from scalefold.train.config import EVAL_NO_GRAD_KERNELS as e; print('+'.join(e))")
timeout 560 python3 -m scalefold.cli bench step --preset mlperf --device cuda --no-flops \
  --warmup 1 --steps 2 --recycles 0,3 --variants h200,h200+$E \
  --json $OUT/callB_step.json > $OUT/callB_step.txt 2>&1
grep -v -i -E "warn|softmax|split the|important use" $OUT/callB_step.txt | grep -v "^$" | tail -8
