# ScaleFold: MLPerf HPC OpenFold training image.
#
#   docker build -t scalefold:latest .
#   enroot import -o scalefold.sqsh dockerd://scalefold:latest   # for systems/run.sub (CONT=)
#
# Base: NVIDIA's NGC PyTorch container (CUDA 12.6, PyTorch 2.5 pre-release, Triton, NCCL,
# Python 3.10). Its PyTorch is a custom build that PyPI cannot replace, so every pip
# install below is constrained to the torch/numpy/triton versions the image ships (and
# the `gpu` extra, which only asks for Triton, is left out: the image has it).
ARG FROM_IMAGE_NAME=nvcr.io/nvidia/pytorch:24.09-py3
FROM ${FROM_IMAGE_NAME}

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake make gcc wget ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# Kalign 3.3.5, the version the benchmark's template re-alignment is defined with (the
# Ubuntu 22.04 package is older); built from the upstream release tag.
ARG KALIGN_VERSION=3.3.5
RUN wget -q -O /tmp/kalign.tar.gz \
        "https://github.com/TimoLassmann/kalign/archive/refs/tags/v${KALIGN_VERSION}.tar.gz" \
    && mkdir /tmp/kalign && tar -xzf /tmp/kalign.tar.gz -C /tmp/kalign --strip-components=1 \
    && cmake -S /tmp/kalign -B /tmp/kalign/build -DCMAKE_BUILD_TYPE=Release \
    && cmake --build /tmp/kalign/build -j "$(nproc)" \
    && cmake --install /tmp/kalign/build \
    && rm -rf /tmp/kalign /tmp/kalign.tar.gz \
    && kalign --version 2>&1 | grep -q "${KALIGN_VERSION}"

# Pin what the image already has, so resolving this package's dependencies never pulls a
# PyPI torch (CPU-only or built for another CUDA) or a numpy the image was not built with.
RUN python -m pip list --format=freeze \
        | grep -iE '^(torch|numpy|triton|pandas)==' > /etc/scalefold-constraints.txt \
    && cat /etc/scalefold-constraints.txt

# mpi4py for launches by mpirun (systems/run_mpirun.sh): without MASTER_ADDR, the ranks
# learn rank 0's host from it (scalefold.train.distributed.resolve_master). Built from
# source against the image's Open MPI (HPC-X; /usr/local/mpi links to it), so that it uses
# the same MPI library as the mpirun that starts the ranks, not one a wheel brings.
RUN export PATH="${PATH}:/usr/local/mpi/bin:/opt/hpcx/ompi/bin" \
    && command -v mpicc && command -v mpirun \
    && MPICC="$(command -v mpicc)" python -m pip install -c /etc/scalefold-constraints.txt \
        --no-binary=mpi4py "mpi4py>=3.1" \
    && python -c "import mpi4py; print('mpi4py', mpi4py.__version__, mpi4py.get_config())"

WORKDIR /workspace/scalefold

# Dependencies first (a layer that survives source edits), then the package itself.
COPY pyproject.toml README.md ./
COPY implementations ./implementations
RUN python -m pip install -c /etc/scalefold-constraints.txt "mlperf-logging>=3.0" \
    && python -m pip install -c /etc/scalefold-constraints.txt -e . \
    && python -c "import scalefold, scalefold.mlperf, torch; print('scalefold', scalefold.__version__, 'torch', torch.__version__)"

# Launch scripts and compliance tooling (run.sub starts ./run_and_time.sh in this folder).
COPY run_and_time.sh ./
COPY systems ./systems
COPY compliance ./compliance

# Many data-loader workers per rank: keep each from spawning a full OpenMP pool.
ENV OMP_NUM_THREADS=1
