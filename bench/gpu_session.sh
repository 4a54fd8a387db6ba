#!/usr/bin/env bash
# Everything that needs a GPU (and the CPU scaling of LABELSERVE_WORKERS on its many cores), in one device call, so a
# session with a lent GPU spends its minutes measuring.
# Run through the device tool from the repository root, carrying the wheels and a bundle with a torch program:
#   run(command="bash bench/gpu_session.sh", carry=[".whl", ".cache/gpu-models"])
# .whl holds the service's pure-Python and cp312 wheels (plus TorchCodec for torch 2.11+cu130); the device image
# has torch, onnxruntime (CPU), cuda-bindings and nvidia-ml-py already. Results go to $OUT (or bench/results).
set -uo pipefail

out="${OUT:-bench/results}"
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD"

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, onnxruntime; print('torch', torch.__version__, 'onnxruntime', onnxruntime.__version__,
onnxruntime.get_available_providers())" | tee -a "$out/gpu.txt"

echo "== tests that need a GPU (each says why when it skips) =="
python3 -m pytest -q -rs -p no:cacheprovider -m gpu \
    tests/training/test_gpu.py tests/service/test_torch_engine.py tests/service/test_torch_jpeg.py \
    tests/service/test_cuda_runtime.py tests/service/test_tensorrt_engine.py tests/service/test_observability.py \
    2>&1 | tee "$out/gpu-tests.txt"

echo "== service against engine, torch engine on the GPU, Pillow decode then nvJPEG decode =="
for decode in pillow torch; do
    python3 -m bench.service_vs_engine --repository .cache/gpu-models --models demo --servers labelserve \
        --engine torch --jpeg-decode "$decode" --batch 32 --seconds 3 --rounds 1 --concurrency 1 8 32 \
        --out-dir "$out/svse-torch-$decode" 2>&1 | tee "$out/svse-torch-$decode.txt"
done

echo "== workers: 1/2/4/8 server processes on this machine's CPU cores (onnxruntime CPU, demo model; ~60 s) =="
timeout 120 python3 -m bench.workers --repository .cache/gpu-models --model demo --workers 1 2 4 8 \
    --concurrency 64 --seconds 5 --client-processes 2 --out "$out/workers.json" 2>&1 | tee "$out/workers.txt"
