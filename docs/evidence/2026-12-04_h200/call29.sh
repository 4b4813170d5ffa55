#!/bin/bash
# call 29: the structure module compiled (static, inductor) in the training step, one process
# against h200 (recycles 0 and 3); the GPU tests of the input copy stream (transfer overlap,
# graphed trainer losses, evaluator scores)
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv | tee $OUT/call29_smi.csv
timeout 340 python3 -m scalefold.cli bench step --preset mlperf --device cuda --no-flops --warmup 1 \
  --steps 2 --recycles 0,3 --variants h200,h200+compile_structure_module \
  --json $OUT/call29_step.json > $OUT/call29_step.txt 2>&1
tail -6 $OUT/call29_step.txt
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/utils/test_transfer.py \
  tests/train/test_trainer.py tests/train/test_evaluate.py \
  -k "copies or copy_stream or own_stream" 2>&1 | tee $OUT/call29_pytest.txt | tail -4
