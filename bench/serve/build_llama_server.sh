#!/usr/bin/env bash
# Builds llama.cpp's own server (llama-server, continuous batching over --parallel slots) and
# llama-quantize from the llama.cpp source vendored in the llama-cpp-python sdist (the package of
# python/requirements-bench.txt), fetched from PyPI with pip (no other download; the web UI is left
# out; about 40 minutes on 2 busy cores, once). Prints the directory holding both binaries; cached in
# $STRATA_CACHE (default ~/.cache/strata)/llama-server-<version>.
#   bench/serve/build_llama_server.sh [VERSION]   (default: 0.3.36, the llama-cpp-python version the
#                                                 tables in bench/README.md were taken with)
# Why not `python -m llama_cpp.server`: it serves one request at a time (a global lock around the one
# Llama object, no parallel slots) and takes prompts as text only, so it cannot show batching (see
# bench/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
root="${STRATA_CACHE:-$HOME/.cache/strata}"
ver="${1:-0.3.36}"
out="$root/llama-server-$ver"
if [ -x "$out/bin/llama-server" ] && [ -x "$out/bin/llama-quantize" ]; then echo "$out/bin"; exit 0; fi
mkdir -p "$out"
exec 9>"$out.lock"; flock 9
if [ ! -d "$out/src" ]; then
  tmp=$(mktemp -d)
  pip download --quiet --no-deps --no-binary llama-cpp-python "llama-cpp-python==$ver" -d "$tmp" >&2 ||
    ls "$tmp"/llama_cpp_python-*.tar.gz >/dev/null  # pip may fail on metadata after saving the sdist
  tar xzf "$tmp"/llama_cpp_python-"$ver".tar.gz -C "$tmp"
  mv "$tmp/llama_cpp_python-$ver/vendor/llama.cpp" "$out/src"
  rm -rf "$tmp"
fi
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
nice -n 19 cmake -S "$out/src" -B "$out/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DGGML_NATIVE=ON -DGGML_CUDA=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF "${launcher[@]}" >&2
nice -n 19 cmake --build "$out/build" -j "${JOBS:-2}" --target llama-server llama-quantize >&2
mkdir -p "$out/bin"
cp "$out/build/bin/llama-server" "$out/build/bin/llama-quantize" "$out/bin/"
echo "$out/bin"
