#!/bin/bash
# Call 1 (any card; carry [".whlg", ".cache/mini", ".devsnap"]): the single-pass update's
# GPU tests (its reserved capture tables) and the LayerNorm's (the streaming backward at
# its field's launch), then one process: the card's preset P, P with the single-pass
# update (left out if its tests failed: a crash would abort the process), P with the
# streaming LayerNorm backward, and the eager TF32 step last (issue 18 asks for it side
# by side); then the compile caches sent back for the next calls.
source scripts/gpu_env.sh
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); echo "GPU: $GPU"
P=h200; case "$GPU" in *H100*) P=h100;; esac
timeout 70 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_optimizer.py \
  tests/train/test_graphs.py -k "single_pass or multi_tensor" > $OUT/call1_pytest.txt 2>&1
rc=$?; echo "single-pass tests: exit $rc"; grep -E "passed|failed|rror|^FAILED" $OUT/call1_pytest.txt | tail -6
SP=",$P+single_pass_update"; [ $rc = 0 ] || SP=""
timeout 40 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_kernels.py \
  -k "layer_norm_matches_pytorch and not channels" 2>&1 | tail -1
timeout 440 python3 -m scalefold.cli bench step --preset mlperf --device cuda --no-flops \
  --warmup 1 --steps 2 --recycles 0,3 \
  --variants $P$SP,$P+layer_norm_bwd_stream,eager@tf32+ckpt \
  --json $OUT/call1_step.json > $OUT/call1_step.txt 2>&1
grep -v -i -E "warn|softmax|split the|important use" $OUT/call1_step.txt | grep -v "^$" | tail -10
bash scripts/gpu_cache.sh pack
