#!/bin/bash
# The card decides: on an H200 the real pass first (callM.sh, today's h200 or the variant given), else callZ.sh (the launch changes screened; then call W).
name=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo "card: $name"
case "$name" in
  *H200*) if [ "${SHORT:-0}" = 1 ]; then bash .devsnap/callH2.sh; else bash .devsnap/callM.sh "${1:-h200}"; fi ;;
  *) bash .devsnap/callZ.sh ;;
esac
