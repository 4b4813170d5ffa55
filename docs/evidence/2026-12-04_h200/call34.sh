#!/bin/bash
# call 34: the 180-chain evaluation with the structure-module layer compiled (dynamic shapes)
# (VARIANTS: one variant a call; the next call, on the same warm machine, runs the other)
source scripts/gpu_env.sh
TAG=${TAG:-call34}
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv | tee $OUT/${TAG}_smi.csv
VARIANTS=${VARIANTS:-h200+compile_structure_module}
timeout 560 python3 -m scalefold.cli bench eval --speed h200 --passes 1 \
  --variants ${VARIANTS} --json $OUT/${TAG}_eval.json > $OUT/${TAG}_eval.txt 2>&1
grep -v "^\s" $OUT/${TAG}_eval.txt | grep -v -i warn | tail -14
