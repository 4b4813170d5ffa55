#!/bin/bash
# Call BT (thirty-eighth session, any card, <= 9.5 min). H200: callNext.sh (issue 18's
# real pass, then its GPU suite). Other cards: the bias tile loaded stages ahead
# (FlashConfig.pipelined_bias_loads) or through a TMA descriptor (bias_tma): their GPU
# tests, the forward's microbenchmark against bias_mma and the load, then (where the best
# form wins at 704 residues) the six-chain evaluation screen of h200 with it.
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo "card: $card"
if [[ $card == *H200* ]]; then bash .devsnap/callNext.sh; exit; fi
source scripts/gpu_env.sh
T0=$(date +%s)
SCALEFOLD_GPU_TEST_WORKERS=0 timeout 150 bash scripts/gpu_tests.sh 140 \
  "tests/kernels/test_kernels.py::test_flash_attention_bias_tma_same_forward" \
  "tests/kernels/test_kernels.py::test_flash_attention_pipelined_bias_loads_same_forward" \
  > $OUT/callBT_tests.txt 2>&1
tail -3 $OUT/callBT_tests.txt
timeout 240 python3 docs/evidence/2026-12-08_s38/mb_bias_tma.py 2>&1 | grep -v -i warn \
  | tee $OUT/callBT_mb.txt
echo "mb done at $(( $(date +%s) - T0 )) s"
# the screen of the best form's evaluation variant, where it wins at 704 residues by 3%
# (best/mma under 0.97): tma -> attention_bias_tma, pipe -> attention_pipelined_bias_loads
# (it takes precedence over the evaluation copy's bias_mma), pipe_f32 -> that and the
# folded triangle bias written in fp32 (triangle_attention_fp32_bias)
r=$(awk '$1 == "triangle" && $2 == 704 {for (i = 4; i <= NF; i++) if ($i ~ /^\(/) {print $(i-1), $i; exit}}' $OUT/callBT_mb.txt)
echo "triangle 704 best/mma (form): ${r:-none}"
case ${r#* } in
  "(tma)") v=h200+attention_bias_tma ;;
  "(pipe)") v=h200+attention_pipelined_bias_loads ;;
  "(pipe_f32)") v=h200+attention_pipelined_bias_loads+triangle_attention_fp32_bias ;;
  *) v= ;;
esac
awk -v r="${r%% *}" 'BEGIN {exit !(r + 0 > 0 && r < 0.97)}' && [[ -n $v ]] || exit 0
timeout -k 5 $(( 580 - ($(date +%s) - T0) )) python3 -m scalefold.cli bench eval --speed h200 \
  --passes 2 --no-eval-warm-up --lengths 96,160,224,288,352,704 --variants h200,$v \
  --json $OUT/callBT_eval.json > $OUT/callBT_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callBT_eval.txt | grep -E "^==|pass [12]|Error|^h200|^ +[0-9]+-[0-9]+ " | tail -20
echo "done at $(( $(date +%s) - T0 )) s"
