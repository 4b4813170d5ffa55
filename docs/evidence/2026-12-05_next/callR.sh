#!/bin/bash
# Bisect the zero lDDT-Ca of 3pwp_A (275 residues) in today's h200 evaluation.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
# the 32-key forward alone at the evaluation's shapes (bf16, c = 32, -1e9 masks): ~30 s
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_kernels.py \
  -k "evaluation_shapes_bf16" > $OUT/callR_tests.txt 2>&1
# the h200 evaluation copy at the benchmark's widths (2 blocks), 64/100/200/275 residues,
# against fp32: finite and near (~1 min)
timeout 300 python3 -m pytest -q -p no:cacheprovider tests/train/test_evaluate.py \
  -k "benchmark_widths_is_finite" >> $OUT/callR_tests.txt 2>&1
grep -E "passed|failed|rror" $OUT/callR_tests.txt | tail -8
timeout 450 python3 .devsnap/bisect_lddt.py ${1:-none,+attention_half_key_blocks,pg_loop,-opm_residual_epilogue,ln_launches} > $OUT/callR.txt 2>&1
grep -E "^===|mean lDDT|difference|Error|error" $OUT/callR.txt
