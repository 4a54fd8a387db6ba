# syntax=docker/dockerfile:1.7
# labelserve images. Two targets:
#   cpu  slim Python, onnxruntime (CPU), the serve extra only: no torch        docker build --target cpu -t labelserve:cpu .
#   gpu  onnxruntime-gpu (CUDA and TensorRT providers), TensorRT, torch and
#        the export extra so `labelserve export` runs; CUDA 13 from PyPI        docker build --target gpu -t labelserve:gpu .
# The model repository is a volume at /models; the service runs as UID 10001 on port 8000 (HTTP) and 8001 (gRPC).
#
# Dependencies are installed in layers of their own, from the lists that docker/requirements.py reads out of
# pyproject.toml, before the source is copied: editing the code rebuilds only the small layer that installs it.
# pip reaches PyPI during the build. Behind a TLS-intercepting proxy, give it the proxy's CA at build time without
# editing this file: bind a pip.conf (`[global] cert = <the CA file>`) over /etc/pip.conf, e.g. with buildah's
# `--volume`. tests/deploy/test_cpu_image.py builds and runs the cpu target that way.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# ---- wheels: the serve extra's dependencies, then the project, as wheels --------------------------------------------
FROM ${PYTHON_IMAGE} AS wheels
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml constraints.txt docker/requirements.py ./
RUN python requirements.py serve > requirements.txt \
    && pip wheel --wheel-dir /wheels/deps --constraint constraints.txt --requirement requirements.txt
COPY README.md ./
COPY labelserve/ labelserve/
COPY labelserve_tools/ labelserve_tools/
COPY service/ service/
COPY training/ training/
COPY export/ export/
RUN pip wheel --no-deps --wheel-dir /wheels/project .

# ---- cpu: the service on onnxruntime CPU ----------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS cpu
# The feedback store (answers kept for feedback, the feedback itself) is a SQLite file in /var/lib/labelserve, which
# the image's user owns, so a volume mounted there starts writable; /models may be read-only. For several replicas
# point LABELSERVE_STORE_URL at PostgreSQL (docker-compose.postgres.yml, the Helm chart's store.url).
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LABELSERVE_MODEL_REPOSITORY=/models LABELSERVE_HOST=0.0.0.0 LABELSERVE_PORT=8000 LABELSERVE_GRPC_PORT=8001 \
    LABELSERVE_STORE_URL=sqlite:////var/lib/labelserve/feedback.sqlite3
RUN groupadd --system --gid 10001 labelserve \
    && useradd --system --uid 10001 --gid labelserve --no-create-home --shell /usr/sbin/nologin labelserve \
    && mkdir /models /var/lib/labelserve && chown labelserve:labelserve /models /var/lib/labelserve
# the requirements list is copied (not only mounted) so that a changed list invalidates the cached install below
COPY --from=wheels /src/requirements.txt /tmp/requirements.txt
RUN --mount=type=bind,from=wheels,source=/wheels/deps,target=/wheels \
    pip install --no-index --find-links /wheels --requirement /tmp/requirements.txt
COPY --from=wheels /wheels/project/ /tmp/project/
RUN pip install --no-index --find-links /tmp/project "labelserve[serve]==0.1.0" \
    && pip check \
    && rm -rf /tmp/project /tmp/requirements.txt
USER 10001:10001
WORKDIR /home/labelserve
VOLUME ["/models", "/var/lib/labelserve"]
EXPOSE 8000 8001
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
STOPSIGNAL SIGTERM
CMD ["python", "-m", "service"]

# ---- gpu: onnxruntime-gpu, TensorRT and torch on one CUDA major ----------------------------------------------------
# One CUDA major, 13, for everything that links CUDA (docker/gpu-requirements.txt): torch 2.14.1's Linux wheels are
# CUDA 13.0 builds (cuda-toolkit 13.0.3, cudnn-cu13, nccl-cu13), so cuda-bindings is 13.x; onnxruntime-gpu is CUDA 13
# on PyPI from 1.27; TensorRT is tensorrt-cu13 10.x, the major that onnxruntime-gpu's TensorRT provider links
# (libnvinfer.so.10). A CUDA 12 onnxruntime-gpu or tensorrt-cu12 next to torch would put two CUDA runtimes in one
# process, and a TensorRT the provider cannot load. The CUDA libraries are NVIDIA's PyPI wheels (nvidia-*) that those
# packages pull, so the base is plain Python, not a CUDA image; the NVIDIA container toolkit adds the driver (libcuda)
# at run time. LD_LIBRARY_PATH lets onnxruntime's CUDA and TensorRT providers find the wheels' libraries without
# importing torch first.
# TensorRT's libraries (tensorrt-cu13-libs) are served by NVIDIA's index only. Where it cannot be reached, build with
# --build-arg NVIDIA_PIP_INDEX= --build-arg GPU_WITHOUT=tensorrt-cu13: onnxruntime then logs that its TensorRT provider
# cannot load libnvinfer.so.10 and falls back to CUDA, or to the CPU without a GPU; /models shows the provider in use.
FROM ${PYTHON_IMAGE} AS gpu
ARG NVIDIA_PIP_INDEX=https://pypi.nvidia.com
ARG GPU_WITHOUT=""
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH \
    LD_LIBRARY_PATH=/opt/venv/lib/python3.11/site-packages/nvidia/cu13/lib:/opt/venv/lib/python3.11/site-packages/nvidia/cudnn/lib:/opt/venv/lib/python3.11/site-packages/tensorrt_libs \
    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    LABELSERVE_MODEL_REPOSITORY=/models LABELSERVE_HOST=0.0.0.0 LABELSERVE_PORT=8000 LABELSERVE_GRPC_PORT=8001 \
    LABELSERVE_EXECUTION_PROVIDERS=tensorrt,cuda,cpu \
    LABELSERVE_STORE_URL=sqlite:////var/lib/labelserve/feedback.sqlite3
RUN python -m venv /opt/venv \
    && groupadd --system --gid 10001 labelserve \
    && useradd --system --uid 10001 --gid labelserve --no-create-home --shell /usr/sbin/nologin labelserve \
    && mkdir /models /var/lib/labelserve && chown labelserve:labelserve /models /var/lib/labelserve
WORKDIR /src
COPY pyproject.toml constraints.txt docker/requirements.py docker/gpu-requirements.txt ./
RUN python requirements.py serve export train gpu --without "onnxruntime,$GPU_WITHOUT" --add gpu-requirements.txt \
        > requirements.txt \
    && PIP_EXTRA_INDEX_URL="$NVIDIA_PIP_INDEX" pip install --constraint constraints.txt --requirement requirements.txt
COPY --from=wheels /wheels/project/ /tmp/project/
RUN pip install --no-deps /tmp/project/labelserve-*.whl && rm -rf /tmp/project
USER 10001:10001
WORKDIR /home/labelserve
VOLUME ["/models", "/var/lib/labelserve"]
EXPOSE 8000 8001
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
STOPSIGNAL SIGTERM
CMD ["python", "-m", "service"]
