#!/bin/bash
# Twenty-first session, call Q (~9.5 min, any card; first): a quick screen of every
# evaluation lever waiting for a measurement, in one process. Six chains at 96-704
# residues (64-residue buckets: six shapes, not the 45-chain screen's eleven, whose
# warm-up took ~135 s a variant), no warm-up and two passes: the first pass carries the
# compiles and captures, the second is the steady one the table compares ("pass s").
# Most wanted first: a variant cut off by the limit is the least wanted.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
B=h200+eval_length_buckets=64
L=ln_projection_forward_kernel; G=attention_gate_epilogue
CSM=eval_compile_structure_module; J=trimul_projection_forward_kernel
timeout 560 python3 -m scalefold.cli bench eval --speed h200 --passes 2 --no-eval-warm-up \
  --lengths 96,192,288,416,576,704 \
  --variants $B,$B+$L+$G,$B+$L,$B+$G,$B+$CSM,$B+$L+$G+$CSM,$B+$J,$B+eval_aligned_lengths+$CSM \
  --json $OUT/callQ_eval.json > $OUT/callQ_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callQ_eval.txt | grep -E "^==|pass [12]|evaluation of|FAILED|Error|^variant|^h200" | tail -40
