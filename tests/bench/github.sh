#!/usr/bin/env bash
# Reproduces the table of BENCHMARKS.md's "The GitHub runner layer" in one run, each new row
# next to its baseline measured on the same server moments before:
#
#   signed appends (loadgen appends)            vs  metered workflow_job deliveries (webhook-metered)
#   GET /v1/access/check (loadgen access-check) vs  POST /v1/access/job (gate)
#   (b) one sled insert + flush (criterion)     vs  ignored push deliveries (webhook-ignored), each
#                                                   remembering a new delivery id, and the same
#                                                   deliveries repeated (webhook-duplicate), which
#                                                   remember nothing new
#
# Each row also gives the server's CPU per request (/proc/PID/stat), its write syscalls per
# request (/proc/PID/io) and the CPU used outside the server and the load generator meanwhile
# (/proc/stat): the load the row shared the machine with.
#
# Everything runs on 127.0.0.1 over a temp directory and stops by itself.
#
#   tests/bench/github.sh            # about 2 minutes after the build
#
# Knobs (environment): APPEND_EVENTS, METERED_EVENTS, IGNORED_EVENTS, CONNECTIONS, READ_S,
# FLUSH_BASELINE=0 (skip the criterion baseline (b)), BUILD=0 (use target/release/grantline as
# it is), KEEP=1 (keep the temp dir). Results also go to $OUT (default
# target/bench-github.txt). The binary is copied to the temp dir first, so a build running
# meanwhile cannot replace it under the server.
set -euo pipefail

cd "$(dirname "$0")/../.."
APPEND_EVENTS=${APPEND_EVENTS:-50000}
METERED_EVENTS=${METERED_EVENTS:-30000}
IGNORED_EVENTS=${IGNORED_EVENTS:-60000}
CONNECTIONS=${CONNECTIONS:-64}
READ_S=${READ_S:-10}
FLUSH_BASELINE=${FLUSH_BASELINE:-1}
BUILD=${BUILD:-1}
TARGET_IGNORED_PER_S=5000
TARGET_GATE_PER_S=30000
ORG=grantline-bench
OUT=${OUT:-target/bench-github.txt}

TMP=$(mktemp -d /tmp/grantline-bench-github.XXXXXX)
BIN="$TMP/grantline"
DATA="$TMP/data"
SECRET="$TMP/webhook-secret"
# shellcheck source=tests/bench/lib.sh
source tests/bench/lib.sh
trap stop_server_and_clean_up EXIT
: > "$OUT"

say "# grantline benchmarks: the GitHub runner layer, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
say "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; load average before the build: $(cut -d' ' -f1-3 /proc/loadavg)"

if [[ "$BUILD" == 1 ]]; then
    echo "building release..." >&2
    cargo build --release -p grantline >&2
fi
cp target/release/grantline "$BIN"
say "binary: target/release/grantline of $(date -u -r target/release/grantline +%Y-%m-%dT%H:%M:%SZ)"

# --- Baseline (b), same run: one sled insert + one flush -------------------------------------
B=""
if [[ "$FLUSH_BASELINE" == 1 ]]; then
    echo "baseline (b) (criterion)..." >&2
    cargo bench -p grantline-ledger --bench ledger -- --warm-up-time 1 --measurement-time 4 \
        'sled/insert_flush_each' > "$TMP/criterion.txt" 2>&1
    FLUSH_EACH_S=$(crit sled/insert_flush_each)
    B=$(awk -v t="$FLUSH_EACH_S" 'BEGIN { printf "%.0f", 1 / t }')
    say "baseline (b) sled insert (1 KiB) + flush, each: $B/s"
fi
say "load average after the build, before the server starts: $(cut -d' ' -f1-3 /proc/loadavg)"

# --- The server ----------------------------------------------------------------------------
"$BIN" init --data "$DATA" --origin localhost/grantline --admin-key-out "$DATA/admin.key" > /dev/null
ADMIN="$DATA/admin.key"
(umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > "$SECRET" && echo >> "$SECRET")
SERVER_RUST_LOG=warn start_server --github-org "$ORG" --github-webhook-secret "$SECRET"

errors() { python3 -c 'import json,sys; print(sum(json.loads(sys.argv[1])["main"]["errors"].values()))' "$1"; }
ratio() { awk -v x="$1" -v y="$2" 'BEGIN { printf "%.2f", (y > 0 ? x / y : 0) }'; }
# The server's CPU time so far (user and system, in clock ticks) and its write syscalls.
server_ticks() { awk '{ print $14, $15 }' "/proc/$SERVER_PID/stat"; }
server_syscw() { awk '/^syscw/ { print $2 }' "/proc/$SERVER_PID/io"; }
metric() { curl -s "$URL/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
TICK=$(getconf CLK_TCK)

# The machine's busy CPU ticks (all but idle and iowait) and its steal ticks, so far.
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $9 }' /proc/stat; }

# Runs `loadgen MODE ARGS…` and sets R (its JSON report), CPU (the server's CPU per answered
# request: "total µs (user U, system S)"), SYSCW (its write syscalls per answered request,
# the response's own write included) and OTHERS (the CPU that neither the server nor the load
# generator used meanwhile, in cores, and the hypervisor's steal: the load this run shared
# the machine with).
measure() {
    local t0 w0 m0 c0 c1 ok
    t0=$(server_ticks)
    w0=$(server_syscw)
    m0=$(machine_ticks)
    c0=$(date +%s.%N)
    R=$(/usr/bin/time -f '%U %S' -o "$TMP/loadgen.time" \
        "$BIN" loadgen --server "$URL" "$@" --connections "$CONNECTIONS" --json)
    c1=$(date +%s.%N)
    OTHERS=$(echo "$m0 $(machine_ticks) $t0 $(server_ticks) $(cat "$TMP/loadgen.time")" | awk -v hz="$TICK" \
        -v s="$(awk -v a="$c0" -v b="$c1" 'BEGIN { print b - a }')" '{
        busy = ($3 - $1) / hz; server = ($7 + $8 - $5 - $6) / hz; loadgen = $9 + $10
        printf "%.2f cores, steal %.2f cores", (busy - server - loadgen) / s, ($4 - $2) / hz / s }')
    ok=$(json_field "$R" main.ok)
    CPU=$(echo "$t0 $(server_ticks)" | awk -v n="$ok" -v hz="$TICK" '{
        k = (n > 0 ? 1e6 / hz / n : 0); u = ($3 - $1) * k; s = ($4 - $2) * k
        printf "%.0f µs (user %.0f, system %.0f)", u + s, u, s }')
    SYSCW=$(awk -v a="$w0" -v b="$(server_syscw)" -v n="$ok" 'BEGIN { printf "%.2f", (n > 0 ? (b - a) / n : 0) }')
}
row() { # row LABEL: the main phase of R
    say "$1: $(json_field "$R" main.per_s)/s, p50 $(json_field "$R" main.p50_ms) ms, p99 $(json_field "$R" main.p99_ms) ms, max $(json_field "$R" main.max_ms) ms, $(json_field "$R" main.ok) ok, errors $(errors "$R"); server CPU per request ${CPU}, ${SYSCW} write syscalls; CPU outside server and load generator meanwhile (other processes, kernel I/O threads) ${OTHERS}"
}

GH=(--github-org "$ORG" --github-secret "$SECRET")

# --- Appends, then metered deliveries --------------------------------------------------------
# Records per sequencer flush since batch_mark was called.
batch_mark() { BATCH_SUM0=$(metric grantline_batch_entries_sum); BATCH_N0=$(metric grantline_batch_entries_count); }
per_batch() {
    awk -v s0="$BATCH_SUM0" -v n0="$BATCH_N0" -v s1="$(metric grantline_batch_entries_sum)" \
        -v n1="$(metric grantline_batch_entries_count)" 'BEGIN { printf "%.1f", (n1 > n0 ? (s1 - s0) / (n1 - n0) : 0) }'
}

echo "appends (baseline)..." >&2
batch_mark
measure appends --admin-key "$ADMIN" --events "$APPEND_EVENTS"
APPS=$(json_field "$R" main.per_s)
row "signed appends over HTTP (baseline, usage.reported envelopes of about 1 KB)"
say "  $(per_batch) records per sequencer flush (the setup's included)"

echo "webhook-metered..." >&2
batch_mark
measure webhook-metered "${GH[@]}" --admin-key "$ADMIN" --events "$METERED_EVENTS"
METERED=$(json_field "$R" main.per_s)
ADDED=$(( $(json_field "$R" log_size_after) - $(json_field "$R" log_size_before) ))
row "metered workflow_job deliveries ($(json_field "$R" body_bytes_mean)-byte bodies)"
say "  records added to the log: $ADDED; $(per_batch) records per sequencer flush (the setup's included); metered / appends = $(ratio "$METERED" "$APPS")"

# --- Access checks, then the job gate ---------------------------------------------------------
echo "access-check (baseline)..." >&2
measure access-check --admin-key "$ADMIN" --duration-s "$READ_S"
CHECKS=$(json_field "$R" main.per_s)
row "GET /v1/access/check (baseline)"

echo "gate..." >&2
measure gate "${GH[@]}" --admin-key "$ADMIN" --duration-s "$READ_S"
GATE=$(json_field "$R" main.per_s)
row "POST /v1/access/job, allowed ($(json_field "$R" body_bytes_mean)-byte questions)"
say "  gate / access checks = $(ratio "$GATE" "$CHECKS"); gate / target $TARGET_GATE_PER_S = $(ratio "$GATE" "$TARGET_GATE_PER_S")"

# --- Ignored deliveries, then the same without remembering new ids --------------------------
echo "webhook-ignored..." >&2
measure webhook-ignored "${GH[@]}" --events "$IGNORED_EVENTS"
IGNORED=$(json_field "$R" main.per_s)
row "ignored push deliveries, each a new delivery id ($(json_field "$R" body_bytes_mean)-byte bodies)"
say "  ignored / target $TARGET_IGNORED_PER_S = $(ratio "$IGNORED" "$TARGET_IGNORED_PER_S")${B:+; ignored / (b) = $(ratio "$IGNORED" "$B")}"

echo "webhook-duplicate..." >&2
measure webhook-duplicate "${GH[@]}" --duration-s "$READ_S"
DUPLICATE=$(json_field "$R" main.per_s)
row "the same push deliveries repeated (duplicate_delivery: no new id to remember)"
say "  ignored / duplicate = $(ratio "$IGNORED" "$DUPLICATE")"

curl -s "$URL/metrics" | grep -E '^grantline_github_deliveries_total' | tee -a "$OUT"
say "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
say "done; results in $OUT"
