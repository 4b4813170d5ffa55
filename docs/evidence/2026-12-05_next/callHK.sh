#!/bin/bash
# Call HK (any card, ~3 min): the screen of 32-key forward blocks at keys an odd multiple
# of 32 (attention_half_key_blocks) beside h200 with the bias tile as an MMA operand, on
# chains at such lengths (16-residue buckets keep them), one process, second pass compared.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
B=h200+attention_bias_mma
timeout 200 python3 -m scalefold.cli bench eval --speed h200 --passes 2 --no-eval-warm-up \
  --lengths 96,160,224,288,352 --variants $B,$B+attention_half_key_blocks \
  --json $OUT/callHK_eval.json > $OUT/callHK_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callHK_eval.txt | grep -E "^==|pass [12]|evaluation of|FAILED|Error|^ +[0-9]+-[0-9]+ " | tail -20
