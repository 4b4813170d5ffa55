#!/bin/bash
# Twenty-second session, call H (an H200, ~8 min; first if an H200 comes): the real
# 180-chain evaluation of today's h200 (its evaluation copy has EVAL_NO_GRAD_KERNELS, now with
# attention_bias_mma since the twenty-third session; since the twenty-first session
# ln_projection_forward_kernel, attention_gate_epilogue and the structure module's
# compile: 0.874x of the old preset on an H100's screen). The number for PERFORMANCE.md's
# table (target 60 s; the old preset 83.94 s on an H200), then the lDDT-Ca check.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 470 python3 -m scalefold.cli bench eval --speed h200 --passes 1 \
  --json $OUT/callH_eval.json > $OUT/callH_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callH_eval.txt | grep -E "^==|warm-up|pass 1|evaluation of|GPU time|FLOPs|fit t|GPUs|Error|^ +[0-9]+-[0-9]+ " | tail -20
timeout 90 python3 -m scalefold.cli bench eval --check-lddt --speed h200 > $OUT/callH_lddt.txt 2>&1
grep -v -i warn $OUT/callH_lddt.txt | tail -3
bash scripts/gpu_cache.sh pack
