#!/bin/bash
# One short call (~6.5 min, any of H200/H100): (1) the lanes GPU test, Python's stacks
# dumped after 35 s (eval_concurrent_chains stalled on 2026-12-04, call 38; each lane now
# captures on its own stream, so graphs replayed at once no longer share cuBLAS's
# workspace); (2) the screen (45 chains, 64-residue buckets, one process) of today's
# h200 with one and two lanes; the compile cache goes back.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 60 python3 -m pytest -q -p no:cacheprovider -o faulthandler_timeout=35 \
  tests/train/test_evaluate.py -k lanes > $OUT/callL_lanes.txt 2>&1
echo "lanes rc=$?"; grep -E "passed|failed|Timeout|File .*scalefold|File .*torch" $OUT/callL_lanes.txt | head -30
B=h200+eval_length_buckets=64
timeout 300 python3 -m scalefold.cli bench eval --speed h200 --passes 1 --num-chains 45 \
  --variants $B,$B+eval_concurrent_chains=2 \
  --json $OUT/callL_eval.json > $OUT/callL_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callL_eval.txt | grep -E "^==|warm-up|pass 1|evaluation of|Error" | tail -12
grep -A4 "^variant " $OUT/callL_eval.txt
bash scripts/gpu_cache.sh pack
