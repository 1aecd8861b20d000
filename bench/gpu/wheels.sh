#!/usr/bin/env bash
# Download into .whl/ (git-ignored) the wheels a GPU machine without network lacks for harness:
# every pin of bench/gpu/wheels.txt, for CPython 3.12 on manylinux x86-64, fetched with
# `pip download --no-deps --only-binary=:all:`; the few PyPI ships only as source ("# sdist" in
# the list) are built here into pure-python wheels with `pip wheel --no-deps` (DeepSpeed with
# DS_BUILD_OPS=0: its CUDA ops are compiled on first use, on the GPU machine). Then prints each
# wheel's size and the total, and fails when the total passes the budget (60 MB).
#
#   bash bench/gpu/wheels.sh            # here, where PyPI is reachable; then on the GPU machine:
#   bash bench/gpu/check.sh OUT_DIR     # installs these with pip install --no-index --no-deps
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
DEST=${WHEEL_DIR:-.whl}
LIST=bench/gpu/wheels.txt
BUDGET_MB=${WHEEL_BUDGET_MB:-60}
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64
           manylinux2014_x86_64 manylinux1_x86_64)

pins() {  # "name==version<TAB>binary|sdist" for every pin of the list
    sed -e 's/[[:space:]]*$//' "$LIST" | awk '/^[^#[:space:]]/ { kind = ($0 ~ /# sdist$/) ? "sdist" : "binary";
                                                     print $1 "\t" kind }'
}

rm -rf "$DEST" && mkdir -p "$DEST"
binary=() sdist=()
while IFS=$'\t' read -r pin kind; do
    if [[ $kind == sdist ]]; then sdist+=("$pin"); else binary+=("$pin"); fi
done < <(pins)

platform_args=()
for p in "${PLATFORMS[@]}"; do platform_args+=(--platform "$p"); done
echo "downloading ${#binary[@]} wheels (CPython 3.12, manylinux x86-64) into $DEST/"
"$PYTHON" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --abi cp312 --abi abi3 --abi none "${platform_args[@]}" -d "$DEST" "${binary[@]}"
for pin in "${sdist[@]}"; do
    echo "building a pure-python wheel of $pin from its sdist"
    DS_BUILD_OPS=0 "$PYTHON" -m pip wheel -q --disable-pip-version-check --no-deps --no-binary=:all: \
        -w "$DEST" "$pin"
done

bad=$(find "$DEST" -type f -name '*.whl' ! -name '*-py3-none-any.whl' ! -name '*-py2.py3-none-any.whl' \
      ! -name '*cp312*manylinux*x86_64*.whl' ! -name '*-py312-none-any.whl' -printf '%f\n')
if [[ -n $bad ]]; then echo "error: wheels that will not install on CPython 3.12 x86-64: $bad" >&2; exit 1; fi
count=$(find "$DEST" -type f -name '*.whl' | wc -l)
want=$(pins | wc -l)
if [[ $count -ne $want ]]; then echo "error: $count wheels in $DEST for $want pins of $LIST" >&2; exit 1; fi

du -b "$DEST"/*.whl | sort -n | awk '{ printf "%8.2f MB  %s\n", $1 / 1e6, $2 }'
total=$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)
printf 'total: %d wheels, %.1f MB (budget %d MB)\n' "$count" "$(echo "$total / 1000000" | bc -l)" "$BUDGET_MB"
if (( total > BUDGET_MB * 1000000 )); then echo "error: wheels over the $BUDGET_MB MB budget" >&2; exit 1; fi
