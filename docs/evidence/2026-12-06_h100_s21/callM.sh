#!/bin/bash
# After calls N and C (H200, ~9.5 min): the real 180-chain evaluation (16-residue
# buckets, 44 shapes) with what their screens adopted, then the lDDT-Ca check of those
# fields against fp32 on the mini chains, e.g.
#   bash .devsnap/callM.sh h200+ln_projection_forward_kernel+attention_gate_epilogue
source scripts/gpu_env.sh
V=${1:?usage: callM.sh VARIANT}
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 420 python3 -m scalefold.cli bench eval --speed h200 --passes 1 --variants $V \
  --json $OUT/callM_eval.json > $OUT/callM_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callM_eval.txt | grep -E "^==|warm-up|pass 1|evaluation of|GPU time|FLOPs|fit t|GPUs|Error" | tail -14
# the variant's fields beside fp32 on the mini chains (levers that change values within
# bf16 rounding need it): the flags of VARIANT after "h200+", as `scalefold train` flags
FLAGS=$(echo "$V" | tr '+' '\n' | tail -n +2 | sed 's/_/-/g; s/^/--/' | tr '\n' ' ')
timeout 100 python3 -m scalefold.cli bench eval --check-lddt --speed h200 $FLAGS \
  > $OUT/callM_lddt.txt 2>&1
grep -v -i warn $OUT/callM_lddt.txt | tail -4
bash scripts/gpu_cache.sh pack
