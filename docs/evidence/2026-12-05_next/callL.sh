#!/bin/bash
# Next session, call L (H200 or H100, ~9.5 min): (1) the lanes GPU test, Python's stacks
# dumped after 35 s if it stalls (each lane now captures on its own stream and queues
# from its own host thread: it passed in 18 s on an H100 with the stream, before the
# threads); (2) the screen (45 chains, 64-residue buckets, one process) of today's h200
# with one, two and three lanes; the compile cache goes back (`scripts/gpu_cache.sh`).
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 60 python3 -m pytest -q -p no:cacheprovider -o faulthandler_timeout=35 \
  tests/train/test_evaluate.py -k lanes > $OUT/callL_lanes.txt 2>&1
echo "lanes rc=$?"; grep -E "passed|failed|Timeout|File .*scalefold|File .*torch" $OUT/callL_lanes.txt | head -30
B=h200+eval_length_buckets=64
timeout 480 python3 -m scalefold.cli bench eval --speed h200 --passes 1 --num-chains 45 \
  --variants $B,$B+eval_concurrent_chains=2,$B+eval_concurrent_chains=3 \
  --json $OUT/callL_eval.json > $OUT/callL_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callL_eval.txt | grep -E "^==|warm-up|pass 1|evaluation of|Error" | tail -12
grep -A4 "^variant " $OUT/callL_eval.txt
bash scripts/gpu_cache.sh pack
