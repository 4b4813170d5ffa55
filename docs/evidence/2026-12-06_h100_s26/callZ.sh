#!/bin/bash
# Twenty-fifth session, call Z (any card, ~6 min): GPU tests of the session's launch
# changes (shared mask biases, the outer product mean's shared count, the heads-first pair
# bias), then the screen (6 chains 96-704, pass 2): the code before them (HEAD 7639d88,
# .devsnap/old2) and today's, each h200 in its own process. The changes are bit-identical
# and fieldless (through cached_weight_casts): keep them if today's is not slower.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_mask_bias.py \
  tests/kernels/test_opm.py tests/kernels/test_key_mask.py tests/kernels/test_ln_linear.py \
  -k "not interpreter and (mask or denominator or epilogue or heads_first or real_rows or fuse_each or whole_model)" \
  > $OUT/callZ_tests.txt 2>&1
tail -3 $OUT/callZ_tests.txt
L=96,160,224,288,352,704
PYTHONPATH=$PWD/.devsnap/old2/implementations/pytorch:/tmp/site:$PWD timeout 230 \
  python3 -m scalefold.cli bench eval --speed h200 --passes 2 --no-eval-warm-up --lengths $L \
  --json $OUT/callZ_old.json > $OUT/callZ_old.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callZ_old.txt | grep -E "pass [12]|evaluation of|Error|^ +[0-9]+-[0-9]+ " | tail -8
timeout 230 python3 -m scalefold.cli bench eval --speed h200 --passes 2 --no-eval-warm-up \
  --lengths $L --json $OUT/callZ_new.json > $OUT/callZ_new.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callZ_new.txt | grep -E "pass [12]|evaluation of|Error|^ +[0-9]+-[0-9]+ " | tail -8
bash scripts/gpu_cache.sh pack
