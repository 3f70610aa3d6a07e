#!/usr/bin/env bash
# Install llama-cpp-python[server] 0.3.36 (built from the sdist with cmake, CPU only) into a venv.
#
# Usage: bash .ci/setup-llamacpp.sh VENV_DIR
# Env:   PYTHON       interpreter for the venv (default /root/.pyenv/versions/3.11.7/bin/python3)
#        WHEEL_DIR    where the built llama_cpp_python wheel is kept (default /tmp/llamacpp-wheels)
#        CMAKE_ARGS   cmake flags for the build (default "-DGGML_NATIVE=OFF", see below)
#
# Idempotent: an existing venv is reused; an existing wheel in $WHEEL_DIR is reused (no rebuild);
# pip is a no-op when the pinned version is already installed.
#
# Why -DGGML_NATIVE=OFF: the default build (GGML_NATIVE=ON, -march=native) on this Xeon (AMX + AVX-512)
# compiles ggml's AMX kernels and repacks the Q4_1 weights into the "AMX" buffer; the first decode then
# dies with SIGSEGV (si_code=SI_KERNEL, #GP) at `ldtilecfg` in ggml_backend_amx_mul_mat.
# With GGML_NATIVE=OFF ggml builds a portable x86-64 AVX2/FMA/F16C/BMI2 CPU backend (no AMX, no AVX-512).
# Build time: ~5-6 min wall on 2 cores. Installing from the kept wheel: seconds.
# The wheel is built with --no-cache-dir on purpose: pip's wheel cache is keyed by the sdist only, not by
# CMAKE_ARGS, so a cached -march=native wheel would otherwise be silently reused.
set -euo pipefail

VENV="${1:?usage: setup-llamacpp.sh VENV}"
PY="${PYTHON:-python3}"
VERSION="0.3.36"
WHEEL_DIR="${WHEEL_DIR:-$(dirname "$VENV")/wheels}"
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi

mkdir -p "$WHEEL_DIR"
shopt -s nullglob
wheels=("$WHEEL_DIR"/llama_cpp_python-"$VERSION"-*.whl)
if [ ${#wheels[@]} -eq 0 ]; then
    echo "Building llama-cpp-python==$VERSION with CMAKE_ARGS='$CMAKE_ARGS' (takes ~5-6 min on 2 cores)"
    "$VENV/bin/pip" wheel --no-deps --no-cache-dir -w "$WHEEL_DIR" "llama-cpp-python==$VERSION"
    wheels=("$WHEEL_DIR"/llama_cpp_python-"$VERSION"-*.whl)
    echo "$CMAKE_ARGS" > "$WHEEL_DIR/CMAKE_ARGS.txt"
fi
WHEEL="${wheels[0]}"

# Replace any other llama-cpp-python build already in the venv (e.g. a -march=native one from the
# registry sdist or from pip's wheel cache) by this wheel; then add the [server] extras (fastapi,
# uvicorn, sse-starlette, pydantic-settings, ...). Both steps are no-ops when already done.
installed_url="$("$VENV/bin/python" - <<'PYEOF' 2>/dev/null || true
import importlib.metadata as m, json
d = m.distribution("llama_cpp_python")
print(json.loads(d.read_text("direct_url.json") or "{}").get("url", "") if d.version == "0.3.36" else "")
PYEOF
)"
if [ "$installed_url" != "file://$WHEEL" ]; then
    "$VENV/bin/pip" install --force-reinstall --no-deps "$WHEEL"
fi
"$VENV/bin/pip" install "llama-cpp-python[server] @ file://$WHEEL"

"$VENV/bin/python" - <<'EOF'
import llama_cpp, llama_cpp.server.app  # noqa: F401
print("llama_cpp", llama_cpp.__version__, "OK;", llama_cpp.llama_print_system_info().decode().strip())
EOF
