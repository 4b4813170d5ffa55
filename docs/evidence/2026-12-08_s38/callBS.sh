#!/bin/bash
# Call BS (thirty-eighth session, any card, <= 9.5 min; after callBT.sh on the same
# session's card). H200: callNext.sh's order. Other cards: the training step with the
# pipelined loads (one process, n = 0 and 3, as the twenty-third session's callBS):
# h200 against h200+attention_bwd_pipelined_loads (the dk/dv kernel's bias tile,
# log-sum-exp and delta loaded a block ahead) and h200+attention_pipelined_bias_loads
# (the forward's mask rows and bias tiles loaded ahead), then their GPU tests.
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo "card: $card"
if [[ $card == *H200* ]]; then bash .devsnap/callNext.sh; exit; fi
source scripts/gpu_env.sh
T0=$(date +%s)
timeout 480 python3 -m scalefold.cli bench step --preset mlperf --device cuda --no-flops \
  --warmup 1 --steps 2 --recycles 0,3 \
  --variants h200,h200+attention_bwd_pipelined_loads,h200+attention_pipelined_bias_loads \
  --json $OUT/callBS_step.json > $OUT/callBS_step.txt 2>&1
grep -v -i -E "warn|softmax|split the|important use" $OUT/callBS_step.txt | grep -v "^$" | tail -8
echo "step done at $(( $(date +%s) - T0 )) s"
SCALEFOLD_GPU_TEST_WORKERS=0 timeout $(( 575 - ($(date +%s) - T0) )) bash scripts/gpu_tests.sh \
  $(( 565 - ($(date +%s) - T0) )) \
  "tests/kernels/test_kernels.py::test_flash_attention_bwd_pipelined_loads_same_gradients" \
  > $OUT/callBS_tests.txt 2>&1
tail -3 $OUT/callBS_tests.txt
echo "done at $(( $(date +%s) - T0 )) s"
