# shellcheck shell=bash
# Helpers shared by the launch/ scripts (tpu_pod.sh, score_multihost.sh, install.sh,
# slurm_train.sbatch), which source this file; it is not run on its own. Set PROG (the name in
# the messages) before sourcing it; the default is the script's file name.

PROG=${PROG:-${0##*/}}

# Prints "PROG: error: MESSAGE" on stderr and exits with status 2.
die() {
  printf '%s: error: %s\n' "$PROG" "$*" >&2
  exit 2
}

# Dies naming the first of the variables $@ that is unset or empty.
need() {
  local v
  for v in "$@"; do
    [[ -n "${!v:-}" ]] || die "$v is not set (see $PROG --help)"
  done
}

# True when $1 is a positive whole number.
positive() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }

# One word, quoted for a POSIX shell (left bare when nothing in it is special).
quote() {
  if [[ $1 =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

# The words $@, each quoted, separated by spaces.
quote_all() {
  local out="" w
  for w in "$@"; do
    out+="${out:+ }$(quote "$w")"
  done
  printf '%s' "$out"
}

# NAME=value words, the value quoted and the name left bare (or it is no assignment).
quote_env() {
  local out="" kv
  for kv in "$@"; do
    out+="${out:+ }${kv%%=*}=$(quote "${kv#*=}")"
  done
  printf '%s' "$out"
}

# True in a dry run (--dry-run, or DRY_RUN set to anything but 0).
dry() { [[ ${DRY_RUN:-0} != 0 ]]; }

# A "# ..." note: on stdout in a dry run (between the commands), else on stderr.
note() {
  if dry; then echo "# $*"; else echo "# $*" >&2; fi
}

# Prints the command ("+ " and its words, quoted); runs it unless dry.
run() {
  if dry; then
    printf '+ %s\n' "$(quote_all "$@")"
  else
    printf '+ %s\n' "$(quote_all "$@")" >&2
    "$@"
  fi
}

# VAR=value words for the names in REMOTE_ENV, into FORWARD (each name must be set).
forward_env() {
  FORWARD=()
  local names=() v
  read -r -a names <<<"${REMOTE_ENV:-}"
  for v in ${names[@]+"${names[@]}"}; do
    [[ $v =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "REMOTE_ENV: $v is not a variable name"
    [[ -n "${!v+x}" ]] || die "REMOTE_ENV names $v, which is not set"
    FORWARD+=("$v=${!v}")
  done
}

# The scoring flags from the MRR_* variables, into SCORE_ARGS.
score_args() {
  need MRR_OUT
  [[ -n ${MRR_MODEL:-} || -n ${MRR_SCORE_CONFIG:-} ]] ||
    die "MRR_MODEL is not set (nor MRR_SCORE_CONFIG) (see $PROG --help)"
  SCORE_ARGS=()
  local pair var flag plan plans=()
  for pair in MRR_SCORE_CONFIG:--config MRR_MODEL:--model MRR_CORPUS:--corpus \
    MRR_QUERIES:--queries MRR_RUN:--run MRR_CANDIDATES:--candidates MRR_TOP_K:--top-k; do
    var=${pair%%:*} flag=${pair#*:}
    if [[ -n ${!var:-} ]]; then SCORE_ARGS+=("$flag" "${!var}"); fi
  done
  IFS=';' read -r -a plans <<<"${MRR_PLAN:-}"
  for plan in ${plans[@]+"${plans[@]}"}; do
    plan=${plan#"${plan%%[![:space:]]*}"}  # trim
    plan=${plan%"${plan##*[![:space:]]}"}
    if [[ -n $plan ]]; then SCORE_ARGS+=(--plan "$plan"); fi
  done
  SCORE_ARGS+=(--out "$MRR_OUT")
}
