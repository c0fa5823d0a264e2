# Helpers shared by the benchmark scripts in tests/bench/ (sourced, not run). A script sets OUT
# (its results file) and TMP (its temp directory) before sourcing this, and BIN and DATA before
# it starts a server.

# Prints a result line and appends it to $OUT.
say() { echo "$*" | tee -a "$OUT"; }

json_field() { # json_field JSON PATH(dot-separated)
    python3 -c 'import json,sys; v=json.loads(sys.argv[1])
for k in sys.argv[2].split("."): v=v[k]
print(round(v, 2) if isinstance(v, float) else v)' "$1" "$2"
}

# Criterion's middle estimate for NAME in $TMP/criterion.txt, converted to seconds.
crit() { # crit NAME -> seconds per iteration
    local name=$1
    awk -v n="$name" '
        $0 ~ "^"n"[[:space:]]*$" || $1 == n { found = 1 }
        found && /time:/ {
            gsub(/\[|\]/, ""); for (i = 1; i <= NF; i++) if ($i == "time:") { v = $(i+3); u = $(i+4) }
            m = (u == "ns") ? 1e-9 : (u == "µs" || u == "us") ? 1e-6 : (u == "ms") ? 1e-3 : 1
            printf "%.9g\n", v * m; exit
        }' "$TMP/criterion.txt"
}

SERVER_PID=""

# Starts `grantline serve` on $DATA (extra serve options as arguments; RUST_LOG from
# $SERVER_RUST_LOG, default info) and waits for it to answer; sets SERVER_PID, URL and START_S
# (spawn to first /healthz answer).
start_server() {
    local t0 t1
    : > "$TMP/server.out"
    t0=$(date +%s.%N)
    RUST_LOG=${SERVER_RUST_LOG:-info} "$BIN" serve --data "$DATA" --addr 127.0.0.1:0 "$@" \
        > "$TMP/server.out" 2>> "$TMP/server.err" &
    SERVER_PID=$!
    for _ in $(seq 1 6000); do
        grep -q "listening on" "$TMP/server.out" 2>/dev/null && break
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/server.err" >&2; exit 1; }
        sleep 0.01
    done
    URL=$(sed -n 's/^grantline listening on //p' "$TMP/server.out")
    curl -sf "$URL/healthz" > /dev/null
    t1=$(date +%s.%N)
    START_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
}

stop_server() {
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
    SERVER_PID=""
}

# The EXIT trap of a script with one server: stops it, then removes $TMP (unless KEEP=1).
stop_server_and_clean_up() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ "${KEEP:-0}" != 1 ]]; then rm -rf "$TMP"; else echo "kept $TMP"; fi
}
