#!/bin/bash
# call 45 (the session's last device seconds): the GPU tests call 41's -x stop left unrun
# (the unmasked-loads bit-identity test deselected, then run alone for its pass/fail line);
# bench train through the trainer with h200 and the six candidates
source scripts/gpu_env.sh
FLAGS="--attention-fused-logits --attention-precomputed-delta --attention-unmasked-loads --attention-ds-dq-kernel --trimul-bias-in-gating --trimul-gating-kernel"
timeout 170 python3 -m pytest -v -p no:cacheprovider tests/kernels/test_kernels.py tests/kernels/test_trimul.py \
  -k "(unmasked_loads or gating_kernel or bias_in_gating or each_attention_field or dq_from_stored_ds or layer_norm_matches_pytorch or ds_kept_all) and not fused_logits_matches" \
  -x --deselect "tests/kernels/test_kernels.py::test_flash_attention_unmasked_loads_bit_identical" 2>&1 \
  | tee $OUT/call45_pytest.txt | grep -E "passed|failed|FAILED|ERROR" | tail -6
timeout 60 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_kernels.py -k unmasked_loads_bit_identical \
  --tb=line 2>&1 | tail -30 > $OUT/call45_unmasked.txt
tail -3 $OUT/call45_unmasked.txt
timeout 250 python3 -m scalefold.cli bench train --data-dir .cache/mini --speed h200 $FLAGS --num-workers 2 \
  --num-train-iters 50 --val-every-iters 30 --warmup 5 --no-eval-warm-up \
  --json $OUT/call45_train.json > $OUT/call45_train.txt 2>&1
grep -v "^\s" $OUT/call45_train.txt | grep -v -i warn | tail -22
