#!/bin/bash
# call 17: GPU kernel tests; 180-chain evaluation with the new attention forward;
# bench step h200 new, then base (HEAD's attention.py) in a second process
source scripts/gpu_env.sh
mkdir -p /tmp/base && cp -r implementations/pytorch/scalefold /tmp/base/ && cp .devsnap/attention_base.py /tmp/base/scalefold/kernels/attention.py
timeout 70 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_kernels.py \
  -k "bf16_benchmark_shapes or forward_only or row_bias_loads" 2>&1 | tee $OUT/call17_pytest.txt | tail -2
timeout 235 python3 -m scalefold.cli bench eval --speed h200 --eval-warm-up --passes 1 \
  --json $OUT/call17_eval.json > $OUT/call17_eval.txt 2>&1; tail -14 $OUT/call17_eval.txt
timeout 140 python3 -m scalefold.cli bench step --preset mlperf --device cuda --no-flops --warmup 1 \
  --steps 2 --variants h200 --json $OUT/call17_step_new.json > $OUT/call17_step_new.txt 2>&1
tail -3 $OUT/call17_step_new.txt
PYTHONPATH=/tmp/base:$PYTHONPATH timeout 140 python3 -m scalefold.cli bench step --preset mlperf \
  --device cuda --no-flops --warmup 1 --steps 2 --variants h200 > $OUT/call17_step_base.txt 2>&1
tail -3 $OUT/call17_step_base.txt
