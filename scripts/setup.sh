#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian machine with the
# Swift toolchain, without touching the system Python:
#  - from Debian (only what is missing): a C compiler, binutils, pkg-config
#    and python3-venv where the Python lacks venv/ensurepip;
#  - a project virtual environment, .venv at the repository root
#    (TINF_VENV=/path elsewhere), with requirements-dev.txt in it.
# Prints the environment's path. scripts/test.sh and scripts/demo.sh run this
# through scripts/venv.sh, which puts the environment first on PATH.
#
# torch (the peer of the PyTorch tests) is not in requirements-dev.txt: PyPI's
# default torch wheel pulls about 3 GB of CUDA libraries. It is installed only
# from a local wheel folder pip is configured with (find-links, e.g. a CPU
# build); without one the tests that need torch skip with a reason.
# TINF_TORCH=index installs `torch>=2.1` from the configured index instead,
# TINF_TORCH=none never installs it.
#
# Re-running is quick: pip only checks what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${TINF_VENV:-$PWD/.venv}
python=${TINF_PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1

missing=()
command -v cc >/dev/null || missing+=(gcc libc6-dev)
command -v readelf >/dev/null || missing+=(binutils)
command -v strip >/dev/null || missing+=(binutils)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v "$python" >/dev/null || missing+=(python3)
if [ ! -x "$venv/bin/python" ] && ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
  missing+=(python3-venv)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing from Debian: ${missing[*]}" >&2
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi
# TINF_NO_SWIFT=1: only the Python side (scripts/build-wheel.sh --lib needs no Swift).
if [ "${TINF_NO_SWIFT:-0}" != 1 ] && ! command -v swift >/dev/null; then
  echo "setup: the Swift toolchain (6.3 or newer) is required: https://swift.org/install" >&2
  exit 1
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating the virtual environment $venv" >&2
  "$python" -m venv "$venv" >&2
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
fi
venv=$(cd "$venv" && pwd)
py="$venv/bin/python"

# torch: the version of a wheel found without the index (find-links only).
torch=()
case "${TINF_TORCH:-local}" in
  local)
    report=$(mktemp)
    if "$py" -m pip install -q --dry-run --no-index --no-deps --only-binary :all: --ignore-installed \
      --report "$report" torch >/dev/null 2>&1; then
      version=$("$py" -c 'import json, sys; print(json.load(open(sys.argv[1]))["install"][0]["metadata"]["version"])' "$report")
      torch=("torch==$version")
    else
      echo "setup: no local torch wheel (pip find-links): the tests that need torch will skip;" \
        "TINF_TORCH=index scripts/setup.sh installs it from the package index" >&2
    fi
    rm -f "$report" ;;
  index) torch=("torch>=2.1") ;;
  none) ;;
  *) echo "setup: TINF_TORCH must be local, index or none" >&2; exit 2 ;;
esac

"$py" -m pip install -q -r requirements-dev.txt "${torch[@]}" >&2
echo "$venv"
