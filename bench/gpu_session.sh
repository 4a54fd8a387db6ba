#!/usr/bin/env bash
# Everything that needs a GPU, plus the CPU scaling of LABELSERVE_WORKERS over the device's 16 cores, in one device
# call that stops itself within 9 minutes. `make gpu-prep` builds what it carries and prints the call:
#   run(command="bash bench/gpu_session.sh", carry=[".whl", ".cache/gpu-session"], timeout_s=540)
# Steps run most important first, each under its own timeout and within the session's budget, so a slow step cannot
# eat the rest. After each one $OUT/gpu-session.json says what ran, failed, timed out or was skipped and why
# (bench/gpu_summary.py), so a call cut short still returns what it measured. $OUT gets 7 files (the device returns
# 8): gpu-session.json and .log, {pillow,nvjpeg}/serving-<model>.json per bench model, workers.json; commit them to
# bench/results/ under names that say GPU (e.g. serving-demo-gpu.json).
#
# GPU_SESSION_DRY_RUN=1 rehearses it on a CPU machine (tests/bench/test_gpu_session.py, in `make test`): the same
# steps and flags, the wheels installed with no index for the device's Python (pip's target options), each benchmark
# for about a second on the CPU, 1 and 2 workers; the GPU-only parts say why they skip; results in $OUT or a
# temporary folder. GPU_SESSION_MODELS narrows the bench models (default: bench/gpu_bundles.py's, in its order).
set -uo pipefail

dry=${GPU_SESSION_DRY_RUN:-0}
py=${GPU_SESSION_PYTHON:-python3}
budget=${GPU_SESSION_BUDGET_S:-520}  # for all steps; the call's timeout_s (540) leaves the summary its seconds
reserve=15                           # kept back for the summary
out=${OUT:-$(mktemp -d -t gpu-session-XXXXXX)}
work=$(mktemp -d -t gpu-session-work-XXXXXX)
session=.cache/gpu-session
repo=$session/models
mkdir -p "$out"
exec > >(tee -a "$out/gpu-session.log") 2>&1

if [[ $dry == 1 ]]; then
    seconds=1 levels="1 8" worker_counts="1 2" worker_seconds=1
    install_extra=$($py -m bench.gpu_wheels target-flags)  # wheels for the device's CPython, judged from here
    check_extra=--as-device                               # their needs met by the device's packages, per its docs
    export PYTHONPATH=$PWD                                # the steps run on this machine's own packages
else
    seconds=3 levels="1 8 32" worker_counts="1 2 4 8" worker_seconds=5 install_extra="" check_extra=""
    export PYTHONPATH=$work/site:$PWD
fi
export py out work session repo seconds levels worker_counts worker_seconds install_extra check_extra

record() { $py -m bench.gpu_summary record "$out" "$@" || echo "(could not record step $1)"; }

step() {  # step NAME CAP_S [--attach FILE] COMMAND: COMMAND under its own timeout, its outcome recorded
    local name=$1 cap=$2 attach=()
    shift 2
    if [[ $1 == --attach ]]; then attach=(--attach "$2"); shift 2; fi
    local left=$((budget - SECONDS - reserve))
    if ((left < 20)); then
        record "$name" skipped 0 "the session's ${budget}s were spent before it"
        return
    fi
    local limit=$((cap < left ? cap : left)) start=$SECONDS rc=0
    echo
    echo "== $name: at most ${limit}s ($((budget - SECONDS))s of the session left) =="
    timeout -k 10 "$limit" bash -c "$1" || rc=$?
    case $rc in
        0) record "$name" ran $((SECONDS - start)) "" "${attach[@]}" ;;
        124 | 137) record "$name" "timed out" $((SECONDS - start)) "stopped at its ${limit}s timeout" "${attach[@]}" ;;
        *) record "$name" failed $((SECONDS - start)) "exit status $rc: see gpu-session.log" "${attach[@]}" ;;
    esac
}

install_wheels() {  # as on the device: no index, no dependencies, into a fresh folder; then their needs checked
    # shellcheck disable=SC2086  # the extra options are a list
    $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$work/site" \
        $install_extra .whl/*.whl && $py -m bench.gpu_wheels check "$work/site" $check_extra
}

environment() {
    if command -v nvidia-smi >/dev/null; then nvidia-smi; fi
    $py -m bench.gpu_summary environment "$out"
}

serving() {  # serving MODEL pillow|torch SERVER...: JPEG in, JSON out against the engine alone, torch engine
    local model=$1 decode=$2 dir=$out/pillow
    shift 2
    if [[ $decode == torch ]]; then dir=$out/nvjpeg; fi
    # shellcheck disable=SC2086  # levels is a list
    $py -m bench.service_vs_engine --repository "$repo" --models "$model" --servers "$@" --engine torch \
        --jpeg-decode "$decode" --batch 32 --seconds "$seconds" --rounds 1 --concurrency $levels --out-dir "$dir"
}

gpu_tests() {  # every test file with a test marked gpu; each skip says why
    # shellcheck disable=SC2046  # one argument per file
    $py -m pytest -q -rs -p no:cacheprovider -m gpu --junitxml "$work/gpu-tests.xml" \
        $(grep -rl --include='test_*.py' 'mark\.gpu' tests | sort)
}

workers() {  # 1/2/4/8 server processes on the CPU cores, onnxruntime, the demo model alone
    mkdir -p "$work/demo-only" && ln -sfn "$PWD/$repo/demo" "$work/demo-only/demo"
    # shellcheck disable=SC2086  # worker_counts is a list
    $py -m bench.workers --repository "$work/demo-only" --model demo --workers $worker_counts --concurrency 64 \
        --seconds "$worker_seconds" --client-processes 2 --batch 16 --out "$out/workers.json"
}
export -f install_wheels environment serving gpu_tests workers

hook() {  # hook NAME MODULE WHAT: a feature's figure on the GPU, once its benchmark exists
    local name=$1 module=$2 what=$3
    if [[ ! -f bench/$module.py ]]; then
        record "$name" skipped 0 "not built yet: $what (bench/$module.py; called with --repository, --models, \
--engine torch, --seconds and --out FILE.json)"
        return
    fi
    step "$name" 90 --attach "$work/$name.json" "$py -m bench.$module --repository $repo --models $models \
        --engine torch --seconds $seconds --out $work/$name.json"
}

step wheels 60 install_wheels
step environment 60 environment
models=${GPU_SESSION_MODELS:-$($py -m bench.gpu_bundles --list)}
echo "bench models, most important first: ${models:-none (bench.gpu_bundles --list failed)}"
step bundles 150 "$py -m bench.gpu_bundles --root $session --models $models"
for model in $models; do
    step "serving-$model" 120 "serving $model pillow labelserve labelserve-unbatched"
done
step gpu-tests 150 --attach "$work/gpu-tests.xml" gpu_tests
for model in $models; do
    step "nvjpeg-$model" 75 "serving $model torch labelserve"
done
step workers 120 workers
step label-monitoring 90 --attach "$work/label-monitoring.json" "$py -m bench.monitoring --repository $repo \
    --models $models --engine torch --parts cost --rounds 1 --seconds $seconds --out $work/label-monitoring.json"
hook grpc grpc_vs_http "OIP over gRPC against HTTP"

echo
$py -m bench.gpu_summary show "$out"
echo "results: $out (${SECONDS}s)"
exec >&- 2>&-
wait
