#!/bin/bash
# The last ~230 s of a budget: (1) the lanes GPU test, Python's stacks dumped after 30 s
# (eval_concurrent_chains stalled on 2026-12-04, call 38; each lane now captures on its
# own stream); (2) 24 short chains (50-280 residues, where the fixed cost a chain is most
# of its time), 64-residue buckets, one process: today's h200 with one and two lanes.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 50 python3 -m pytest -q -p no:cacheprovider -o faulthandler_timeout=30 \
  tests/train/test_evaluate.py -k lanes > $OUT/callL6_lanes.txt 2>&1
echo "lanes rc=$?"; grep -E "passed|failed|Timeout|File .*scalefold|File .*torch" $OUT/callL6_lanes.txt | head -30
B=h200+eval_length_buckets=64
L=$(seq -s, 50 10 280)
timeout 160 python3 -m scalefold.cli bench eval --speed h200 --passes 1 --lengths $L --warm-up-max-length 280 \
  --variants $B,$B+eval_concurrent_chains=2 \
  --json $OUT/callL6_eval.json > $OUT/callL6_eval.txt 2>&1
echo "eval rc=$?"
grep -v -i -E "warn|softmax" $OUT/callL6_eval.txt | grep -E "^==|warm-up|pass 1|evaluation of|Error" | tail -12
grep -A4 "^variant " $OUT/callL6_eval.txt
