#!/bin/bash
# Twenty-fourth session, call V2 (~9 min): the real 180-chain pass of today's h200 (or a
# variant: bash .devsnap/callV2.sh h200+opm_residual_epilogue), then the lDDT-Ca check.
source scripts/gpu_env.sh
V=${1:-h200}
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 440 python3 -m scalefold.cli bench eval --speed h200 --passes 1 --variants $V \
  --json $OUT/callV2_eval.json > $OUT/callV2_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callV2_eval.txt | grep -E "^==|warm-up|pass 1|evaluation of|GPU time|FLOPs|fit t|GPUs|Error|^ +[0-9]+-[0-9]+ " | tail -20
FLAGS=$(echo "$V" | tr '+' '\n' | tail -n +2 | sed 's/_/-/g; s/^/--/' | tr '\n' ' ')
timeout 100 python3 -m scalefold.cli bench eval --check-lddt --speed h200 $FLAGS \
  > $OUT/callV2_lddt.txt 2>&1
grep -v -i warn $OUT/callV2_lddt.txt | tail -3
bash scripts/gpu_cache.sh pack
