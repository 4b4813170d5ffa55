#!/bin/bash
# Twenty-second session, first call: the card decides (call H needs an H200).
name=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo "card: $name"
case "$name" in
  *H200*) bash .devsnap/callH.sh ;;
  *) bash .devsnap/callQ2.sh ;;
esac
