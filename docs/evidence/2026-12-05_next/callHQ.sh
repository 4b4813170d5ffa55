#!/bin/bash
# Next session's first call (the card decides): call H on an H200 (the number),
# else call HK (the 32-key blocks screen).
name=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo "card: $name"
case "$name" in
  *H200*) bash .devsnap/callH.sh ;;
  *) bash .devsnap/callHK.sh ;;
esac
