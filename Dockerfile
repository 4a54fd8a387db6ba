# syntax=docker/dockerfile:1.7
# labelserve images. Two targets:
#   cpu  slim Python, onnxruntime (CPU), the serve extra only: no torch        docker build --target cpu -t labelserve:cpu .
#   gpu  CUDA runtime, onnxruntime-gpu with the CUDA and TensorRT providers,
#        TensorRT, and the export extra + torch so `labelserve export` runs     docker build --target gpu -t labelserve:gpu .
# The model repository is a volume at /models; the service runs as an unprivileged user on port 8000.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

# ---- wheels: the project and its serving dependencies, built once -------------------------------------------------
FROM ${PYTHON_IMAGE} AS wheels
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# dependency metadata first, so source edits do not invalidate the dependency layer
COPY pyproject.toml constraints.txt README.md ./
COPY labelserve/ labelserve/
COPY service/ service/
COPY training/ training/
COPY export/ export/
RUN pip wheel --wheel-dir /wheels --constraint constraints.txt ".[serve]"

# ---- cpu: the service on onnxruntime CPU ----------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LABELSERVE_MODEL_REPOSITORY=/models LABELSERVE_HOST=0.0.0.0 LABELSERVE_PORT=8000
RUN groupadd --system --gid 10001 labelserve \
    && useradd --system --uid 10001 --gid labelserve --no-create-home --shell /usr/sbin/nologin labelserve \
    && mkdir /models && chown labelserve:labelserve /models
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels "labelserve[serve]==0.1.0"
USER 10001:10001
WORKDIR /home/labelserve
VOLUME ["/models"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
STOPSIGNAL SIGTERM
CMD ["python", "-m", "service"]

# ---- gpu: CUDA + TensorRT providers, and the exporter ---------------------------------------------------------------
FROM ${CUDA_IMAGE} AS gpu
ENV DEBIAN_FRONTEND=noninteractive PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH \
    LABELSERVE_MODEL_REPOSITORY=/models LABELSERVE_HOST=0.0.0.0 LABELSERVE_PORT=8000 \
    LABELSERVE_EXECUTION_PROVIDERS=tensorrt,cuda,cpu
RUN apt-get update \
    && apt-get install --yes --no-install-recommends python3.12=3.12.3-* python3.12-venv=3.12.3-* \
    && rm -rf /var/lib/apt/lists/* \
    && python3.12 -m venv /opt/venv \
    && groupadd --system --gid 10001 labelserve \
    && useradd --system --uid 10001 --gid labelserve --no-create-home --shell /usr/sbin/nologin labelserve \
    && mkdir /models && chown labelserve:labelserve /models
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY labelserve/ labelserve/
COPY service/ service/
COPY training/ training/
COPY export/ export/
RUN pip install --constraint constraints.txt ".[serve,export,train,gpu]" \
        "onnxruntime-gpu==1.23.2" "tensorrt-cu12==10.13.3.9" "cuda-bindings==13.5.0" \
    && pip uninstall --yes onnxruntime
USER 10001:10001
WORKDIR /home/labelserve
VOLUME ["/models"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
STOPSIGNAL SIGTERM
CMD ["python", "-m", "service"]
