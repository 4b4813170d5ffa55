#!/bin/bash
# call 38: GPU test of the concurrent evaluation chains; the 180-chain evaluation with two
# chains in flight (h200+eval_concurrent_chains=2), one variant a process
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv | tee $OUT/call38_smi.csv
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/train/test_evaluate.py -k "concurrent" \
  2>&1 | tee $OUT/call38_pytest.txt | tail -4
VARIANTS=${VARIANTS:-h200+eval_concurrent_chains=2}
timeout 440 python3 -m scalefold.cli bench eval --speed h200 --passes 1 \
  --variants ${VARIANTS} --json $OUT/call38_eval.json > $OUT/call38_eval.txt 2>&1
grep -v "^\s" $OUT/call38_eval.txt | grep -v -i warn | tail -14
