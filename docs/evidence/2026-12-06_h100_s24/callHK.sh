#!/bin/bash
# Call HK (any card, ~7 min): the two attention-forward levers built in the twenty-third
# session, screened beside today's h200 evaluation (one process, second pass compared) on
# chains of 96-352 residues (16-residue buckets keep the odd multiples of 32 that the
# 32-key blocks serve) and one of 704: attention_half_key_blocks (32-key blocks at keys an
# odd multiple of 32 up to 352) and attention_shared_bias_rows (two rows a program share
# the triangle attentions' bias tile); first the two-row kernel's GPU tests and its
# micro-benchmark (mb_rows2.py). Adopt into EVAL_NO_GRAD_KERNELS what gains >= 1%.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 100 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_kernels.py \
  -k "shared_bias_rows or half_key_blocks" > $OUT/callHK_tests.txt 2>&1; tail -2 $OUT/callHK_tests.txt
timeout 60 python3 .devsnap/mb_rows2.py 2>&1 | grep -v -i warn | tee $OUT/callHK_mb.txt
B=h200; K=attention_half_key_blocks; R=attention_shared_bias_rows
timeout 330 python3 -m scalefold.cli bench eval --speed h200 --passes 2 --no-eval-warm-up \
  --lengths 96,160,224,288,352,704 --variants $B,$B+$R,$B+$K,$B+$K+$R \
  --json $OUT/callHK_eval.json > $OUT/callHK_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callHK_eval.txt | grep -E "^==|pass [12]|evaluation of|FAILED|Error" | tail -20
