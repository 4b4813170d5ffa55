#!/bin/bash
# Call BM2 (any card, ~4 min): the screen again with the bias tile as an MMA operand only
# at head dimensions >= 32 (not the extra-MSA row attention's c = 8: 1.08x in call BM).
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 60 python3 .devsnap/mb_bias_mma.py 2>&1 | grep -v -i warn | tee $OUT/callBM2_mb.txt
B=h200+eval_length_buckets=64
timeout 300 python3 -m scalefold.cli bench eval --speed h200 --passes 2 --no-eval-warm-up \
  --lengths 96,192,288,416,576,704 --variants $B,$B+attention_bias_mma \
  --json $OUT/callBM2_eval.json > $OUT/callBM2_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callBM2_eval.txt | grep -E "^==|pass [12]|evaluation of|FAILED|Error|^ +[0-9]+-[0-9]+ " | tail -24
