#!/bin/bash
# Call T (any card, <= 9.5 min; thirtieth session): (1) the attention forward of the
# evaluation before and after the rescale fix, each in its own process on this card,
# A/B/A/B (mb_rescale.py; .devsnap/old3 = `git archive f89226d implementations`, the
# fix's parent); (2) the trained-weights lDDT-Ca check of today's h200 evaluation on a
# checkpoint carried in .devck (seed 1 of the embedded default trained to its target on
# the CPU: the check asks whether the fast evaluation scores trained weights as fp32
# does, wherever they were trained), at the default features and at the trained ones.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
T0=$(date +%s)
CKPT=$(ls -t .devck/*.pt | head -1); echo "checkpoint $CKPT"
check() {  # $1: output name; the rest: extra flags
  local name=$1; shift
  timeout -k 5 110 python3 -m scalefold.cli bench eval --check-lddt --speed h200 \
    --data-dir .cache/mini --preset small --checkpoint $CKPT \
    --val-chain-ids 5pti_A,3pwp_A,3pwp_B,3pwp_D "$@" --json $OUT/$name.json > $OUT/$name.txt 2>&1
  grep -v "^\s" $OUT/$name.txt | grep -v -i warn | tail -4
  echo "$name done at $(( $(date +%s) - T0 )) s"
}
check callT_check_lddt
check callT_check_lddt_trained_features --max-msa-clusters 16 --max-extra-msa 32 \
  --num-recycling-iters 0
for round in 1 2; do
  for code in old new; do
    left=$(( 580 - ($(date +%s) - T0) )); (( left > 30 )) || break 2
    if [[ $code == old ]]; then PP=$PWD/.devsnap/old3/implementations/pytorch; else PP=; fi
    PYTHONPATH=$PP${PP:+:}$PYTHONPATH timeout -k 5 $(( left < 150 ? left : 150 )) \
      python3 .devsnap/mb_rescale.py > $OUT/callT_mb_${code}${round}.txt 2>&1
    echo "$code $round: $(grep -E '^== all|kernels from' $OUT/callT_mb_${code}${round}.txt | tr '\n' ' ') at $(( $(date +%s) - T0 )) s"
  done
done
