#!/bin/bash
# call 33: the structure module compiled one layer at a time (StructureModule.layer) in the
# training step against h200, one process (recycles 0 and 3); its GPU preset test first
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv | tee $OUT/call33_smi.csv
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_kernels.py \
  -k "preset_speedups and structure_module" 2>&1 | tee $OUT/call33_pytest.txt | tail -4
timeout 360 python3 -m scalefold.cli bench step --preset mlperf --device cuda --no-flops --warmup 1 \
  --steps 2 --recycles 0,3 --variants h200,h200+compile_structure_module \
  --json $OUT/call33_step.json > $OUT/call33_step.txt 2>&1
grep -v "^\s" $OUT/call33_step.txt | grep -v -i warn | tail -12
