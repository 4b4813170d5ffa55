#!/bin/bash
# Next session, call 2 (after call 1; carry [".whlg", ".cache/mini", ".devsnap"]): five
# seeds with the single-pass update if call 1's tests passed and its step gained (set
# SEEDS=1 in the command), then the GPU suite for the rest of the call (resumable:
# scripts/gpu_tests.sh; copy $OUT/gpu_tests_done.txt to .devsnap/ for the next call).
source scripts/gpu_env.sh
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); echo "GPU: $GPU"
P=h200; case "$GPU" in *H100*) P=h100;; esac
left=560
if [ "${SEEDS:-0}" = 1 ]; then
  mkdir -p $OUT/seeds
  for S in 20261129 1 2 3 4; do
    timeout 215 python3 -m scalefold.cli train --seed $S --speed $P --single-pass-update \
      --no-eval-compile-glue --no-eval-warm-up --output-dir /tmp/n$S \
      --mlperf-log $OUT/seeds/new$S.log > $OUT/seeds/new$S.txt 2>&1 &
  done
  wait
  for S in 20261129 1 2 3 4; do
    echo "seed $S: $(grep -o 'iterations=[0-9]* reached_target=[A-Za-z]*' $OUT/seeds/new$S.txt) $(PYTHONPATH=/tmp/site python3 -m mlperf_logging.compliance_checker --usage hpc --ruleset 3.0.0 $OUT/seeds/new$S.log 2>&1 | grep -E 'SUCCESS|FAIL|ERROR' | tail -1)"
  done > $OUT/call2_seeds.txt
  cat $OUT/call2_seeds.txt
  (cd $OUT && tar czf call2_seed_logs.tgz seeds && rm -rf seeds)
  left=330
fi
bash scripts/gpu_tests.sh $left
