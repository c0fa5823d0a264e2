#!/usr/bin/env bash
# Reproduces BENCHMARKS.md "Tiles, mirrors and witnesses" in one run, each figure next to a
# baseline measured in the same run:
#   - tiles served per second over HTTP at LOG_RECORDS records, against inclusion proofs;
#   - `grantline mirror` from empty, then an incremental run after INCREMENT more records;
#   - `grantline verify --tiles` of the mirror, against `verify --server` and single-core
#     Ed25519 verification (criterion, the same baseline (a) as tests/bench/run.sh).
# Everything runs on 127.0.0.1 over a temp directory and stops by itself.
#
#   tests/bench/tiles.sh                        # 1,000,000 records (~10 min on 2 cores)
#   LOG_RECORDS=100000 READ_S=5 tests/bench/tiles.sh   # quick check
#
# Knobs: LOG_RECORDS, INCREMENT, CONNECTIONS, READ_S, KEEP=1 (keep the temp dir). Results also
# go to $OUT (default target/bench-tiles.txt).
set -euo pipefail

cd "$(dirname "$0")/../.."
LOG_RECORDS=${LOG_RECORDS:-1000000}
INCREMENT=${INCREMENT:-10000}
CONNECTIONS=${CONNECTIONS:-64}
READ_S=${READ_S:-10}
OUT=${OUT:-target/bench-tiles.txt}

BIN=$PWD/target/release/grantline
TMP=$(mktemp -d /tmp/grantline-bench-tiles.XXXXXX)
DATA="$TMP/data"
# shellcheck source=tests/bench/lib.sh
source tests/bench/lib.sh
trap stop_server_and_clean_up EXIT
: > "$OUT"
say "# grantline tile benchmarks, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
say "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; load average: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "building release..." >&2
cargo build --release -p grantline >&2

echo "baseline (criterion)..." >&2
cargo bench -p grantline-ledger --bench ledger -- --warm-up-time 1 --measurement-time 4 \
    'ed25519/verify_strict_single' > "$TMP/criterion.txt" 2>&1
VERIFY_S=$(crit ed25519/verify_strict_single)
A=$(awk -v t="$VERIFY_S" 'BEGIN { printf "%.0f", 1 / t }')
say "baseline (a) single-core Ed25519 verify: $A/s"

secs() { # secs CMD...: runs it, prints wall seconds
    local t0 t1
    t0=$(date +%s.%N)
    "$@" > "$TMP/last.out" 2> "$TMP/last.err" || { cat "$TMP/last.err" >&2; exit 1; }
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}
ratio() { awk -v x="$1" -v y="$2" 'BEGIN { printf "%.2f", x / y }'; }
per_s() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / s }'; }

# --- The log -------------------------------------------------------------------------------
"$BIN" init --data "$DATA" --origin localhost/grantline --admin-key-out "$DATA/admin.key" > /dev/null
echo "filling $LOG_RECORDS records..." >&2
"$BIN" loadgen fill --data "$DATA" --admin-key "$DATA/admin.key" --events "$LOG_RECORDS" > /dev/null
start_server
LOG_KEY=$(cat "$DATA/log.pub")
SIZE=$(curl -sf "$URL/v1/log" | python3 -c 'import json,sys; print(json.load(sys.stdin)["size"])')
say "log: $SIZE records"

# --- Tiles served over HTTP ----------------------------------------------------------------
LG() { "$BIN" loadgen --server "$URL" "$@"; }
echo "tiles over HTTP..." >&2
R=$(LG inclusion --duration-s "$READ_S" --connections "$CONNECTIONS" --json)
INCL=$(json_field "$R" main.per_s)
say "baseline: inclusion proofs over HTTP, $CONNECTIONS connections: $INCL/s, p99 $(json_field "$R" main.p99_ms) ms"
R=$(LG tiles --duration-s "$READ_S" --connections "$CONNECTIONS" --json)
TILES=$(json_field "$R" main.per_s)
say "full level-0 hash tiles (8 KiB) over HTTP: $TILES/s, p99 $(json_field "$R" main.p99_ms) ms, errors $(json_field "$R" main.errors) = $(ratio "$TILES" "$INCL") x inclusion proofs, $(ratio "$TILES" 50000) x the 50,000/s target"
R=$(LG entries --duration-s "$READ_S" --connections "$CONNECTIONS" --json)
ENTRIES=$(json_field "$R" main.per_s)
say "full entry bundles over HTTP: $ENTRIES/s, p99 $(json_field "$R" main.p99_ms) ms = $(ratio "$ENTRIES" "$INCL") x inclusion proofs"

# --- Mirror --------------------------------------------------------------------------------
echo "mirror from empty..." >&2
S=$(secs "$BIN" mirror --server "$URL" --log-key "$LOG_KEY" --out "$TMP/mirror")
say "mirror from empty to $SIZE records: $S s = $(per_s "$SIZE" "$S") records/s ($(du -sh "$TMP/mirror" | cut -f1) on disk)"
echo "appending $INCREMENT more..." >&2
LG appends --admin-key "$DATA/admin.key" --events "$INCREMENT" --connections "$CONNECTIONS" --json > /dev/null
S2=$(secs "$BIN" mirror --server "$URL" --log-key "$LOG_KEY" --out "$TMP/mirror")
say "incremental mirror after $INCREMENT more records: $S2 s = $(ratio "$S2" "$S") x the first run"
NEW_SIZE=$(curl -sf "$URL/v1/log" | python3 -c 'import json,sys; print(json.load(sys.stdin)["size"])')

# --- verify --tiles against verify --server -------------------------------------------------
echo "verify --server..." >&2
VS=$(secs "$BIN" verify --server "$URL" --log-key "$LOG_KEY")
echo "verify --tiles DIR..." >&2
VT=$(secs "$BIN" verify --tiles "$TMP/mirror" --log-key "$LOG_KEY")
VT_RATE=$(per_s "$NEW_SIZE" "$VT")
say "verify --server: $VS s = $(per_s "$NEW_SIZE" "$VS") records/s"
say "verify --tiles DIR: $VT s = $VT_RATE records/s = $(ratio "$VS" "$VT") x verify --server, $(ratio "$VT_RATE" "$A") x (a)"
stop_server
