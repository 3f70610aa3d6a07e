#!/usr/bin/env bash
# The model servers the served-model tests start (tests/backends/test_served_servers.py): vLLM's
# CPU build and llama-cpp-python's server, each in a venv of its own (vLLM pins transformers
# below the project's). Idempotent and kept between runs under $MEDBOARD_SERVERS (default
# ~/.cache/medboard-servers): a second run takes seconds. Prints the two variables the tests read.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="${MEDBOARD_SERVERS:-$HOME/.cache/medboard-servers}"
mkdir -p "$root"
bash "$here/setup-vllm.sh" "$root/vllm" >&2
WHEEL_DIR="$root/wheels" bash "$here/setup-llamacpp.sh" "$root/llamacpp" >&2
echo "export MEDBOARD_TEST_VLLM=$root/vllm/bin/python"
echo "export MEDBOARD_TEST_LLAMACPP=$root/llamacpp/bin/python"
