#!/bin/bash
# Twenty-second session, call B (an H200 preferred, ~6 min; after Q2): the training step
# with the no-gradient kernels in its recycling iterations (1.5 of an averaged step's ~2.5
# forward-equivalents run without gradients): h200 against h200 with the evaluation's
# kernels (EVAL_NO_GRAD_KERNELS) and the twenty-first session's three builds, one process.
# If faster: the 5-seed check (callS with these flags), then into h200 for training too.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
K=trimul_gating_forward_kernel+transition_relu_epilogue+ln_projection_forward_kernel+attention_gate_epilogue
N=triangle_attention_folded_mask+trimul_projection_forward_kernel+transition_forward_kernel
timeout 560 python3 -m scalefold.cli bench step --preset mlperf --device cuda --no-flops \
  --warmup 1 --steps 2 --recycles 0,3 --variants h200,h200+$K,h200+$K+$N \
  --json $OUT/callB_step.json > $OUT/callB_step.txt 2>&1
grep -v -i -E "warn|softmax|split the|important use" $OUT/callB_step.txt | grep -v "^$" | tail -8
