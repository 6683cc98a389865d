#!/bin/sh
# The primary MC system's ACMS as three workers behind Kamailio's dispatcher, on one
# PostgreSQL database (docs/scale-out.md).  Kamailio takes the ACMS's usual address
# (127.0.0.1:5060), so examples/config/primary/acmc.toml and examples/config/partner/*.toml
# work with it unchanged.
#
#   examples/scale-out/start.sh                 # a throwaway PostgreSQL in /tmp/mcacm-scale-out
#   MCACM_PG_URL=postgresql://acms@db/acms examples/scale-out/start.sh   # your database
#
# Ctrl-C stops everything it started (each process by its PID).  Needs: kamailio, mcacm
# (pip install 'mcacm-sip[postgres]'), and for the throwaway database PostgreSQL's initdb and
# pg_ctl (Debian: /usr/lib/postgresql/*/bin; initdb refuses to run as root).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
run=${MCACM_SCALE_OUT_DIR:-/tmp/mcacm-scale-out}
mkdir -p "$run"
pids=""
pg_started=""
as=""

cleanup() {
    for pid in $pids; do kill "$pid" 2>/dev/null || true; done
    for pid in $pids; do wait "$pid" 2>/dev/null || true; done
    pids=""
    if [ -n "$pg_started" ]; then
        pg_started=""
        $as "$pg_bin/pg_ctl" -D "$run/pg" -m fast stop >/dev/null || true
    fi
}
trap cleanup EXIT INT TERM

url=${MCACM_PG_URL:-}
if [ -z "$url" ]; then
    pg_bin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -1)" 2>/dev/null || true)
    [ -x "$pg_bin/initdb" ] || pg_bin=$(dirname "$(command -v initdb || echo /nonexistent/initdb)")
    if [ ! -x "$pg_bin/initdb" ]; then
        echo "start.sh: no initdb found; install PostgreSQL or set MCACM_PG_URL" >&2; exit 69
    fi
    # initdb refuses to run as root: as root, the cluster runs as the postgres user
    as=""
    if [ "$(id -u)" = 0 ]; then as="runuser -u postgres --"; chown postgres "$run"; fi
    [ -d "$run/pg" ] || $as "$pg_bin/initdb" -D "$run/pg" -A trust -U mcacm >/dev/null
    # a Unix socket in $run only: no TCP port to collide with
    $as "$pg_bin/pg_ctl" -D "$run/pg" -l "$run/pg.log" -w \
        -o "-k $run -c listen_addresses=''" start >/dev/null
    pg_started=1
    $as "$pg_bin/createdb" -h "$run" -U mcacm mcacm 2>/dev/null || true
    url="postgresql://mcacm@/mcacm?host=$run"
fi

# the workers' TOMLs with this database
for n in 1 2 3; do
    sed "s|^url = .*|url = \"$url\"|" "$here/worker-$n.toml" > "$run/worker-$n.toml"
done

kamailio -f "$here/kamailio.cfg" -DD -E -m 64 -M 8 -Y "$run" -P "$run/kamailio.pid" \
    -A "DS_LIST=\"$here/dispatcher.list\"" >"$run/kamailio.log" 2>&1 &
pids="$pids $!"
for n in 1 2 3; do
    mcacm acms --config "$run/worker-$n.toml" 2>"$run/worker-$n.log" &
    pids="$pids $!"
done
echo "dispatcher on 127.0.0.1:5060, workers on 5081-5083, database $url"
echo "logs in $run; Ctrl-C stops all"
wait
