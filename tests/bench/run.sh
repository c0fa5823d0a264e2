#!/usr/bin/env bash
# Reproduces every row of BENCHMARKS.md's target table in one run, next to the baselines
# (a) single-core Ed25519 verify/s, (b) sled insert + flush each, (c) sled 256 inserts + one
# flush, measured in the same run. Everything runs on 127.0.0.1 over a temp directory and stops
# by itself.
#
#   tests/bench/run.sh                  # full run (1,000,000-record log, 10-minute soak; ~22 min)
#   LOG_RECORDS=100000 SOAK_S=20 APPEND_EVENTS=20000 tests/bench/run.sh   # quick check
#
# Knobs (environment): LOG_RECORDS, APPEND_EVENTS, CONNECTIONS, READ_S, SOAK_S, TAIL_EVENTS
# (records after the last snapshot when the server is SIGKILLed), KEEP=1 (keep
# the temp dir). Results also go to $OUT (default target/bench-results.txt).
set -euo pipefail

cd "$(dirname "$0")/../.."
LOG_RECORDS=${LOG_RECORDS:-1000000}
APPEND_EVENTS=${APPEND_EVENTS:-50000}
CONNECTIONS=${CONNECTIONS:-64}
READ_S=${READ_S:-10}
SOAK_S=${SOAK_S:-600}
TAIL_EVENTS=${TAIL_EVENTS:-49000}
SOAK_APPEND_RATE=${SOAK_APPEND_RATE:-200}
TARGET_APPENDS_PER_S=10000
OUT=${OUT:-target/bench-results.txt}

BIN=target/release/grantline
TMP=$(mktemp -d /tmp/grantline-bench.XXXXXX)
DATA="$TMP/data"
# shellcheck source=tests/bench/lib.sh
source tests/bench/lib.sh
trap stop_server_and_clean_up EXIT
: > "$OUT"

say "# grantline benchmarks, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
say "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; load average: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "building release..." >&2
cargo build --release -p grantline >&2

# --- Baselines, same run -------------------------------------------------------------------
echo "baselines (criterion)..." >&2
cargo bench -p grantline-ledger --bench ledger -- --warm-up-time 1 --measurement-time 4 \
    'ed25519/verify_strict_single|ed25519/verify_batch_64|sled/insert_flush_each|sled/insert_256_flush_once|merkle/inclusion_proof_at_1m|merkle/consistency_proof_at_1m|store/append_batch_256|store/inclusion_proof_at_1m|store/consistency_proof_at_1m' \
    > "$TMP/criterion.txt" 2>&1
VERIFY_S=$(crit ed25519/verify_strict_single)
BATCH64_S=$(crit ed25519/verify_batch_64)
FLUSH_EACH_S=$(crit sled/insert_flush_each)
FLUSH_256_S=$(crit sled/insert_256_flush_once)
INCL_S=$(crit merkle/inclusion_proof_at_1m)
CONS_S=$(crit merkle/consistency_proof_at_1m)
STORE256_S=$(crit store/append_batch_256)
STORE_INCL_S=$(crit store/inclusion_proof_at_1m)
STORE_CONS_S=$(crit store/consistency_proof_at_1m)
A=$(awk -v t="$VERIFY_S" 'BEGIN { printf "%.0f", 1 / t }')
B=$(awk -v t="$FLUSH_EACH_S" 'BEGIN { printf "%.0f", 1 / t }')
C=$(awk -v t="$FLUSH_256_S" 'BEGIN { printf "%.0f", 256 / t }')
say "baseline (a) single-core Ed25519 verify: $A/s (batch of 64: $(awk -v t="$BATCH64_S" 'BEGIN { printf "%.0f", 64 / t }')/s)"
say "baseline (b) sled insert + flush each: $B/s"
say "baseline (c) sled 256 inserts + one flush: $C/s"
say "store.append of 256 records (one batch, one flush): $(awk -v t="$STORE256_S" 'BEGIN { printf "%.0f", 256 / t }') records/s"
us() { awk -v t="$1" 'BEGIN { printf "%.2f", t * 1e6 }'; }
say "in-process proofs at 1M leaves from the sled store (as served): inclusion $(us "$STORE_INCL_S") µs, consistency $(us "$STORE_CONS_S") µs (target <= 50 µs)"
say "  from an all-in-memory tree, for comparison: inclusion $(us "$INCL_S") µs, consistency $(us "$CONS_S") µs"

# --- Server helpers ------------------------------------------------------------------------
rss_mb() { awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$SERVER_PID/status"; }
LG() { "$BIN" loadgen --server "$URL" "$@"; }

# --- Appends over HTTP ---------------------------------------------------------------------
"$BIN" init --data "$DATA" --origin localhost/grantline --admin-key-out "$DATA/admin.key" > /dev/null
start_server
ADMIN="$DATA/admin.key"
echo "appends..." >&2
R=$(LG appends --admin-key "$ADMIN" --events "$APPEND_EVENTS" --connections "$CONNECTIONS" --json)
APPS=$(json_field "$R" main.per_s)
say "appends over HTTP, $CONNECTIONS connections: $APPS/s, p50 $(json_field "$R" main.p50_ms) ms, p99 $(json_field "$R" main.p99_ms) ms, max $(json_field "$R" main.max_ms) ms, errors $(json_field "$R" main.errors)"
say "  ratio to (a): $(awk -v x="$APPS" -v a="$A" 'BEGIN { printf "%.2f", x / a }') (target >= 0.35)"
say "  group commit vs flush per append: $(awk -v x="$APPS" -v b="$B" 'BEGIN { printf "%.1f", x / b }')x baseline (b) (target >= 20x)"
curl -s "$URL/metrics" | grep -E '^grantline_batch_entries_(sum|count)' | tee -a "$OUT"

# --- Access checks while appends run at half the target rate --------------------------------
echo "access checks under load..." >&2
R=$(LG access-check --admin-key "$ADMIN" --duration-s "$READ_S" --append-rate $((TARGET_APPENDS_PER_S / 2)) \
    --connections "$CONNECTIONS" --json)
say "access checks over HTTP with appends at $((TARGET_APPENDS_PER_S / 2))/s: $(json_field "$R" main.per_s)/s, p50 $(json_field "$R" main.p50_ms) ms, p99 $(json_field "$R" main.p99_ms) ms (target >= 30000/s, p99 <= 5 ms)"
say "  background appends achieved: $(json_field "$R" background.per_s)/s, p99 $(json_field "$R" background.p99_ms) ms, errors $(json_field "$R" background.errors)"
R=$(LG access-check --admin-key "$ADMIN" --duration-s "$READ_S" --connections "$CONNECTIONS" --json)
say "access checks over HTTP, no appends: $(json_field "$R" main.per_s)/s, p99 $(json_field "$R" main.p99_ms) ms"
R=$(LG allocations --admin-key "$ADMIN" --duration-s "$READ_S" --connections "$CONNECTIONS" --json)
say "allocations of one project over HTTP, no appends: $(json_field "$R" main.per_s)/s, p99 $(json_field "$R" main.p99_ms) ms"

# --- The big log ---------------------------------------------------------------------------
stop_server
SIZE=$(json_field "$R" log_size_after)
FILL=$((LOG_RECORDS - SIZE - 100))
if ((FILL > 0)); then
    echo "filling to $LOG_RECORDS records..." >&2
    say "$("$BIN" loadgen fill --data "$DATA" --events "$FILL")"
fi
start_server
say "start with $(curl -s "$URL/healthz") after fill (snapshot written by the fill): ${START_S}s"
say "server RSS after start: $(rss_mb) MB"

echo "proofs..." >&2
R=$(LG inclusion --duration-s "$READ_S" --connections "$CONNECTIONS" --json)
say "inclusion proofs over HTTP at $(json_field "$R" log_size_before) leaves: $(json_field "$R" main.per_s)/s, p99 $(json_field "$R" main.p99_ms) ms (target >= 20000/s)"
R=$(LG consistency --duration-s "$READ_S" --connections "$CONNECTIONS" --json)
say "consistency proofs over HTTP at $(json_field "$R" log_size_before) leaves: $(json_field "$R" main.per_s)/s, p99 $(json_field "$R" main.p99_ms) ms (target >= 20000/s)"
say "server RSS at $(json_field "$R" log_size_before) records after the proof runs: $(rss_mb) MB (target <= 300 MB)"

# --- Soak: RSS while appends and reads run --------------------------------------------------
echo "soak ${SOAK_S}s..." >&2
(
    for _ in $(seq 1 $((SOAK_S / 10))); do
        sleep 10
        kill -0 "$SERVER_PID" 2>/dev/null && echo -n "$(rss_mb) "
    done
) > "$TMP/rss.txt" &
RSS_PID=$!
R=$(LG access-check --admin-key "$ADMIN" --duration-s "$SOAK_S" --append-rate "$SOAK_APPEND_RATE" --connections 16 --json)
wait "$RSS_PID" || true
say "soak ${SOAK_S}s (access checks on 16 connections + $SOAK_APPEND_RATE appends/s): RSS every 10 s (MB): $(cat "$TMP/rss.txt")"
say "  soak appends: $(json_field "$R" background.ok) ok, errors $(json_field "$R" background.errors)"

# --- Restart at the full size ---------------------------------------------------------------
stop_server
start_server
say "restart after a clean stop, $(curl -s "$URL/healthz"): ${START_S}s to serving (target <= 3 s)"
# Worst case after a crash: just under one snapshot interval of records to replay.
LG appends --admin-key "$ADMIN" --events "$TAIL_EVENTS" --connections "$CONNECTIONS" > /dev/null
kill -KILL "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
start_server
say "restart after SIGKILL with $TAIL_EVENTS records after the last snapshot, $(curl -s "$URL/healthz"): ${START_S}s to serving"
FINAL_SIZE=$(curl -s "$URL/healthz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["size"])')
LOG_KEY=$(curl -s "$URL/v1/log" | python3 -c 'import json,sys; print(json.load(sys.stdin)["log_key"])')
curl -s "$URL/v1/checkpoint" > "$TMP/checkpoint.txt"
stop_server

# --- Offline verification (the auditor's tool) ----------------------------------------------
if "$BIN" verify --help > /dev/null 2>&1; then
    echo "verify..." >&2
    t0=$(date +%s.%N)
    "$BIN" verify --data "$DATA" --log-key "$LOG_KEY" --checkpoint "$TMP/checkpoint.txt" > "$TMP/verify.txt" 2>&1 || { cat "$TMP/verify.txt"; }
    t1=$(date +%s.%N)
    say "grantline verify --data (offline): $(tail -1 "$TMP/verify.txt")"
    say "  $(awk -v a="$t0" -v b="$t1" -v r="$A" -v n="$FINAL_SIZE" 'BEGIN { s = b - a; printf "%.1f s for about %d records = %.0f/s = %.2fx (a) (target >= 1.5x)", s, n, n / s, n / s / r }')"
fi
say "done; results in $OUT"
