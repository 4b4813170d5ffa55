# Source on a GPU machine without network (the lent H200): the package from the source
# tree, carried wheels (mlperf-logging) and the Kalign .deb from WHEEL_DIR (default .whlg).
# Usage: source scripts/gpu_env.sh
# Make WHEEL_DIR here first (it is git-ignored; see /work/.library/device/README.md):
#   echo /.whlg/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux2014_x86_64 -d .whlg mlperf-logging==4.1.68
#   (cd .whlg && apt-get download kalign)        # Ubuntu's kalign 3.3.5 .deb
# and carry it with the mini dataset: carry [".whlg", ".cache/mini"].
WHEEL_DIR=${WHEEL_DIR:-.whlg}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site "$WHEEL_DIR"/*.whl || return 1
for deb in "$WHEEL_DIR"/kalign*.deb; do dpkg -x "$deb" /tmp/kalign; done
export PATH=/tmp/kalign/usr/bin:$PATH
export PYTHONPATH=$PWD/implementations/pytorch:/tmp/site:$PWD
export SCALEFOLD_MINI_DIR=${SCALEFOLD_MINI_DIR:-$PWD/.cache/mini}
# Compile caches (inductor's FX graphs and kernels, Triton's binaries) in one folder, so
# that a call can send them back (`scripts/gpu_cache.sh pack`) and a later call on a fresh
# machine start from them: built from nothing, the h200 preset's compiles took ~230 s of
# a 30-minute device session (2026-12-04 call 39). A carried `.devcache/` holding the
# packed parts (compile_cache.tgz.part-*) is unpacked here.
export SCALEFOLD_COMPILE_CACHE=${SCALEFOLD_COMPILE_CACHE:-/tmp/scalefold_compile_cache}
export TORCHINDUCTOR_CACHE_DIR=$SCALEFOLD_COMPILE_CACHE/inductor
export TRITON_CACHE_DIR=$SCALEFOLD_COMPILE_CACHE/triton
if ls .devcache/compile_cache.tgz.part-* > /dev/null 2>&1 && [ ! -d "$TORCHINDUCTOR_CACHE_DIR" ]; then
  mkdir -p "$SCALEFOLD_COMPILE_CACHE"
  cat .devcache/compile_cache.tgz.part-* | tar xzf - -C "$SCALEFOLD_COMPILE_CACHE" \
    && echo "compile cache: $(du -sh "$SCALEFOLD_COMPILE_CACHE" | cut -f1) unpacked"
fi
# NVLink multicast stays off on the lent machines (device KINDS.md): a program using it can
# take the host's shared GPUs out of service.
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
