#!/bin/sh
# Measures several vspcd daemons on one PostgreSQL, in one run, and prints a table:
#   - connect rate (VMs/s) with one daemon and with two;
#   - vMotion rate with one daemon (local vMotions) and with two (every vMotion crosses daemons);
#   - the window of a vMotion (BEGIN to COMPLETE as the VM sees it), local and across daemons, median and p99,
#     and what crossing adds;
#   - failover after kill -9: from the kill to each console reachable again on the survivor (a person there sees
#     the VM's output after the VM reconnected through the survivor's address).
#
# It starts a private PostgreSQL (initdb in a temporary folder, as user postgres when run as root) on 127.0.0.1,
# and the daemons on 127.0.0.2 and 127.0.0.3. Build first: swift build -c release (or set BIN=.build/debug).
#
# Settings (environment): BIN (default .build/release), PG_BIN (default VSPC_TEST_PG_BIN or the newest
# /usr/lib/postgresql/N/bin), VMS (100), RATE (vMotions/s asked for, 200), SECONDS_RUN (20), FAILOVER_VMS (20).
set -eu

BIN=${BIN:-.build/release}
VMS=${VMS:-100}
RATE=${RATE:-200}
SECONDS_RUN=${SECONDS_RUN:-20}
FAILOVER_VMS=${FAILOVER_VMS:-20}
if [ -z "${PG_BIN:-}" ]; then
    PG_BIN=${VSPC_TEST_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
fi
for tool in "$BIN/vspcd" "$BIN/vspc" "$BIN/vspc-vmsim" "$PG_BIN/initdb" "$PG_BIN/pg_ctl" "$PG_BIN/psql"; do
    if [ ! -x "$tool" ]; then
        echo "bench-cluster: $tool is missing (build with swift build -c release; PostgreSQL is Debian's postgresql)" >&2
        exit 1
    fi
done

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

work=$(mktemp -d /tmp/vspc-bench-cluster.XXXXXX)
pids=""
as_postgres() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
cleanup() {
    for pid in $pids; do kill -9 "$pid" 2>/dev/null || true; done
    as_postgres "$PG_BIN/pg_ctl" -D "$work/pg" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

# PostgreSQL.
if [ "$(id -u)" = 0 ]; then chown postgres "$work"; fi
pg_port=$(free_port)
as_postgres "$PG_BIN/initdb" -D "$work/pg" -U postgres --auth=trust --no-sync >/dev/null
as_postgres "$PG_BIN/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w \
    -o "-h 127.0.0.1 -p $pg_port -k $work -c max_connections=200" start >/dev/null
"$PG_BIN/psql" -X -q -d "postgresql://postgres@127.0.0.1:$pg_port/postgres" -c "CREATE DATABASE bench"
db="postgresql://postgres@127.0.0.1:$pg_port/bench"

range_start=24000
range_end=24999

# start_daemon NAME ADDRESS: starts vspcd as node NAME on ADDRESS; sets proxy_NAME, admin_NAME, pid_NAME.
start_daemon() {
    name=$1 address=$2
    proxy=$(free_port) admin=$(free_port) link=$(free_port)
    "$BIN/vspcd" --db "$db" --node "$name" --listen-host "$address" --proxy "$address:$proxy" \
        --admin "$address:$admin" --cluster-listen "$address:$link" --lease-timeout 3 \
        --port-range-start "$range_start" --port-range-end "$range_end" --console-log-dir off \
        --new-ports-per-minute 100000 --proxy-max-unidentified-per-address 10000 \
        >"$work/$name.log" 2>&1 &
    pid=$!
    pids="$pids $pid"
    eval "proxy_$name=$address:$proxy admin_$name=$address:$admin pid_$name=$pid"
    tries=0
    until "$BIN/vspc" list --admin "$address:$admin" >/dev/null 2>&1; do
        tries=$((tries + 1))
        if [ $tries -gt 300 ] || ! kill -0 "$pid" 2>/dev/null; then
            echo "bench-cluster: vspcd $name did not start:" >&2
            tail -n 20 "$work/$name.log" >&2
            exit 1
        fi
        sleep 0.1
    done
}

# field KEY FILE: the value of KEY= on the `result` line of FILE.
field() {
    grep '^result ' "$2" | tail -n 1 | tr ' ' '\n' | sed -n "s/^$1=//p"
}

start_daemon n1 127.0.0.2
echo "one daemon: $VMS VMs, $RATE vMotions/s asked for, $SECONDS_RUN s" >&2
"$BIN/vspc-vmsim" storm --hosts "$proxy_n1" --count "$VMS" --rate "$RATE" --seconds "$SECONDS_RUN" \
    --name bench-one | tee "$work/one.txt" >&2

start_daemon n2 127.0.0.3
echo "two daemons: $VMS VMs, $RATE vMotions/s asked for, $SECONDS_RUN s" >&2
"$BIN/vspc-vmsim" storm --hosts "$proxy_n1,$proxy_n2" --count "$VMS" --rate "$RATE" --seconds "$SECONDS_RUN" \
    --name bench-two | tee "$work/two.txt" >&2

echo "failover: $FAILOVER_VMS VMs on n1, kill -9 n1" >&2
"$BIN/vspc-vmsim" failover --hosts "$proxy_n1,$proxy_n2" --admin "$admin_n2" --kill-pid "$pid_n1" \
    --count "$FAILOVER_VMS" | tee "$work/failover.txt" >&2

added() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || a == "" || b == "") print "-"; else printf "%.1f", a - b }'
}
one=$work/one.txt two=$work/two.txt
printf '%-40s %14s %14s\n' "" "1 daemon" "2 daemons"
printf '%-40s %14s %14s\n' "connect rate (VMs/s)" "$(field connect_rate "$one")" "$(field connect_rate "$two")"
printf '%-40s %14s %14s\n' "vMotion rate (/s, asked $RATE)" "$(field migration_rate "$one")" "$(field migration_rate "$two")"
printf '%-40s %14s %14s\n' "failed vMotions (of them NOTNOW)" "$(field failed "$one") ($(field notnow "$one"))" \
    "$(field failed "$two") ($(field notnow "$two"))"
printf '%-40s %14s %14s\n' "vMotion window median (ms)" "$(field local_median_ms "$one")" "$(field cross_median_ms "$two")"
printf '%-40s %14s %14s\n' "vMotion window p99 (ms)" "$(field local_p99_ms "$one")" "$(field cross_p99_ms "$two")"
printf '%-40s %14s %14s\n' "added by crossing daemons, median (ms)" "" \
    "$(added "$(field cross_median_ms "$two")" "$(field local_median_ms "$one")")"
printf '%-40s %14s %14s\n' "added by crossing daemons, p99 (ms)" "" \
    "$(added "$(field cross_p99_ms "$two")" "$(field local_p99_ms "$one")")"
printf '%-40s %14s %14s\n' "failover after kill -9, median (s)" "" "$(field failover_median_s "$work/failover.txt")"
printf '%-40s %14s %14s\n' "failover after kill -9, max (s)" "" "$(field failover_max_s "$work/failover.txt")"
