#!/usr/bin/env bash
# Multi-host scoring job: one `python -m mrr_jax.score --distributed` process per host, over
# ssh (or N processes on this machine with --local N). `launch/score_multihost.sh --help`.
set -euo pipefail

PROG=${0##*/}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The shared helpers (die, need, quote, dry, run, ...), next to this file
# shellcheck source=SCRIPTDIR/lib.sh
source "$REPO/launch/lib.sh"

usage() {
  cat <<'EOF'
Usage: launch/score_multihost.sh [--dry-run] [--local N] [-- SCORE_ARGS...]

Starts the scoring job on every host at once and waits for all of them. Process i runs, in
REMOTE_DIR on host i,
  JAX_COORDINATOR_ADDRESS=<first host>:PORT JAX_NUM_PROCESSES=<hosts> JAX_PROCESS_ID=i \
  PYTHON -m mrr_jax.score --distributed [--config ...] --model ... --out ... SCORE_ARGS
so it scores shard i of n; whichever finishes last merges OUT/run.trec (OUT must be a folder
every host sees, e.g. NFS; otherwise gather OUT/shards/ and run with --merge-only).
Each output line is prefixed with [i host]. Exit status: 0 when every process succeeded.
Ctrl-C (or SIGTERM) stops the local processes (KILL after STOP_GRACE seconds, default 5); with
ssh the remote ones may outlive their ssh: `ssh HOST "pkill -f 'mrr_jax[.]score'"`.

Options:
  --local N      N processes on this machine instead (coordinator localhost:PORT, this repo)
  -n, --dry-run  print every command (prefixed "+ ") instead of running it; also DRY_RUN=1
  -h, --help     this help

Environment:
  HOSTS             hosts, separated by spaces or commas ([user@]host, as ssh takes them); if
                    unset inside a SLURM allocation: the nodes of SLURM_JOB_NODELIST
  COORDINATOR_HOST  the address the other hosts reach host 0 at (default: the first host,
                    without user@)
  COORDINATOR_PORT  port of the coordinator on host 0 (default 8476)
  REMOTE_DIR        the repo on the hosts (default: this repo's path, the same on every host)
  PYTHON            the interpreter (default: .venv/bin/python in REMOTE_DIR; with --local,
                    this repo's .venv/bin/python, run in the current folder)
  SSH               ssh command (default ssh); SSH_OPTS: its options, split on spaces
                    (default "-o BatchMode=yes")
  REMOTE_ENV        names of local environment variables to pass on, e.g. "XLA_FLAGS HF_HOME"
  MRR_OUT           --out (required)
  MRR_MODEL         --model (required unless MRR_SCORE_CONFIG is set)
  MRR_SCORE_CONFIG  --config FILE.py[:ARG] or FILE.json (flags given here override it)
  MRR_CORPUS, MRR_QUERIES, MRR_RUN, MRR_CANDIDATES, MRR_TOP_K
                    --corpus, --queries, --run, --candidates, --top-k (each if set)
  MRR_PLAN          plans separated by ';', each one --plan, e.g. "depth=24 compress=8:2;full"

Examples:
  HOSTS="gpu1 gpu2" MRR_MODEL=/nfs/model MRR_CORPUS=/nfs/corpus.jsonl \
    MRR_QUERIES=/nfs/queries.jsonl MRR_RUN=/nfs/bm25.trec MRR_TOP_K=100 \
    MRR_PLAN='depth=24 compress=8:2' MRR_OUT=/nfs/out launch/score_multihost.sh
  MRR_SCORE_CONFIG=configs/score_stdlib.py:dev MRR_OUT=out/score_dev \
    launch/score_multihost.sh --local 2
EOF
}

# Hosts from HOSTS, else from SLURM_JOB_NODELIST, into HOST_LIST.
host_list() {
  HOST_LIST=()
  if [[ -n ${HOSTS:-} ]]; then
    read -r -a HOST_LIST <<<"${HOSTS//,/ }"
  elif [[ -n ${SLURM_JOB_NODELIST:-} ]]; then
    command -v scontrol >/dev/null 2>&1 ||
      die "HOSTS is not set and scontrol is missing to expand SLURM_JOB_NODELIST"
    local h
    while IFS= read -r h; do
      if [[ -n $h ]]; then HOST_LIST+=("$h"); fi
    done < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
  fi
  ((${#HOST_LIST[@]})) || die "HOSTS is not set (nor SLURM_JOB_NODELIST); or use --local N"
}

PIDS=()
# On INT/TERM: TERM to every process group, KILL to those left after STOP_GRACE seconds (a
# process in jax.distributed takes SIGTERM as a preemption notice and goes on).
stop_all() {
  trap - INT TERM
  echo "$PROG: stopping ${#PIDS[@]} process(es)" >&2
  local p t left
  for p in ${PIDS[@]+"${PIDS[@]}"}; do kill -TERM -- "-$p" 2>/dev/null || true; done
  for ((t = 0; t < ${STOP_GRACE:-5} * 10; t++)); do
    left=0
    for p in ${PIDS[@]+"${PIDS[@]}"}; do
      if kill -0 -- "-$p" 2>/dev/null; then left=1; fi
    done
    ((left)) || break
    sleep 0.1
  done
  for p in ${PIDS[@]+"${PIDS[@]}"}; do kill -KILL -- "-$p" 2>/dev/null || true; done
  { wait || true; } 2>/dev/null  # no job-control notices
  exit 130
}

# Starts `$@` in the background (its own process group), its output lines prefixed with
# "[LABEL] "; PIDS gets its pid.
start() {
  local label=$1
  shift
  printf '+ %s\n' "$(quote_all "$@")" >&2
  (
    set +m  # the pipeline stays in this job's process group
    "$@" 2>&1 </dev/null | while IFS= read -r line || [[ -n $line ]]; do
      printf '[%s] %s\n' "$label" "$line"
    done
  ) &
  PIDS+=($!)
}

# The command of process $1 of $2, into ARGV, and its label into LABEL.
command_of() {
  local i=$1 n=$2
  local env=(${FORWARD[@]+"${FORWARD[@]}"} JAX_COORDINATOR_ADDRESS="$COORD:$PORT"
    JAX_NUM_PROCESSES="$n" JAX_PROCESS_ID="$i")
  if [[ $MODE == local ]]; then
    ARGV=(env "${env[@]}" "$PYTHON_BIN" "${JOB[@]}")
    LABEL="$i localhost"
  else
    local host=${HOST_LIST[i]}
    ARGV=(${SSH_CMD[@]+"${SSH_CMD[@]}"} "$host"
      "cd $(quote "$REMOTE") && $(quote_env "${env[@]}") $(quote_all "$PYTHON_BIN" "${JOB[@]}")")
    LABEL="$i $host"
  fi
}

main() {
  local local_n=""
  while (($#)); do
    case $1 in
      -h | --help) usage; exit 0 ;;
      -n | --dry-run) DRY_RUN=1 ;;
      --local) (($# > 1)) || die "--local needs a number"; local_n=$2; shift ;;
      --local=*) local_n=${1#--local=} ;;
      --) shift; EXTRA=("$@"); break ;;
      *) die "unknown argument $1 (scoring arguments go after --; see $PROG --help)" ;;
    esac
    shift
  done
  score_args
  forward_env
  PORT=${COORDINATOR_PORT:-8476}
  [[ $PORT =~ ^[0-9]+$ ]] || die "COORDINATOR_PORT must be a port number, got '$PORT'"
  JOB=(-m mrr_jax.score --distributed "${SCORE_ARGS[@]}" ${EXTRA[@]+"${EXTRA[@]}"})
  local n i
  if [[ -n $local_n ]]; then
    positive "$local_n" || die "--local needs a positive number, got '$local_n'"
    MODE=local n=$local_n COORD=localhost
    PYTHON_BIN=${PYTHON:-$REPO/.venv/bin/python}
  else
    host_list
    MODE=ssh n=${#HOST_LIST[@]} COORD=${COORDINATOR_HOST:-${HOST_LIST[0]#*@}}
    PYTHON_BIN=${PYTHON:-.venv/bin/python} REMOTE=${REMOTE_DIR:-$REPO}
    local opts=()
    read -r -a SSH_CMD <<<"${SSH:-ssh}"
    read -r -a opts <<<"${SSH_OPTS--o BatchMode=yes}"
    SSH_CMD+=(${opts[@]+"${opts[@]}"})
  fi

  if dry; then
    for ((i = 0; i < n; i++)); do
      command_of "$i" "$n"
      printf '+ %s\n' "$(quote_all "${ARGV[@]}")"
    done
    return
  fi
  set -m  # each process in its own process group, for stop_all
  trap stop_all INT TERM
  local labels=()
  for ((i = 0; i < n; i++)); do
    command_of "$i" "$n"
    start "$LABEL" "${ARGV[@]}"
    labels+=("$LABEL")
  done
  local failed=0 rc
  for ((i = 0; i < n; i++)); do
    rc=0
    wait "${PIDS[i]}" || rc=$?
    if ((rc)); then
      echo "$PROG: process ${labels[i]} failed with exit status $rc" >&2
      failed=1
    fi
  done
  trap - INT TERM
  if ((failed)); then exit 1; fi
  echo "$PROG: all $n processes finished (the last one merges $MRR_OUT/run.trec)" >&2
}

EXTRA=()
main "$@"
