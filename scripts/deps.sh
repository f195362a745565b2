#!/usr/bin/env bash
# Installs the Debian packages strata builds against (idempotent; a no-op when all are present).
set -euo pipefail
PKGS=(build-essential cmake git pkg-config python3 python3-venv
      libdnnl-dev ocl-icd-opencl-dev libeigen3-dev libopenblas-dev libomp-dev libgtest-dev libbenchmark-dev
      libyaml-cpp-dev libhdf5-dev libcli11-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libpcre2-dev libicu-dev pybind11-dev
      libcpp-httplib-dev
      zlib1g-dev slurm-wlm munge
      openmpi-bin libopenmpi-dev
      fortunes fortunes-min
      qemu-user)  # qemu-user: the portable build's tests on an emulated older CPU (tests/emulated_cpu.sh)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# python3 may come from elsewhere (pyenv); only its venv module matters.
if command -v python3 >/dev/null && python3 -c "import venv, ensurepip" 2>/dev/null; then
  tmp=(); for p in "${missing[@]}"; do [[ $p == python3 || $p == python3-venv ]] || tmp+=("$p"); done; missing=("${tmp[@]}")
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
