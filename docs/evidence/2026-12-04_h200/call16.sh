#!/bin/bash
# call 16: attention kernel tests (row-bias loads, forward-only path); forward launch sweeps
# at the training crop and the longest evaluation bucket; 5-chain evaluation new vs base
source scripts/gpu_env.sh
mkdir -p /tmp/base && cp -r implementations/pytorch/scalefold /tmp/base/ && cp .devsnap/attention_base.py /tmp/base/scalefold/kernels/attention.py
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_kernels.py \
  -k "attention or row_bias or forward_only" 2>&1 | tee $OUT/call16_pytest.txt | tail -4
timeout 170 python3 -m scalefold.cli bench attention --n-res 704 --forward-only --kinds fwd \
  --max-seconds 120 > $OUT/call16_attn704.txt 2>&1; tail -16 $OUT/call16_attn704.txt
timeout 120 python3 -m scalefold.cli bench attention --forward-only --kinds fwd \
  > $OUT/call16_attn256.txt 2>&1; tail -16 $OUT/call16_attn256.txt
for which in base new; do
  if [ $which = base ]; then PP=/tmp/base:$PYTHONPATH; else PP=$PYTHONPATH; fi
  PYTHONPATH=$PP timeout 90 python3 -m scalefold.cli bench eval --speed h200 --no-eval-warm-up \
    --lengths 100,200,275,450,700 --passes 3 > $OUT/call16_eval5_$which.txt 2>&1
  echo "== eval $which"; grep -E "pass|evaluation of" $OUT/call16_eval5_$which.txt
done
