#!/usr/bin/env bash
# grantline on PostgreSQL (issue 13), in one run, next to baselines measured in the same run:
#   1. one node: durable signed appends/s over HTTP (64 connections) vs. pgbench running the
#      equivalent one-row insert transaction (~1 KB bytea) at 1 and 16 clients; the same load
#      on sled (`serve --data` without --db) beside it;
#   2. three nodes on one database: appends through all three (one load generator per node, in
#      parallel, summed) and reads (access checks, inclusion proofs) across three vs. one node;
#   3. failover: SIGKILL of the leader to the first 201 at another node, over KILLS kills
#      (tests/bench/postgres_failover.py);
#   4. follower lag under a steady 1,000 appends/s to the leader, read off the follower's event
#      stream (tests/bench/postgres_lag.py).
# Diagnostics for row 1, in the same run: CPU use inside each measured window
# (tests/bench/postgres_cpu.py), the leader's batches and its sequencer thread's CPU and
# run-queue wait, PostgreSQL's statement times (pg_stat_statements) and WAL flushes
# (pg_stat_wal), a second run of the same load under `perf record` that splits the sequencer's
# time into waiting for PostgreSQL, for sled and for a CPU (tests/bench/postgres_perf.py), and
# pgbench running the transaction of one batch from one client.
# It builds the release binary, starts a throwaway PostgreSQL (initdb as the `postgres` user
# when run as root, trust auth, 127.0.0.1 on a free port, fsync and synchronous_commit on),
# runs everything on 127.0.0.1 over a temp directory and stops it all on exit. Servers, load
# generators and PostgreSQL share the machine's cores.
#
#   tests/bench/postgres.sh                                   # full run, about 5 minutes
#   APPEND_EVENTS=6000 READ_S=2 PGBENCH_S=3 KILLS=2 LAG_S=6 tests/bench/postgres.sh   # quick check
#
# Knobs (environment): APPEND_EVENTS (per appends run; the three-node run posts a third of it
# through each node), CONNECTIONS, READ_S, PGBENCH_S, KILLS, LAG_S, LAG_RATE, KEEP=1 (keep the
# temp dir). Results also go to $OUT (default target/bench-postgres.txt).
set -euo pipefail

cd "$(dirname "$0")/../.."
APPEND_EVENTS=${APPEND_EVENTS:-48000}
CONNECTIONS=${CONNECTIONS:-64}
READ_S=${READ_S:-10}
PGBENCH_S=${PGBENCH_S:-15}
KILLS=${KILLS:-12}
LAG_S=${LAG_S:-30}
LAG_RATE=${LAG_RATE:-1000}
OUT=${OUT:-target/bench-postgres.txt}

BIN=$PWD/target/release/grantline
HERE=$PWD/tests/bench
TMP=$(mktemp -d /tmp/grantline-pgbench.XXXXXX)
chmod 755 "$TMP"
NODE_PIDS=()

pg_bin_dir() {
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/pgbench" ] && { echo "$d"; return; }
    done
    command -v initdb >/dev/null && command -v pg_ctl >/dev/null && dirname "$(readlink -f "$(command -v initdb)")"
}
PG_BIN=$(pg_bin_dir) || { echo "no PostgreSQL server binaries (initdb, pg_ctl, pgbench) found" >&2; exit 1; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

cleanup() {
    local p
    for p in "${NODE_PIDS[@]}" $(cat "$TMP/failover.pids" 2>/dev/null); do
        kill -0 "$p" 2>/dev/null && kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${NODE_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ -f "$TMP/pg/data/postmaster.pid" ]; then
        as_pg "$PG_BIN/pg_ctl" stop -D "$TMP/pg/data" -m fast -w >/dev/null 2>&1 || true
    fi
    if [[ "${KEEP:-0}" != 1 ]]; then rm -rf "$TMP"; else echo "kept $TMP" >&2; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

mkdir -p "$(dirname "$OUT")"
: > "$OUT"
# shellcheck source=tests/bench/lib.sh
source "$HERE/lib.sh"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ratio() { awk -v x="$1" -v y="$2" 'BEGIN { printf "%.2f", x / y }'; }
HZ=$(getconf CLK_TCK)
# CPU use inside a measured window: a sampler (every 0.2 s) runs from cpu_start to cpu_window;
# cpu_window SECONDS reports the SECONDS that ended just now (the load generator's own clock).
CPU_PID=
cpu_start() { # cpu_start NAME=PID[,PID...]...
    python3 "$HERE/postgres_cpu.py" sample "$TMP/cpu.jsonl" 0.2 --pg "$(head -1 "$TMP/pg/data/postmaster.pid")" --ours $$ "$@" &
    CPU_PID=$!
    NODE_PIDS+=("$CPU_PID")
}
cpu_window() { # also sets WIN_M0 WIN_M1 (CLOCK_MONOTONIC) and keeps the samples in $TMP/cpu-last.jsonl
    local end
    end=$(date +%s.%N)
    WIN_M1=$(python3 -c 'import time; print(time.monotonic())')
    WIN_M0=$(awk -v e="$WIN_M1" -v s="$1" 'BEGIN { printf "%.6f", e - s }')
    sleep 0.25
    kill "$CPU_PID" 2>/dev/null || true
    wait "$CPU_PID" 2>/dev/null || true
    python3 "$HERE/postgres_cpu.py" window "$TMP/cpu.jsonl" "$(awk -v e="$end" -v s="$1" 'BEGIN { printf "%.3f", e - s }')" "$end"
    mv "$TMP/cpu.jsonl" "$TMP/cpu-last.jsonl"
}
# seq_split SAMPLES THREAD M0 M1 BATCHES: a thread's CPU and run-queue wait per batch in [M0, M1]
seq_split() {
    python3 - "$@" <<'PY'
import json, sys
path, name, m0, m1, n = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
rows = [json.loads(l) for l in open(path) if l.strip()]
a = min(rows, key=lambda r: abs(r["m"] - m0)); b = min(rows, key=lambda r: abs(r["m"] - m1))
scale = (m1 - m0) / max(1e-9, b["m"] - a["m"])
cpu = scale * (b[name + "_cpu_ns"] - a[name + "_cpu_ns"]) / 1e6 / n
wait = scale * (b[name + "_wait_ns"] - a[name + "_wait_ns"]) / 1e6 / n
print(f"per batch {cpu:.3f} ms on a CPU (plan and append) and {wait:.3f} ms runnable waiting for one (schedstat)")
PY
}

say "# grantline on PostgreSQL, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
say "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
say "commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' + uncommitted changes')"

echo "building release..." >&2
cargo build --release -p grantline >&2

# --- A throwaway PostgreSQL (as .ci/run starts it) ------------------------------------------
mkdir -p "$TMP/pg"
if [ "$(id -u)" = 0 ]; then chown postgres: "$TMP/pg"; fi
as_pg "$PG_BIN/initdb" -D "$TMP/pg/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
pg_started=
for _ in 1 2 3 4 5; do
    PG_PORT=$(free_port)
    pg_opts="-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$TMP/pg"
    # fsync and synchronous_commit on (the defaults, said out loud): every commit is durable.
    # track_wal_io_timing only adds the WAL write/fsync times to pg_stat_wal (reported below).
    pg_opts+=" -c max_connections=200 -c fsync=on -c synchronous_commit=on"
    # Observability only, for "where the time of a batch goes": the WAL write/fsync times in
    # pg_stat_wal, and the execution time of every statement (pg_stat_statements). Both
    # baselines and grantline run with them.
    pg_opts+=" -c track_wal_io_timing=on -c shared_preload_libraries=pg_stat_statements"
    if as_pg "$PG_BIN/pg_ctl" start -D "$TMP/pg/data" -l "$TMP/pg/server.log" -w -t 60 -o "$pg_opts" >/dev/null; then
        pg_started=1
        break
    fi
done
[ -n "$pg_started" ] || { cat "$TMP/pg/server.log" >&2; echo "PostgreSQL did not start" >&2; exit 1; }
PG="postgres://postgres@127.0.0.1:$PG_PORT"
psql_() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
say "PostgreSQL: $(psql_ "$PG/postgres" -Atc 'SHOW server_version'); fsync=$(psql_ "$PG/postgres" -Atc 'SHOW fsync'), synchronous_commit=$(psql_ "$PG/postgres" -Atc 'SHOW synchronous_commit'), wal_sync_method=$(psql_ "$PG/postgres" -Atc 'SHOW wal_sync_method'), shared_buffers=$(psql_ "$PG/postgres" -Atc 'SHOW shared_buffers')"

# WAL flushes and their time, and commits, in database DB since the last call (pg_stat_wal is
# cluster-wide: only one thing runs at a time here).
wal_mark() { psql_ "$PG/postgres" -Atc "SELECT wal_sync, wal_sync_time, wal_write, (SELECT xact_commit FROM pg_stat_database WHERE datname = '$1') FROM pg_stat_wal" | tr '|' ' '; }
wal_since() { # wal_since "MARK" DB -> "N fsyncs (mean X ms), M commits"
    local now
    now=$(wal_mark "$2")
    awk -v a="$1" -v b="$now" 'BEGIN { split(a, x, " "); split(b, y, " ");
        n = y[1] - x[1]; t = y[2] - x[2]; c = y[4] - x[4];
        printf "%d WAL fsyncs (mean %.3f ms each), %d commits in the database", n, (n > 0 ? t / n : 0), c }'
}

psql_ "$PG/postgres" -c 'CREATE EXTENSION pg_stat_statements'
pgss_reset() { psql_ "$PG/postgres" -Atc 'SELECT pg_stat_statements_reset()' > /dev/null; }
# pgss_batch DB BATCHES: server-side execution time of grantline's commit-path statements in
# DB since the last reset, per batch. (COMMIT's own time excludes the WAL flush, which
# PostgreSQL does after the statement; pg_stat_wal has that.)
pgss_batch() {
    psql_ "$PG/postgres" -Atc "
        SELECT string_agg(format('%s %s ms (%s calls)', label, to_char(t / $2, 'FM990.000'), calls), ', ' ORDER BY o)
               || format('; total %s ms per batch', to_char(sum(t) / $2, 'FM990.000'))
        FROM (SELECT CASE WHEN query ~* '^begin' THEN 'BEGIN' WHEN query ~* '^commit' THEN 'COMMIT'
                          WHEN query ~ 'FOR UPDATE' THEN 'SELECT head FOR UPDATE'
                          WHEN query ~ 'INSERT INTO grantline_records' THEN 'INSERT records'
                          WHEN query ~ 'INSERT INTO grantline_hashes' THEN 'INSERT hashes'
                          WHEN query ~ 'UPDATE grantline_head SET size' THEN 'UPDATE head'
                          WHEN query ~ 'pg_notify' THEN 'NOTIFY' END AS label,
                     min(CASE WHEN query ~* '^begin' THEN 1 WHEN query ~ 'FOR UPDATE' THEN 2
                              WHEN query ~ 'grantline_records' THEN 3 WHEN query ~ 'grantline_hashes' THEN 4
                              WHEN query ~ 'UPDATE grantline_head' THEN 5 WHEN query ~ 'pg_notify' THEN 6 ELSE 7 END) AS o,
                     sum(total_exec_time) AS t, sum(calls) AS calls
              FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = '$1')
              GROUP BY 1) x
        WHERE label IS NOT NULL"
}

# --- Baseline: pgbench, the one-row insert transaction --------------------------------------
psql_ "$PG/postgres" -c 'CREATE DATABASE pgb'
psql_ "$PG/pgb" -c 'CREATE TABLE t (id bigint PRIMARY KEY, leaf bytea NOT NULL)' -c 'CREATE SEQUENCE t_id'
# One transaction = one row: a new id and a 1,024-byte bytea (random bytes, drawn once per
# run), sent by the client as grantline's leader sends its leaves.
LEAF_BYTES=1024
LEAF=$(python3 -c "import os; print(os.urandom($LEAF_BYTES).hex())")
cat > "$TMP/insert.sql" <<SQL
INSERT INTO t(id, leaf) VALUES (nextval('t_id'), '\\x$LEAF'::bytea);
SQL
pgbench_tps() { # pgbench_tps CLIENTS: sets PGB_TPS (commits/s), PGB_WAL and PGB_CPU
    local m out
    m=$(wal_mark pgb)
    cpu_start
    out=$("$PG_BIN/pgbench" -n -f "$TMP/insert.sql" -c "$1" -j "$(( $1 < 2 ? 1 : 2 ))" -T "$PGBENCH_S" "$PG/pgb" 2>&1)
    PGB_CPU=$(cpu_window "$PGBENCH_S")
    echo "$out" > "$TMP/pgbench-$1.txt"
    PGB_WAL="$(wal_since "$m" pgb)"
    PGB_TPS=$(echo "$out" | awk '/^tps = / { printf "%.0f", $3 }')
}
echo "pgbench..." >&2
pgbench_tps 1; PGB1=$PGB_TPS
say "baseline pgbench, 1 client, ${PGBENCH_S}s: $PGB1 commits/s ($PGB_WAL; latency $(sed -n 's/^latency average = //p' "$TMP/pgbench-1.txt"))"
say "  $PGB_CPU"
pgbench_tps 16; PGB16=$PGB_TPS
say "baseline pgbench, 16 clients, ${PGBENCH_S}s: $PGB16 commits/s ($PGB_WAL; latency $(sed -n 's/^latency average = //p' "$TMP/pgbench-16.txt"))"
say "  $PGB_CPU (pgbench is the \"load generators\" figure)"
say "  pgbench command: $PG_BIN/pgbench -n -f insert.sql -c 16 -j 2 -T $PGBENCH_S (and -c 1 -j 1); insert.sql: $(cut -c1-70 "$TMP/insert.sql")...'::bytea); ($LEAF_BYTES random bytes)"

# --- Node helpers ----------------------------------------------------------------------------
start_node() { # start_node NAME DIR PORT [serve options...]; appends to NODE_PIDS
    local name=$1 dir=$2 port=$3
    shift 3
    "$BIN" serve --data "$dir" --addr "127.0.0.1:$port" "$@" > "$TMP/$name.out" 2> "$TMP/$name.err" &
    NODE_PIDS+=($!)
    eval "PID_$name=$!"
}
wait_role() { # wait_role PORT ROLE...
    local port=$1 h
    shift
    for _ in $(seq 1 600); do
        h=$(curl -s "http://127.0.0.1:$port/healthz" 2>/dev/null || true)
        for r in "$@"; do [[ "$h" == *"\"role\":\"$r\""* ]] && return 0; done
        sleep 0.1
    done
    echo "node on port $port never reported role $*: $h" >&2
    exit 1
}
stop_pids() { local p; for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done; for p in "$@"; do wait "$p" 2>/dev/null || true; done; }
metric() { curl -s "$1/metrics" | awk -v n="$2" '$1 == n { print $2 }'; }
batch_stats() { # batch_stats URL -> "B batches, R records per batch, T ms per batch append" (since start)
    local url=$1 es ec as ac
    es=$(metric "$url" grantline_batch_entries_sum); ec=$(metric "$url" grantline_batch_entries_count)
    as=$(metric "$url" grantline_append_seconds_sum); ac=$(metric "$url" grantline_append_seconds_count)
    awk -v es="$es" -v ec="$ec" -v as="$as" -v ac="$ac" 'BEGIN {
        printf "%d batches, %.1f records per batch, %.2f ms per batch append (store.append: plan, commit, flush)", ec, es / ec, 1000 * as / ac }'
}
lg() { # lg OUTFILE URL loadgen-args...
    local out=$1 url=$2
    shift 2
    "$BIN" loadgen --server "$url" "$@" --json > "$out"
}
elapsed() { json_field "$(cat "$1")" main.elapsed_s; }

# --- 1. One node: appends on PostgreSQL and on sled ------------------------------------------
psql_ "$PG/postgres" -c 'CREATE DATABASE one'
"$BIN" init --data "$TMP/one" --db "$PG/one" --origin localhost/grantline --admin-key-out "$TMP/one.admin.key" > /dev/null
P1=$(free_port)
start_node one "$TMP/one" "$P1" --db "$PG/one"
wait_role "$P1" leader
U1="http://127.0.0.1:$P1"
echo "appends, one node on PostgreSQL..." >&2
SEQ_TID=$(grep -l '^grantline-seque' /proc/"$PID_one"/task/*/comm | head -1 | cut -d/ -f5)
pgss_reset
M=$(wal_mark one); NB0=$(metric "$U1" grantline_batch_entries_count)
cpu_start server="$PID_one" --thread "seq=$PID_one:$SEQ_TID"
lg "$TMP/app-pg.json" "$U1" appends --admin-key "$TMP/one.admin.key" --events "$APPEND_EVENTS" --connections "$CONNECTIONS"
cpu_window "$(elapsed "$TMP/app-pg.json")" > "$TMP/cpu-line.txt"
CPU_LINE=$(cat "$TMP/cpu-line.txt")
# The setup's 33 statements are posted one at a time (33 batches) before the clock starts.
NB1=$(metric "$U1" grantline_batch_entries_count)
SEQ_LINE=$(seq_split "$TMP/cpu-last.jsonl" seq "$WIN_M0" "$WIN_M1" "$((NB1 - NB0 - 33))")
R=$(cat "$TMP/app-pg.json")
APG=$(json_field "$R" main.per_s)
say "appends, one node on PostgreSQL, $CONNECTIONS connections, $APPEND_EVENTS events: $APG/s, p50 $(json_field "$R" main.p50_ms) ms, p99 $(json_field "$R" main.p99_ms) ms, max $(json_field "$R" main.max_ms) ms, errors $(json_field "$R" main.errors)"
say "  ratio to pgbench: $(ratio "$APG" "$PGB16") x 16 clients (target >= 1.0), $(ratio "$APG" "$PGB1") x 1 client"
say "  $CPU_LINE"
BATCHES_PG=$(metric "$U1" grantline_batch_entries_count)
BATCH_PG=$(awk -v s="$(metric "$U1" grantline_batch_entries_sum)" -v c="$BATCHES_PG" 'BEGIN { printf "%.0f", s / c }')
APPEND_SUM=$(metric "$U1" grantline_append_seconds_sum)
say "  $(batch_stats "$U1"); the sequencer thread spent $(awk -v a="$APPEND_SUM" -v e="$(elapsed "$TMP/app-pg.json")" 'BEGIN { printf "%.2f s of the %.2f s measured in store.append", a, e }') and, in the measured window, $SEQ_LINE"
say "  in PostgreSQL meanwhile (setup included): $(wal_since "$M" one)"
say "  PostgreSQL's execution of the commit path, per batch (pg_stat_statements): $(pgss_batch one "$BATCHES_PG")"
say "  in PostgreSQL: $(psql_ "$PG/one" -Atc "SELECT format('%s records, %s bytes per leaf on average, %s hashes per record', count(*), round(avg(length(leaf))), round((SELECT count(*) FROM grantline_hashes)::numeric / count(*), 2)) FROM grantline_records")"
stop_pids "$PID_one"

# Diagnostic, the same load on a fresh database: where the sequencer's time goes. `perf
# record -a` takes the enter and exit of a few syscalls (filtered by id in the kernel; per-thread
# perf events do not work on this VM); tests/bench/postgres_perf.py sums, for the sequencer
# thread, the time blocked in epoll_wait (its PostgreSQL client awaiting answers) and in futex
# (sled's I/O threads, locks), and the sled I/O threads' sync calls. Its throughput is reported
# too, to show what tracing costs.
psql_ "$PG/postgres" -c 'CREATE DATABASE diag'
"$BIN" init --data "$TMP/diag" --db "$PG/diag" --origin localhost/grantline --admin-key-out "$TMP/diag.admin.key" > /dev/null
PD=$(free_port)
start_node diag "$TMP/diag" "$PD" --db "$PG/diag"
wait_role "$PD" leader
UD="http://127.0.0.1:$PD"
if command -v perf > /dev/null && perf record -q -o /dev/null -a -e raw_syscalls:sys_enter --filter 'id == 75' -- true > /dev/null 2>&1; then
    echo "appends, one node on PostgreSQL, traced (diagnostic)..." >&2
    DSEQ=$(grep -l '^grantline-seque' /proc/"$PID_diag"/task/*/comm | head -1 | cut -d/ -f5)
    IDS="id == 232 || id == 281 || id == 441 || id == 202 || id == 7 || id == 271 || id == 277 || id == 74 || id == 75 || id == 18 || id == 296 || id == 328"
    perf record -q -o "$TMP/perf.data" -a -k CLOCK_MONOTONIC -e raw_syscalls:sys_enter --filter "$IDS" \
        -e raw_syscalls:sys_exit --filter "$IDS" > /dev/null 2> "$TMP/perf.err" &
    PERF_PID=$!
    NODE_PIDS+=("$PERF_PID")
    sleep 1
    DB0=$(metric "$UD" grantline_batch_entries_count)
    cpu_start server="$PID_diag" --thread "seq=$PID_diag:$DSEQ"
    lg "$TMP/app-diag.json" "$UD" appends --admin-key "$TMP/diag.admin.key" --events "$APPEND_EVENTS" --connections "$CONNECTIONS"
    cpu_window "$(elapsed "$TMP/app-diag.json")" > "$TMP/cpu-line.txt"
    DB1=$(metric "$UD" grantline_batch_entries_count)
    kill -INT "$PERF_PID"; wait "$PERF_PID" 2>/dev/null || true
    R=$(cat "$TMP/app-diag.json")
    say "diagnostic: the same appends on a fresh database under perf record: $(json_field "$R" main.per_s)/s, p99 $(json_field "$R" main.p99_ms) ms; $(batch_stats "$UD")"
    say "  $(cat "$TMP/cpu-line.txt")"
    # The setup's 33 statements are posted one at a time (33 batches) before the clock starts.
    say "  $(perf script -i "$TMP/perf.data" 2> /dev/null | python3 "$HERE/postgres_perf.py" --seq-tid "$DSEQ" \
        --tids "$(ls /proc/"$PID_diag"/task | tr '\n' ' ')" --start "$WIN_M0" --end "$WIN_M1" \
        --batches "$((DB1 - DB0 - 33))" --samples "$TMP/cpu-last.jsonl" --thread seq)"
    rm -f "$TMP/perf.data"
fi
stop_pids "$PID_diag"

# The same transaction as one batch of the run above, from one pgbench client: the ceiling of
# a sequencer that commits one transaction at a time (grantline's leader does).
psql_ "$PG/pgb" -c 'CREATE TABLE rec (seq bigint PRIMARY KEY, id text NOT NULL UNIQUE, leaf bytea NOT NULL)' \
    -c 'CREATE TABLE hashes (idx bigint PRIMARY KEY, hash bytea NOT NULL)' \
    -c 'CREATE TABLE head (one boolean PRIMARY KEY DEFAULT true CHECK (one), size bigint NOT NULL, root bytea, chain bytea)' \
    -c 'INSERT INTO head (size) VALUES (0)'
cat > "$TMP/batch.sql" <<SQL
BEGIN;
SELECT size FROM head FOR UPDATE \gset
INSERT INTO rec (seq, id, leaf) SELECT s, 'lg-u' || s, '\\x$LEAF'::bytea FROM generate_series(:size, :size + $BATCH_PG - 1) s;
INSERT INTO hashes (idx, hash) SELECT s, sha256(int8send(s)) FROM generate_series(2 * :size, 2 * :size + 2 * $BATCH_PG - 1) s;
UPDATE head SET size = :size + $BATCH_PG, root = sha256(int8send(:size)), chain = sha256(int8send(:size + 1));
SELECT pg_notify('grantline_bench', (:size + $BATCH_PG)::text);
COMMIT;
SQL
echo "pgbench, one batch-shaped transaction..." >&2
"$PG_BIN/pgbench" -n -M extended -f "$TMP/batch.sql" -c 1 -j 1 -T "$((PGBENCH_S / 2 + 1))" "$PG/pgb" > "$TMP/pgbench-batch.txt" 2>&1
PGBB=$(awk '/^tps = / { printf "%.0f", $3 }' "$TMP/pgbench-batch.txt")
say "diagnostic: pgbench, 1 client (-M extended), the transaction of one batch of $BATCH_PG records (SELECT head FOR UPDATE; INSERT $BATCH_PG records of $LEAF_BYTES bytes; INSERT $((2 * BATCH_PG)) hashes; UPDATE head; NOTIFY; COMMIT): $PGBB transactions/s, latency $(sed -n 's/^latency average = //p' "$TMP/pgbench-batch.txt") = $((PGBB * BATCH_PG)) records/s, the ceiling of one committer at this batch size"
"$BIN" init --data "$TMP/sled" --origin localhost/grantline --admin-key-out "$TMP/sled.admin.key" > /dev/null
PS=$(free_port)
start_node sled "$TMP/sled" "$PS"
wait_role "$PS" standalone
US="http://127.0.0.1:$PS"
echo "appends, one node on sled..." >&2
cpu_start server="$PID_sled"
lg "$TMP/app-sled.json" "$US" appends --admin-key "$TMP/sled.admin.key" --events "$APPEND_EVENTS" --connections "$CONNECTIONS"
CPU_LINE=$(cpu_window "$(elapsed "$TMP/app-sled.json")")
R=$(cat "$TMP/app-sled.json")
ASLED=$(json_field "$R" main.per_s)
say "appends, one node on sled (serve --data, no --db), same load: $ASLED/s, p50 $(json_field "$R" main.p50_ms) ms, p99 $(json_field "$R" main.p99_ms) ms, max $(json_field "$R" main.max_ms) ms, errors $(json_field "$R" main.errors)"
say "  PostgreSQL node / sled node: $(ratio "$APG" "$ASLED"); sled node / pgbench 16 clients: $(ratio "$ASLED" "$PGB16")"
say "  $CPU_LINE"
say "  $(batch_stats "$US")"
stop_pids "$PID_sled"

# --- 2. Three nodes on one database -----------------------------------------------------------
psql_ "$PG/postgres" -c 'CREATE DATABASE three'
"$BIN" init --data "$TMP/n1" --db "$PG/three" --origin localhost/grantline --admin-key-out "$TMP/three.admin.key" > /dev/null
for n in n2 n3; do
    install -d -m 700 "$TMP/$n"
    install -m 600 "$TMP/n1/log.key" "$TMP/n1/automation.key" "$TMP/$n/"
done
PN1=$(free_port); PN2=$(free_port); PN3=$(free_port)
start_node n1 "$TMP/n1" "$PN1" --db "$PG/three" --advertise "http://127.0.0.1:$PN1"
wait_role "$PN1" leader
start_node n2 "$TMP/n2" "$PN2" --db "$PG/three" --advertise "http://127.0.0.1:$PN2"
start_node n3 "$TMP/n3" "$PN3" --db "$PG/three" --advertise "http://127.0.0.1:$PN3"
wait_role "$PN2" follower
wait_role "$PN3" follower
URLS=("http://127.0.0.1:$PN1" "http://127.0.0.1:$PN2" "http://127.0.0.1:$PN3")
NPIDS=("$PID_n1" "$PID_n2" "$PID_n3")
ADMIN3="$TMP/three.admin.key"

three_parallel() { # three_parallel NAME TARGETS loadgen-args...: three load generators in parallel;
    # TARGETS "all" (one per node) or a node index (all three at that node)
    local name=$1 targets=$2 i pids=()
    shift 2
    for i in 0 1 2; do
        lg "$TMP/$name-$i.json" "${URLS[$([ "$targets" = all ] && echo "$i" || echo "$targets")]}" "$@" &
        pids+=($!)
    done
    for i in 0 1 2; do wait "${pids[$i]}"; done
}
sum_field() { # sum_field NAME FIELD -> sum over the three reports
    local i s=0
    for i in 0 1 2; do s=$(awk -v s="$s" -v x="$(json_field "$(cat "$TMP/$1-$i.json")" "$2")" 'BEGIN { print s + x }'); done
    printf "%.0f" "$s"
}
each_field() { local i; for i in 0 1 2; do printf "%s " "$(json_field "$(cat "$TMP/$1-$i.json")" "$2")"; done; }
longest() { local i; for i in 0 1 2; do elapsed "$TMP/$1-$i.json"; done | sort -g | tail -1; }
NODES_CPU=(node1="$PID_n1" node2="$PID_n2" node3="$PID_n3")

echo "appends, three nodes..." >&2
PER=$((APPEND_EVENTS / 3))
M=$(wal_mark three)
cpu_start "${NODES_CPU[@]}"
three_parallel app3 all appends --admin-key "$ADMIN3" --events "$PER" --connections "$CONNECTIONS"
CPU_LINE=$(cpu_window "$(longest app3)")
A3=$(sum_field app3 main.per_s)
A3_OK=$(sum_field app3 main.ok)
say "appends through three nodes (node 1 leads; one load generator per node, $CONNECTIONS connections each, $PER events each, in parallel): sum $A3/s (per node: $(each_field app3 main.per_s)/s; $A3_OK records / longest run $(longest app3) s = $(awk -v a="$A3_OK" -v s="$(longest app3)" 'BEGIN { printf "%.0f", a / s }')/s), p50 per node: $(each_field app3 main.p50_ms)ms, p99 per node: $(each_field app3 main.p99_ms)ms, errors: $(each_field app3 main.errors)"
say "  ratio to one node on PostgreSQL: $(ratio "$A3" "$APG"); to pgbench 16 clients: $(ratio "$A3" "$PGB16")"
say "  $CPU_LINE"
say "  leader: $(batch_stats "${URLS[0]}"); in PostgreSQL meanwhile: $(wal_since "$M" three)"

for mode in access-check inclusion; do
    echo "$mode: one node, three load generators at one node, three nodes..." >&2
    extra=()
    [ "$mode" = access-check ] && extra=(--admin-key "$ADMIN3")
    cpu_start "${NODES_CPU[@]}"
    lg "$TMP/one-$mode.json" "${URLS[1]}" "$mode" "${extra[@]}" --duration-s "$READ_S" --connections "$CONNECTIONS"
    CPU_LINE=$(cpu_window "$(elapsed "$TMP/one-$mode.json")")
    R=$(cat "$TMP/one-$mode.json")
    R1=$(json_field "$R" main.per_s)
    say "$mode, one node (node 2, a follower), one load generator, $CONNECTIONS connections, ${READ_S}s: $R1/s, p50 $(json_field "$R" main.p50_ms) ms, p99 $(json_field "$R" main.p99_ms) ms, errors $(json_field "$R" main.errors) (log size $(json_field "$R" log_size_before))"
    say "  $CPU_LINE"
    cpu_start "${NODES_CPU[@]}"
    three_parallel "o3-$mode" 1 "$mode" "${extra[@]}" --duration-s "$READ_S" --connections "$CONNECTIONS"
    CPU_LINE=$(cpu_window "$(longest "o3-$mode")")
    RO3=$(sum_field "o3-$mode" main.per_s)
    say "$mode, one node (node 2), three load generators in parallel ($CONNECTIONS connections each): sum $RO3/s (each: $(each_field "o3-$mode" main.per_s)/s; p99 $(each_field "o3-$mode" main.p99_ms)ms; errors $(each_field "o3-$mode" main.errors))"
    say "  $CPU_LINE"
    cpu_start "${NODES_CPU[@]}"
    three_parallel "r3-$mode" all "$mode" "${extra[@]}" --duration-s "$READ_S" --connections "$CONNECTIONS"
    CPU_LINE=$(cpu_window "$(longest "r3-$mode")")
    R3=$(sum_field "r3-$mode" main.per_s)
    say "$mode, three nodes, one load generator per node in parallel ($CONNECTIONS connections each): sum $R3/s (per node: $(each_field "r3-$mode" main.per_s)/s; p99 $(each_field "r3-$mode" main.p99_ms)ms; errors $(each_field "r3-$mode" main.errors))"
    say "  three nodes / one node: $(ratio "$R3" "$R1") (one load generator), $(ratio "$R3" "$RO3") (three load generators at one node)"
    say "  $CPU_LINE"
done

# --- 4. Follower lag under a steady write rate to the leader --------------------------------
echo "follower lag at $LAG_RATE appends/s..." >&2
SIZE=$(curl -s "${URLS[0]}/healthz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["size"])')
python3 "$HERE/postgres_lag.py" --from "$SIZE" --duration-s "$((LAG_S + 4))" --skip-s 4 \
    --stream "leader=${URLS[0]}" --stream "follower2=${URLS[1]}" --stream "follower3=${URLS[2]}" > "$TMP/lag.json" &
LAG_PID=$!
sleep 0.5
cpu_start "${NODES_CPU[@]}"
lg "$TMP/lag-load.json" "${URLS[0]}" access-check --admin-key "$ADMIN3" --duration-s "$LAG_S" \
    --append-rate "$LAG_RATE" --connections 1
CPU_LINE=$(cpu_window "$(elapsed "$TMP/lag-load.json")")
wait "$LAG_PID"
R=$(cat "$TMP/lag-load.json")
L=$(cat "$TMP/lag.json")
say "follower lag, appends at $LAG_RATE/s to the leader for ${LAG_S}s (loadgen access-check --append-rate $LAG_RATE --connections 1): background appends achieved $(json_field "$R" background.per_s)/s, p99 $(json_field "$R" background.p99_ms) ms, errors $(json_field "$R" background.errors)"
for s in leader follower2 follower3; do
    say "  $s: arrival on its event stream - received_at_ms: p50 $(json_field "$L" "streams.$s.p50_ms") ms, p99 $(json_field "$L" "streams.$s.p99_ms") ms, max $(json_field "$L" "streams.$s.max_ms") ms over $(json_field "$L" "streams.$s.n") records"
done
for s in follower2 follower3; do
    say "  $s behind the leader's own stream, per record: p50 $(json_field "$L" "streams.$s.behind_leader.p50_ms") ms, p99 $(json_field "$L" "streams.$s.behind_leader.p99_ms") ms, max $(json_field "$L" "streams.$s.behind_leader.max_ms") ms"
done
[ "$(json_field "$L" errors)" = "[]" ] || say "  stream errors: $(json_field "$L" errors)"
say "  $CPU_LINE (the access checks run on one connection, as fast as they are answered)"

# --- 3. Failover ------------------------------------------------------------------------------
echo "failover, $KILLS leader kills..." >&2
stop_pids "${NPIDS[@]}"
NODE_PIDS=()
python3 "$HERE/postgres_failover.py" --bin "$BIN" --db "$PG/three" --admin-key "$ADMIN3" --kills "$KILLS" \
    --logs "$TMP" --pids "$TMP/failover.pids" \
    --node "$TMP/n1:$PN1" --node "$TMP/n2:$PN2" --node "$TMP/n3:$PN3" > "$TMP/failover.json" 2> "$TMP/failover.err" ||
    { cat "$TMP/failover.err" >&2; exit 1; }
F=$(cat "$TMP/failover.json")
say "failover, $(json_field "$F" kills) SIGKILLs of the leader (restarted each time), fresh signed envelopes posted every 10 ms to a surviving node: first 201 after median $(json_field "$F" first_201_median_s) s, max $(json_field "$F" first_201_max_s) s, min $(json_field "$F" first_201_min_s) s (target <= 5 s); kills without a 201 within 60 s: $(json_field "$F" without_201)"
say "  another node reports leader on /healthz after median $(json_field "$F" new_leader_median_s) s, max $(json_field "$F" new_leader_max_s) s"
say "  each kill: $(python3 -c 'import json,sys; print("; ".join("%s->%s: 201 %ss (led %ss, %s)" % (k["killed_node"], k["new_leader"], k["first_201_s"], k["new_leader_s"], k["answers_before_201"]) for k in json.loads(sys.argv[1])["each"]))' "$F")"
say "done; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); results in $OUT"
