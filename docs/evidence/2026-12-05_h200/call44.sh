#!/bin/bash
# call 44: one 180-chain evaluation pass with h200 and the six candidates (baseline: h200
# 106.8 s, call 35, another machine); then seed 1 of the embedded default with the six and
# checkpoints, and the lDDT check (fp32 against the six's evaluation) on its last checkpoint
source scripts/gpu_env.sh
SIX=attention_fused_logits+attention_precomputed_delta+attention_unmasked_loads+attention_ds_dq_kernel+trimul_bias_in_gating+trimul_gating_kernel
FLAGS="--attention-fused-logits --attention-precomputed-delta --attention-unmasked-loads --attention-ds-dq-kernel --trimul-bias-in-gating --trimul-gating-kernel"
timeout 330 python3 -m scalefold.cli bench eval --speed h200 --passes 1 --variants h200+$SIX \
  --json $OUT/call44_eval.json > $OUT/call44_eval.txt 2>&1
grep -v -i warn $OUT/call44_eval.txt | tail -14
timeout 140 python3 -m scalefold.cli train --seed 1 --speed h200 $FLAGS --no-eval-compile-glue --no-eval-warm-up \
  --checkpoint-every-iters 20 --keep-last-checkpoints 1 --checkpoint-dir /tmp/ck44 \
  --output-dir /tmp/c44 --mlperf-log $OUT/call44_seed1.log > $OUT/call44_seed1.txt 2>&1
grep -o 'iterations=[0-9]* reached_target=[A-Za-z]*' $OUT/call44_seed1.txt
CKPT=$(ls -t /tmp/ck44/*.pt | head -1); echo "checkpoint $CKPT"
timeout 100 python3 -m scalefold.cli bench eval --check-lddt --speed h200 $FLAGS --data-dir .cache/mini --preset small \
  --checkpoint $CKPT --val-chain-ids 5pti_A,3pwp_A,3pwp_B,3pwp_D --json $OUT/call44_check_lddt.json \
  > $OUT/call44_check_lddt.txt 2>&1
grep -v "^\s" $OUT/call44_check_lddt.txt | grep -v -i warn | tail -5
