#!/usr/bin/env bash
# One self-contained GPU check of harness, for a machine with a GPU and no network:
#
#   bash bench/gpu/wheels.sh                 # first, where PyPI is reachable: the missing wheels into .whl/
#   bash bench/gpu/check.sh OUT_DIR          # then, on the GPU machine, from the repository root
#   GPU_CHECK_DRY=1 bash bench/gpu/check.sh OUT_DIR   # the same phases, tiny shapes, on a CPU (CI runs this)
#
# Phases, each under `timeout` inside one overall budget (GPU_CHECK_BUDGET_S, 480 s; a phase that
# fails or times out is recorded and the next one runs):
#   install  pip install --no-index --no-deps the wheels of .whl/ into WORK/site          (none: skipped-no-wheels)
#   env      GPU, driver, torch/CUDA, package versions; every built-in plugin imports   -> env.json
#   tests    pytest -m gpu (tests/test_gpu.py); without CUDA rehearsed on the CPU        -> tests.xml
#   model    a ~0.49 B Llama-shaped model, random weights, bf16 (bench/gpu/make_model.py)
#   smoke    harness run experiments/gpu-smoke.toml on it: SFT -> RM -> PPO -> evaluation -> results.json
#   memory   bench/rl_memory.py at 0.5 B: four full models vs the lean RL stage          -> memory.json
#   profile  bench/gpu/ppo_profile.py: a PPO step's pieces, static cache + compile        -> profile.json
# and writes summary.json (every phase's status and the headline figures) and check.log into
# OUT_DIR: at most 8 files. Working files (model, run store) go to GPU_CHECK_WORK (a temp dir).
# Exit status 0 when every phase is ok (or skipped for want of CUDA or of wheels in a dry run).
set -uo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
OUT=${1:?usage: bash bench/gpu/check.sh OUT_DIR}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
WORK=${GPU_CHECK_WORK:-$(mktemp -d)}
mkdir -p "$WORK" && rm -f "$WORK/phases.jsonl"
DRY=${GPU_CHECK_DRY:-0}
BUDGET=${GPU_CHECK_BUDGET_S:-480}
PY=${PYTHON:-python3}
START=$SECONDS
export PYTHONUNBUFFERED=1 PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH} HARNESS_DISABLE_PLUGIN_AUTOLOAD=1 \
       HARNESS_CACHE_DIR=${HARNESS_CACHE_DIR:-$WORK/cache} HF_DATASETS_CACHE=$WORK/hf-datasets \
       HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
       TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-$HOME/.cache/harness/torch_extensions/$("$PY" -c \
           'import hashlib, sys; print(hashlib.sha256(sys.prefix.encode()).hexdigest()[:12])')}
exec > >(tee "$OUT/check.log") 2>&1

CUDA=$("$PY" -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null || echo 0)
echo "harness GPU check: dry=$DRY cuda=$CUDA budget=${BUDGET}s out=$OUT work=$WORK ($(date -u +%FT%TZ))"

record() {  # record NAME STATUS SECONDS RC NOTE
    "$PY" -c 'import json, sys; n, s, t, rc, note = sys.argv[1:]
print(json.dumps({"name": n, "status": s, "seconds": int(t), "rc": int(rc), "note": note}))' "$@" \
        >> "$WORK/phases.jsonl"
    echo "=== $1: $2 (${3}s, rc $4)${5:+ — $5}"
}

phase() {  # phase NAME CAP_S NOTE CMD...: CMD under timeout (its cap, or what is left of the budget)
    local name=$1 cap=$2 note=$3; shift 3
    local left=$((BUDGET - (SECONDS - START)))
    local limit=$((cap < left ? cap : left))
    if ((limit < 15)); then record "$name" skipped-time 0 0 "overall budget of ${BUDGET}s spent"; return; fi
    echo; echo "=== $name (limit ${limit}s): $*"
    local t0=$SECONDS rc status
    timeout -k 15 "$limit" "$@"
    rc=$?
    if ((rc == 124 || rc == 137)); then status=timeout; elif ((rc != 0)); then status=failed; else status=ok; fi
    if [[ $status == ok && -n $note ]]; then status=${note%%:*}; note=${note#*: }; fi
    record "$name" "$status" $((SECONDS - t0)) "$rc" "$note"
}

# what changes between the GPU run and the CPU rehearsal (tiny shapes, fp32, CPU; DeepSpeed stays on)
if [[ $DRY == 1 ]]; then  # one thread: spinning OpenMP threads crawl on a CPU shared with other jobs
    export OMP_NUM_THREADS=1
    MODEL_ARGS=(--shape tiny --dtype fp32)
    SMOKE_SETS=("compute.mixed_precision='no'" compute.threads=1 world.embedded.sft_size=48
                world.embedded.rm_size=32 world.embedded.rl_size=32 world.embedded.eval_size=16
                sft.next_token.batch_size=8 sft.next_token.eval_samples=4
                reward_model.bradley_terry.normalization_samples=8 optimizer.ppo.steps=2
                optimizer.ppo.batch_size=8 optimizer.ppo.minibatch_size=4 optimizer.ppo.max_new_tokens=8
                optimizer.ppo.checkpoint_every=1 evaluation.prompts=8 evaluation.max_new_tokens=8
                evaluation.lm_eval_tax.limit=5)
    MEMORY_ARGS=(--size micro --backend cpu --batch-size 4 --new-tokens 8 --threads 1)
    PROFILE_ARGS=(--backend cpu --batch-size 8 --minibatch-size 4 --new-tokens 8 --repeats 2 --threads 1)
else
    MODEL_ARGS=(--shape 0.5b --dtype bf16)
    SMOKE_SETS=()
    MEMORY_ARGS=(--size 0.5b --batch-size 8 --new-tokens 16)
    PROFILE_ARGS=(--backend deepspeed --batch-size 32 --minibatch-size 16 --new-tokens 48 --repeats 3)
fi
NO_CUDA=""
if [[ $CUDA != 1 ]]; then NO_CUDA="skipped-no-cuda: "; fi

PIP=("$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --no-cache-dir --upgrade)
if ! compgen -G ".whl/*.whl" > /dev/null; then
    record install skipped-no-wheels 0 0 "no .whl/: run bash bench/gpu/wheels.sh where PyPI is reachable"
elif "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
    phase install 120 "" "${PIP[@]}" --target "$WORK/site" .whl/*.whl
    export PYTHONPATH=$WORK/site:$PYTHONPATH
else  # the wheels are for the GPU machine's CPython 3.12: check that they install there, import nothing
    phase install 120 "ok: installed for CPython 3.12 into a folder this Python does not import" \
        "${PIP[@]}" --target "$WORK/site-cp312" --python-version 3.12 --implementation cp --only-binary=:all: \
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 .whl/*.whl
fi

phase env 60 "" "$PY" bench/gpu/report.py env "$OUT"

tests_note=""
if [[ $CUDA != 1 ]]; then tests_note="skipped-no-cuda: rehearsed on the CPU (HARNESS_GPU_TESTS_ON_CPU=1)"; fi
HARNESS_GPU_TESTS_ON_CPU=$((1 - CUDA)) phase tests 150 "$tests_note" \
    "$PY" -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider --junitxml="$OUT/tests.xml"

phase model 150 "" "$PY" bench/gpu/make_model.py "$WORK/model" "${MODEL_ARGS[@]}" \
    --experiment experiments/gpu-smoke.toml --json "$WORK/model.json"

sets=(--set "model.base='$WORK/model'")
for s in "${SMOKE_SETS[@]}"; do sets+=(--set "$s"); done
phase smoke 270 "" "$PY" -m harness run experiments/gpu-smoke.toml -o "$WORK/runs" --no-progress "${sets[@]}"
cp "$WORK/runs/gpu-smoke/results.json" "$OUT/results.json" 2>/dev/null

phase memory 150 "${NO_CUDA:+${NO_CUDA}peak RSS only, no torch.cuda.max_memory_allocated}" \
    "$PY" bench/rl_memory.py "${MEMORY_ARGS[@]}" --json "$OUT/memory.json"

phase profile 180 "${NO_CUDA:+${NO_CUDA}CPU timings; transformers compiles the static cache only on a GPU}" \
    "$PY" bench/gpu/ppo_profile.py "$WORK/model" "${PROFILE_ARGS[@]}" --json "$OUT/profile.json"

echo; echo "=== summary ($((SECONDS - START))s in all)"
"$PY" bench/gpu/report.py summary "$OUT" "$WORK"
"$PY" -c 'import json, sys; sys.exit(0 if json.load(open(sys.argv[1]))["ok"] else 1)' "$OUT/summary.json"
status=$?
exec >&- 2>&-
wait  # for tee to write the last lines of check.log
exit $status
