#!/bin/bash
# Twenty-third session, call BM (any card, ~7 min): the attention forward's bias tile as an
# MMA operand (attention_bias_mma): its GPU tests, a microbenchmark at the evaluation's
# calls (mb_bias_mma.py), and the screen of today's h200 evaluation with and without it
# (six chains 96-704, 64-residue buckets, one process, second pass compared).
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_kernels.py -k bias_mma \
  > $OUT/callBM_tests.txt 2>&1; tail -3 $OUT/callBM_tests.txt
timeout 90 python3 .devsnap/mb_bias_mma.py 2>&1 | grep -v -i warn | tee $OUT/callBM_mb.txt
B=h200+eval_length_buckets=64
timeout 300 python3 -m scalefold.cli bench eval --speed h200 --passes 2 --no-eval-warm-up \
  --lengths 96,192,288,416,576,704 --variants $B,$B+attention_bias_mma \
  --json $OUT/callBM_eval.json > $OUT/callBM_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callBM_eval.txt | grep -E "^==|pass [12]|evaluation of|FAILED|Error|^ +[0-9]+-[0-9]+ " | tail -24
