#!/bin/bash
# Call LM (H200, ~9.5 min), for a session where starts are scarce: the lanes GPU test
# (stacks dumped after 35 s if it stalls), then the real 180-chain evaluation with two
# threaded lanes straight away (call L's screen skipped); baseline: 83.94 s on an H200
# (2026-12-05 call 3, one lane, same fields otherwise).
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 60 python3 -m pytest -q -p no:cacheprovider -o faulthandler_timeout=35 \
  tests/train/test_evaluate.py -k lanes > $OUT/callLM_lanes.txt 2>&1
echo "lanes rc=$?"; grep -E "passed|failed|Timeout|File .*scalefold|File .*torch" $OUT/callLM_lanes.txt | head -30
V=${1:-h200+eval_concurrent_chains=2}
timeout 500 python3 -m scalefold.cli bench eval --speed h200 --passes 1 --variants $V \
  --json $OUT/callLM_eval.json > $OUT/callLM_eval.txt 2>&1
echo "eval rc=$?"
grep -v -i -E "warn|softmax" $OUT/callLM_eval.txt | grep -E "^==|warm-up|pass 1|evaluation of|GPU time|FLOPs|fit t|GPUs|Error|reserved" | tail -16
bash scripts/gpu_cache.sh pack
