#!/bin/bash
# Twenty-fifth session, call W (any card, ~9 min): today's h200 evaluation with the outer
# product mean's residual epilogue adopted (0.969x on V1's screen): the real 180-chain
# pass, then its lDDT-Ca against fp32 on the mini chains (cut first if time runs out).
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 420 python3 -m scalefold.cli bench eval --speed h200 --passes 1 \
  --json $OUT/callW_eval.json > $OUT/callW_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callW_eval.txt | grep -E "^==|warm-up|pass 1|evaluation of|GPU time|FLOPs|fit t|GPUs|Error|^ +[0-9]+-[0-9]+ " | tail -20
timeout 110 python3 -m scalefold.cli bench eval --check-lddt --speed h200 \
  > $OUT/callW_lddt.txt 2>&1
grep -v -i warn $OUT/callW_lddt.txt | tail -4
