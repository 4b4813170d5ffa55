#!/bin/bash
# Twenty-fourth session, call V1 (any card, ~6 min): GPU tests of today's changes (the
# LayerNorm-projection kernel's per-call launches, the projection-gating loop form as the
# default, the outer product mean's residual epilogue, 32-key blocks adopted), then the
# screen (6 chains 96-704, pass 2): yesterday's code (.devsnap/old: HEAD 737d366) h200 in
# its own process, today's h200, h200+opm_residual_epilogue and h200+attention_rotated_forward
# in one process (adopt a field into EVAL_NO_GRAD_KERNELS at >= 1%).
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_opm.py \
  tests/kernels/test_ln_linear.py tests/kernels/test_trimul.py tests/kernels/test_kernels.py \
  -k "epilogue_is or behind_the or with_gradients or kernel_launch or groups_in_loop or projection_gating or rotated_forward" \
  > $OUT/callV1_tests.txt 2>&1
tail -3 $OUT/callV1_tests.txt
L=96,160,224,288,352,704
PYTHONPATH=$PWD/.devsnap/old/implementations/pytorch:/tmp/site:$PWD timeout 120 \
  python3 -m scalefold.cli bench eval --speed h200 --passes 2 --no-eval-warm-up --lengths $L \
  --json $OUT/callV1_old.json > $OUT/callV1_old.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callV1_old.txt | grep -E "^==|pass [12]|evaluation of|Error|^ +[0-9]+-[0-9]+ " | tail -9
timeout 300 python3 -m scalefold.cli bench eval --speed h200 --passes 2 --no-eval-warm-up \
  --lengths $L --variants h200,h200+opm_residual_epilogue,h200+attention_rotated_forward \
  --json $OUT/callV1_new.json > $OUT/callV1_new.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callV1_new.txt | grep -E "^==|pass [12]|evaluation of|Error|^ +[0-9]+-[0-9]+ " | tail -18
bash scripts/gpu_cache.sh pack  # copy the parts into .devcache/ after the call
