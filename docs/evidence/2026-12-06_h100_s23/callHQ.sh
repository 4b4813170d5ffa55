#!/bin/bash
# Twenty-third session, first call (any card): call BM (the bias tile as an MMA operand:
# tests, microbenchmark, screen). Then on an H200 callM with it if it gains, else callH.
name=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo "card: $name"
bash .devsnap/callBM.sh
