#!/bin/bash
# Send the compile caches back from a device call, for the next session's fresh machine.
# Usage (inside a call, after `source scripts/gpu_env.sh` and the work that compiles):
#   bash scripts/gpu_cache.sh pack        # writes $OUT/compile_cache.tgz.part-aa, -ab, ...
# Then, on the development machine, copy the parts into .devcache/ (git-ignored:
#   echo /.devcache/ >> .git/info/exclude) and add ".devcache" to the call's carry.
# Parts are 15 MiB (a call returns files of at most 16 MiB); more than three parts would
# crowd out the call's own result files (8 at most) and the carry's 64 MiB, so then it
# packs nothing and says so.
set -euo pipefail
cache=${SCALEFOLD_COMPILE_CACHE:-/tmp/scalefold_compile_cache}
case "${1:-}" in
  pack)
    [ -d "$cache" ] || { echo "no compile cache at $cache"; exit 1; }
    tmp=$(mktemp -d)
    # Triton's per-kernel dumps and inductor's scratch output are not needed to reuse it.
    tar czf "$tmp/cache.tgz" -C "$cache" --exclude='*.ttir' --exclude='*.ttgir' \
      --exclude='*.llir' --exclude='*.source' .
    size=$(stat -c %s "$tmp/cache.tgz")
    if [ "$size" -gt $((45 * 1024 * 1024)) ]; then
      echo "compile cache packs to $((size / 1048576)) MiB: over 45 MiB, not sent back"
      exit 0
    fi
    split -b 15M "$tmp/cache.tgz" "$OUT/compile_cache.tgz.part-"
    echo "compile cache: $((size / 1048576)) MiB in $(ls "$OUT"/compile_cache.tgz.part-* | wc -l) part(s)"
    rm -rf "$tmp"
    ;;
  *)
    echo "usage: bash scripts/gpu_cache.sh pack" >&2
    exit 2
    ;;
esac
