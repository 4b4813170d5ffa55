#!/bin/bash
# Next session, call 3 (an H200 only; carry [".whlg", ".cache/mini", ".devsnap"]): the
# evaluation's baseline on this machine, then a profile of one median-length chain (where
# a 230-residue chain's ~0.4 s goes: the pass's bulk is chains of 100-400 residues, not
# the 700-residue one profiled so far). Call 4 follows on the same warm machine.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 560 python3 -m scalefold.cli bench eval --speed h200 --passes 1 --profile-length 224 \
  --json $OUT/call3_eval.json > $OUT/call3_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/call3_eval.txt | grep -E "pass 1|warm-up|evaluation of|GPU time|fit" | tail -8
grep -A14 "kernel family" $OUT/call3_eval.txt | head -15
