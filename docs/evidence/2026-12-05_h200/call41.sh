#!/bin/bash
# call 41: the new kernels' GPU tests first (stop if they fail), then the attention kernels'
# forms side by side per call signature: forward only at 704 residues (evaluation) with every
# attention switch on (each toggled off beside it); the LayerNorm launches (with the
# streaming backward); then the compile caches
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv | tee $OUT/call41_smi.csv
timeout 280 python3 -m pytest -x -v -p no:cacheprovider tests/kernels/test_kernels.py tests/kernels/test_trimul.py \
  -k "ds_kept_fma or ds_kept_all or fused_logits or fully_masked or gating_kernel or bias_in_gating or unmasked_loads or each_attention_field or dq_from_stored_ds or layer_norm_matches_pytorch" 2>&1 \
  | tee $OUT/call41_pytest.txt | grep -E "passed|failed|FAILED|ERROR" | tail -8
grep -q -E "[0-9]+ failed|ERROR" $OUT/call41_pytest.txt && { echo "tests failed: no timing"; exit 1; }
ALL="--fused-logits --precomputed-delta --unmasked-loads --ds-dq-kernel"
timeout 120 python3 -m scalefold.cli bench attention --preset mlperf --no-sweep --n-res 704 \
  --forward-only $ALL --json $OUT/call41_attn704_all.json > $OUT/call41_attn704_all.txt 2>&1
tail -1 $OUT/call41_attn704_all.txt
timeout 90 python3 -m scalefold.cli bench layernorm --preset mlperf \
  --json $OUT/call41_ln.json > $OUT/call41_ln.txt 2>&1
tail -9 $OUT/call41_ln.txt
bash scripts/gpu_cache.sh pack
