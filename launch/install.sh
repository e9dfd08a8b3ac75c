#!/usr/bin/env bash
# Installs mrr_jax into REPO/.venv for one accelerator: tpu, cuda12, cuda13 or cpu.
# tpu_pod.sh runs it on every TPU worker; on a GPU cluster run it once per shared checkout.
set -euo pipefail

PROG=${0##*/}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The shared helpers (die, dry, run, ...), next to this file
# shellcheck source=SCRIPTDIR/lib.sh
source "$REPO/launch/lib.sh"

usage() {
  cat <<'EOF'
Usage: launch/install.sh [--dry-run] [--apt] tpu|cuda12|cuda13|cpu

Creates VENV (default .venv, in the repo) with a Python >= 3.11 and installs
  pip install -r requirements.txt 'jax[EXTRA]==<the jax pin of requirements.txt>'
  pip install --no-deps -e .
(cpu: requirements.txt alone). jax[tpu] brings libtpu, jax[cuda12] the CUDA 12 plugin and
NVIDIA wheels; both pin jaxlib to the same version as requirements.txt does.

Options:
  --apt           when no Python >= 3.11 with venv is found, install python3.11 and
                  python3.11-venv with apt-get (sudo unless root): the TPU VM images are
                  Ubuntu 22.04, whose python3 is 3.10
  -n, --dry-run   print every command (prefixed "+ ") instead of running it; also DRY_RUN=1
  -h, --help      this help

Environment:
  PYTHON       the interpreter for the venv (default: the first of python3.13, python3.12,
               python3.11, python3 that is >= 3.11)
  VENV         the venv folder (default .venv, relative to the repo)
  JAX_VERSION  the jax[EXTRA] version (default: the jax== line of requirements.txt)

Examples:
  bash launch/install.sh --apt tpu        # on a TPU VM (tpu_pod.sh install does this)
  bash launch/install.sh cuda12           # on a GPU node, in a checkout all nodes share
EOF
}

# True when $1 is a Python >= 3.11 that can make a venv with pip.
good_python() {
  command -v "$1" >/dev/null 2>&1 &&
    "$1" -c 'import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1
}

find_python() {
  local c
  for c in python3.13 python3.12 python3.11 python3; do
    if good_python "$c"; then
      echo "$c"
      return
    fi
  done
  return 1
}

main() {
  local apt=0 extra=""
  while (($#)); do
    case $1 in
      -h | --help) usage; exit 0 ;;
      -n | --dry-run) DRY_RUN=1 ;;
      --apt) apt=1 ;;
      -*) die "unknown option $1 (see $PROG --help)" ;;
      *)
        [[ -z $extra ]] || die "one accelerator at a time (got $extra and $1)"
        extra=$1
        ;;
    esac
    shift
  done
  case $extra in
    tpu | cuda12 | cuda13 | cpu) ;;
    "") die "no accelerator given: tpu, cuda12, cuda13 or cpu (see $PROG --help)" ;;
    *) die "unknown accelerator $extra (tpu, cuda12, cuda13 or cpu)" ;;
  esac
  cd "$REPO"
  local venv=${VENV:-.venv} jax python
  jax=${JAX_VERSION:-$(sed -n 's/^jax==\([^[:space:]#;]*\).*/\1/p' requirements.txt)}
  [[ -n $jax ]] || die "JAX_VERSION is not set and requirements.txt has no jax== line"

  if [[ -x $venv/bin/python ]]; then
    "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
      die "$REPO/$venv has Python < 3.11; remove it and run again"
    echo "$PROG: reusing $REPO/$venv" >&2
  else
    if [[ -n ${PYTHON:-} ]]; then
      good_python "$PYTHON" || die "PYTHON=$PYTHON is not a Python >= 3.11 with venv and ensurepip"
      python=$PYTHON
    elif ! python=$(find_python); then
      ((apt)) || die "no Python >= 3.11 with venv found: set PYTHON, or pass --apt"
      local sudo=()
      if ((EUID != 0)); then sudo=(sudo); fi
      run ${sudo[@]+"${sudo[@]}"} apt-get update -q
      # (a fresh VM's unattended-upgrades may hold the dpkg lock for a while)
      run ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        -o DPkg::Lock::Timeout=600 python3.11 python3.11-venv
      python=python3.11
    fi
    run "$python" -m venv "$venv"
  fi
  local pkgs=(-r requirements.txt)
  if [[ $extra != cpu ]]; then pkgs+=("jax[$extra]==$jax"); fi
  run "$venv/bin/pip" install -q --upgrade pip
  run "$venv/bin/pip" install -q "${pkgs[@]}"
  run "$venv/bin/pip" install -q --no-deps -e .
  # Imports only: touching the devices of a multi-host TPU slice waits for every worker.
  run "$venv/bin/python" -c 'import jax, mrr_jax; print("jax", jax.__version__)'
}

main "$@"
