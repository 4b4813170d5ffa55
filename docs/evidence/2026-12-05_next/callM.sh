#!/bin/bash
# After call L (H200, ~9.5 min): the real 180-chain evaluation (16-residue buckets, 44
# shapes) with what call L's screen adopted, e.g.
#   bash .devsnap/callM.sh h200+eval_concurrent_chains=2
# No lDDT-Cα check here: lanes give each chain's score bit for bit (their GPU test); a
# lever that changes the numbers needs `bench eval --check-lddt` with its flags too.
source scripts/gpu_env.sh
V=${1:?usage: callM.sh VARIANT}
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 540 python3 -m scalefold.cli bench eval --speed h200 --passes 1 --variants $V \
  --json $OUT/callM_eval.json > $OUT/callM_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callM_eval.txt | grep -E "^==|warm-up|pass 1|evaluation of|GPU time|FLOPs|fit t|GPUs|Error" | tail -14
bash scripts/gpu_cache.sh pack
