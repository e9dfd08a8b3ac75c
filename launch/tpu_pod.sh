#!/usr/bin/env bash
# Cloud TPU VM slice (pod) launcher for mrr_jax: create, install, train, score, exec, delete.
# Run it from your own machine (where gcloud is logged in); `launch/tpu_pod.sh --help`.
set -euo pipefail

PROG=${0##*/}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The shared helpers (die, need, quote, dry, run, ...), next to this file
# shellcheck source=SCRIPTDIR/lib.sh
source "$REPO/launch/lib.sh"

usage() {
  cat <<'EOF'
Usage: launch/tpu_pod.sh [--dry-run] COMMAND [-- ARGS...]

Manages a Cloud TPU VM slice (one VM per worker) and runs mrr_jax on every worker at once
(`gcloud compute tpus tpu-vm ssh NAME --worker=all --command=...`).

Commands:
  create    create the slice, or reuse it if it exists (`describe`, then `create` if absent)
  install   copy this checkout (or clone REPO_URL) into REMOTE_DIR on every worker, then run
            `bash launch/install.sh --apt tpu` there (a .venv with Python >= 3.11, the pinned
            requirements, jax[tpu] at the pinned jax version, mrr_jax editable)
  train     python -m mrr_jax.train --distributed --config $MRR_CONFIG --workdir $MRR_WORKDIR ARGS
  score     python -m mrr_jax.score --distributed [--config $MRR_SCORE_CONFIG] --model ... ARGS
  exec      run ARGS as a shell command line in REMOTE_DIR on every worker
            (e.g. `exec -- "pkill -f 'mrr_jax[.](train|score)' || true"` frees the TPUs
            after a crash; the [.] keeps pkill from matching its own shell)
  delete    delete the slice (no prompt)

ARGS after `--` are appended to the python command (train, score) as separate arguments.

Options:
  -n, --dry-run   print every command (prefixed "+ ") instead of running it; also DRY_RUN=1
  -h, --help      this help

Environment (required for every command: TPU_PROJECT, TPU_ZONE, TPU_NAME):
  TPU_PROJECT       Google Cloud project
  TPU_ZONE          zone, e.g. us-west4-a (v5e) or us-central2-b (v4)
  TPU_NAME          name of the TPU VM slice
  TPU_ACCELERATOR   create: accelerator type, e.g. v5litepod-16 or v4-32 (both 4 workers)
  TPU_RUNTIME       create: runtime (--version); default v2-alpha-tpuv5-lite for v5e,
                    v2-alpha-tpuv5 for v5p, v2-alpha-tpuv6e for v6e, tpu-ubuntu2204-base for v2-v4
  TPU_CREATE_FLAGS  create: extra gcloud flags, split on spaces (e.g. "--spot")
  TPU_SSH_FLAGS     extra gcloud flags for ssh/scp, split on spaces (e.g. "--internal-ip")
  TPU_WORKER        workers to run on (default all; e.g. 0 or 1-3 to debug)
  REPO_URL          install: git URL to clone on the workers; unset: this checkout is copied
                    (git ls-files: tracked and untracked-but-not-ignored files)
  REPO_REF          install with REPO_URL: branch, tag or commit (default: the remote's HEAD)
  REMOTE_DIR        the repo on the workers (default mrr_jax, relative to the remote home)
  REMOTE_ENV        names of local environment variables to pass to the python processes,
                    e.g. "XLA_FLAGS HF_HOME"
  MRR_CONFIG        train: --config FILE.py[:ARG] (relative to the repo, or absolute)
  MRR_WORKDIR       train: --workdir, on a filesystem all workers share (a Filestore or
                    gcsfuse mount; --workdir is a local path, not gs://)
  MRR_OUT           score: --out (must be a folder all workers share -- NFS/Filestore, a
                    gcsfuse mount -- for the last shard to merge; otherwise copy the
                    OUT/shards/ folders together and run `python -m mrr_jax.score --merge-only`)
  MRR_MODEL         score: --model (required unless MRR_SCORE_CONFIG is set)
  MRR_SCORE_CONFIG  score: --config FILE.py[:ARG] or FILE.json (flags given here override it)
  MRR_CORPUS, MRR_QUERIES, MRR_RUN, MRR_CANDIDATES, MRR_TOP_K
                    score: --corpus, --queries, --run, --candidates, --top-k (each if set)
  MRR_PLAN          score: plans separated by ';', each one --plan, e.g. "depth=24 compress=8:2;full"
  GCLOUD            the gcloud binary (default gcloud)

Examples:
  export TPU_PROJECT=my-project TPU_ZONE=us-west4-a TPU_NAME=mrr-v5e TPU_ACCELERATOR=v5litepod-16
  launch/tpu_pod.sh create && launch/tpu_pod.sh install
  MRR_CONFIG=configs/smollm2_135m.py MRR_WORKDIR=/mnt/shared/runs/s1 \
    launch/tpu_pod.sh train -- --config.train.steps=2000
  MRR_MODEL=/mnt/shared/model MRR_CORPUS=/mnt/shared/corpus.jsonl \
    MRR_QUERIES=/mnt/shared/queries.jsonl MRR_RUN=/mnt/shared/bm25.trec MRR_TOP_K=100 \
    MRR_PLAN='depth=24 compress=8:2' MRR_OUT=/mnt/shared/out launch/tpu_pod.sh score
  launch/tpu_pod.sh delete
EOF
}

# Default runtime (--version) for an accelerator type.
default_runtime() {
  case $1 in
    v5litepod-* | v5e-*) echo v2-alpha-tpuv5-lite ;;
    v5p-*) echo v2-alpha-tpuv5 ;;
    v6e-*) echo v2-alpha-tpuv6e ;;
    v2-* | v3-* | v4-*) echo tpu-ubuntu2204-base ;;
    *) return 1 ;;
  esac
}

# Workers (VMs) of an accelerator type, for information only: v2/v3 count cores (8 a VM);
# v4/v5p count TensorCores (2 a chip, 4 chips a VM); v5e/v6e count chips (4 a VM; 8 or fewer
# chips are one VM).
workers_of() {
  local n=${1##*-}
  [[ $n =~ ^[0-9]+$ ]] || return 1
  case $1 in
    v2-* | v3-*) echo $(((n + 7) / 8)) ;;
    v4-* | v5p-*) echo $(((n / 2 + 3) / 4)) ;;
    v5litepod-* | v5e-* | v6e-*) if ((n <= 8)); then echo 1; else echo $((n / 4)); fi ;;
    *) return 1 ;;
  esac
}

# Options passed to every gcloud tpu-vm ssh/scp call.
ssh_flags() {
  SSH_FLAGS=(--zone="$TPU_ZONE" --project="$TPU_PROJECT" --worker="${TPU_WORKER:-all}")
  local extra=()
  read -r -a extra <<<"${TPU_SSH_FLAGS:-}"
  SSH_FLAGS+=(${extra[@]+"${extra[@]}"})
}

# REMOTE_DIR, relative to the remote home unless absolute ("~/x" is taken as "x").
remote_dir() {
  local d=${REMOTE_DIR:-mrr_jax}
  local home="~"
  if [[ $d == "$home" ]]; then d=.; fi
  d=${d#"$home/"}
  [[ -n $d ]] || die "REMOTE_DIR is empty"
  printf '%s' "$d"
}

# VAR=value words for the names in REMOTE_ENV, quoted for the remote shell (each followed by a
# space).
remote_env() {
  forward_env
  if ((${#FORWARD[@]})); then printf '%s ' "$(quote_env "${FORWARD[@]}")"; fi
}

# Runs the remote shell command line $1 on the workers.
on_workers() {
  ssh_flags
  note "on worker(s) ${TPU_WORKER:-all} of $TPU_NAME: $1"
  run "$GCLOUD" compute tpus tpu-vm ssh "$TPU_NAME" "${SSH_FLAGS[@]}" --command="$1"
}

# Runs `python ARGS...` in REMOTE_DIR on the workers.
python_on_workers() {
  local dir env  # (assigned apart, so that a die in them stops the script)
  dir=$(remote_dir)
  env=$(remote_env)
  on_workers "cd $(quote "$dir") && $env.venv/bin/python $(quote_all "$@")"
}

cmd_create() {
  need TPU_PROJECT TPU_ZONE TPU_NAME TPU_ACCELERATOR
  local runtime workers flags=() where=(--zone="$TPU_ZONE" --project="$TPU_PROJECT") out
  runtime=${TPU_RUNTIME:-}
  if [[ -z $runtime ]]; then
    runtime=$(default_runtime "$TPU_ACCELERATOR") ||
      die "TPU_RUNTIME is not set and there is no default for TPU_ACCELERATOR=$TPU_ACCELERATOR"
  fi
  read -r -a flags <<<"${TPU_CREATE_FLAGS:-}"
  local describe=("$GCLOUD" compute tpus tpu-vm describe "$TPU_NAME" "${where[@]}"
    --format="value(acceleratorType)")
  local create=("$GCLOUD" compute tpus tpu-vm create "$TPU_NAME" "${where[@]}"
    --accelerator-type="$TPU_ACCELERATOR" --version="$runtime" ${flags[@]+"${flags[@]}"})
  if workers=$(workers_of "$TPU_ACCELERATOR"); then
    note "$TPU_ACCELERATOR: $workers worker(s); train/score run one process on each"
  fi
  if dry; then
    run "${describe[@]}"
    note "only if describe finds no TPU named $TPU_NAME:"
    run "${create[@]}"
    return
  fi
  printf '+ %s\n' "$(quote_all "${describe[@]}")" >&2
  if out=$("${describe[@]}" 2>&1); then
    out=${out##*/}  # acceleratorType may be a full resource path
    [[ $out == "$TPU_ACCELERATOR" ]] ||
      die "TPU $TPU_NAME exists with accelerator type '$out', not $TPU_ACCELERATOR"
    echo "$PROG: TPU $TPU_NAME ($out) exists in $TPU_ZONE; reusing it" >&2
  elif grep -qiE 'NOT_FOUND|not found' <<<"$out"; then
    run "${create[@]}"
  else
    printf '%s\n' "$out" >&2
    echo "$PROG: describe failed (see above); not creating anything" >&2
    exit 1
  fi
}

# Existing files of this checkout (tracked, or untracked and not ignored), NUL-separated.
source_files() {
  git -C "$REPO" ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do
      if [[ -e $REPO/$f ]]; then printf '%s\0' "$f"; fi
    done
}

cmd_install() {
  need TPU_PROJECT TPU_ZONE TPU_NAME
  local dir setup
  dir=$(remote_dir)
  dir=$(quote "$dir")
  if [[ -n ${REPO_URL:-} ]]; then
    setup="if [ ! -d $dir/.git ]; then git clone -q $(quote "$REPO_URL") $dir; fi"
    setup+=" && git -C $dir fetch -q origin $(quote "${REPO_REF:-HEAD}")"
    setup+=" && git -C $dir checkout -q FETCH_HEAD"
  else
    [[ -z ${REPO_REF:-} ]] || die "REPO_REF needs REPO_URL (a local checkout is copied as it is)"
    git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1 ||
      die "REPO_URL is not set and $REPO is not a git checkout to copy"
    local remote_tgz=mrr_jax-src.tgz
    TGZ="${TMPDIR:-/tmp}/mrr_jax-src.$$.tgz"
    local tar_cmd=(tar -C "$REPO" --null -T - -czf "$TGZ")
    if dry; then
      printf '+ %s | %s\n' "$(quote_all git -C "$REPO" ls-files -z --cached --others \
        --exclude-standard)" "$(quote_all "${tar_cmd[@]}")"
    else
      trap 'rm -f "$TGZ"' EXIT
      printf '+ (files of %s) | %s\n' "$REPO" "$(quote_all "${tar_cmd[@]}")" >&2
      source_files | "${tar_cmd[@]}"
    fi
    ssh_flags
    run "$GCLOUD" compute tpus tpu-vm scp "$TGZ" "$TPU_NAME:$remote_tgz" "${SSH_FLAGS[@]}"
    setup="mkdir -p $dir && tar -xzf $remote_tgz -C $dir && rm -f $remote_tgz"
  fi
  on_workers "$setup && cd $dir && bash launch/install.sh --apt tpu"
}

cmd_train() {
  need TPU_PROJECT TPU_ZONE TPU_NAME MRR_CONFIG MRR_WORKDIR
  python_on_workers -m mrr_jax.train --distributed --config "$MRR_CONFIG" \
    --workdir "$MRR_WORKDIR" ${EXTRA[@]+"${EXTRA[@]}"}
}

cmd_score() {
  need TPU_PROJECT TPU_ZONE TPU_NAME
  score_args
  python_on_workers -m mrr_jax.score --distributed "${SCORE_ARGS[@]}" \
    ${EXTRA[@]+"${EXTRA[@]}"}
}

cmd_exec() {
  need TPU_PROJECT TPU_ZONE TPU_NAME
  ((${#EXTRA[@]})) || die "exec needs a command after --"
  local dir
  dir=$(remote_dir)
  on_workers "cd $(quote "$dir") && ${EXTRA[*]}"
}

cmd_delete() {
  need TPU_PROJECT TPU_ZONE TPU_NAME
  run "$GCLOUD" compute tpus tpu-vm delete "$TPU_NAME" --zone="$TPU_ZONE" \
    --project="$TPU_PROJECT" --quiet
}

main() {
  local cmd=""
  EXTRA=()
  while (($#)); do
    case $1 in
      -h | --help) usage; exit 0 ;;
      -n | --dry-run) DRY_RUN=1 ;;
      --) shift; EXTRA=("$@"); break ;;
      -*) die "unknown option $1 (see $PROG --help)" ;;
      *)
        [[ -z $cmd ]] || die "one command at a time (got $cmd and $1; python arguments go after --)"
        cmd=$1
        ;;
    esac
    shift
  done
  GCLOUD=${GCLOUD:-gcloud}
  if ! dry && [[ -n $cmd ]] && ! command -v "$GCLOUD" >/dev/null 2>&1; then
    die "$GCLOUD not found: install the Google Cloud CLI, or set GCLOUD"
  fi
  case $cmd in
    create | install | delete)
      ((${#EXTRA[@]} == 0)) || die "$cmd takes no arguments after --" ;;
  esac
  case $cmd in
    create | install | train | score | exec | delete) "cmd_$cmd" ;;
    "") die "no command given (create, install, train, score, exec or delete; see $PROG --help)" ;;
    *) die "unknown command $cmd (create, install, train, score, exec or delete)" ;;
  esac
}

main "$@"
