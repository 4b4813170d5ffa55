#!/bin/bash
# call 19: kernel tests (linear casts, other launches); bench step h200 vs
# h200+cached_weight_casts (one process) with SM clock/power sampled; attention forward at
# 704 residues (base-2 softmax column)
source scripts/gpu_env.sh
timeout 60 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_linear.py \
  tests/kernels/test_kernels.py -k "other_launches or linear or exp2" 2>&1 | tee $OUT/call19_pytest.txt | tail -2
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_throttle_reasons.active --format=csv -lms 250 > $OUT/call19_smi.csv 2>&1 &
SMI=$!
timeout 330 python3 -m scalefold.cli bench step --preset mlperf --device cuda --no-flops --warmup 1 \
  --steps 2 --variants h200,h200+cached_weight_casts --json $OUT/call19_step.json > $OUT/call19_step.txt 2>&1
kill $SMI
tail -4 $OUT/call19_step.txt
timeout 120 python3 -m scalefold.cli bench attention --n-res 704 --forward-only --kinds fwd \
  --max-seconds 60 --no-sweep > $OUT/call19_attn704.txt 2>&1; tail -14 $OUT/call19_attn704.txt
