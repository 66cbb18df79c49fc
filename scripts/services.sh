#!/usr/bin/env bash
# Dev services for Vigil: NATS with JetStream and PostgreSQL, installed and started on loopback
# with their data under var/, idempotently, on a fresh machine.
#
# NATS: nats-server v2.15.2 built from the Go module proxy into a cache outside the clone
# (~/.cache/vigil, kept across runs); Debian's 2.9 lacks JetStream's sync_interval and the
# consumer API that async-nats 0.51 speaks. PostgreSQL: Debian's package, run as a private
# cluster under var/pg.
#
#   scripts/services.sh up       install if missing, start, wait until ready (default)
#   scripts/services.sh down     stop both
#   scripts/services.sh status   say what runs
#
# Settings (environment): VIGIL_VAR (default <repo>/var), VIGIL_NATS_PORT (4222),
# VIGIL_NATS_MONITOR_PORT (8222), VIGIL_PG_PORT (5433). `up` writes var/services.env with the
# URLs the tests read (VIGIL_NATS_URL, VIGIL_PG_URL).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VAR="${VIGIL_VAR:-$ROOT/var}"
NATS_PORT="${VIGIL_NATS_PORT:-4222}"
NATS_MON="${VIGIL_NATS_MONITOR_PORT:-8222}"
PG_PORT="${VIGIL_PG_PORT:-5433}"
NATS_DIR="$VAR/nats"
PG_DIR="$VAR/pg"
NATS_VERSION=v2.15.2
CACHE="${VIGIL_CACHE:-$HOME/.cache/vigil}"
NATS_BIN="$CACHE/nats-$NATS_VERSION/nats-server"

log() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [[ $(id -u) == 0 ]]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        die "need root to run: $*"
    fi
}

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null || die "apt-get not found: install $* by hand"
    if [[ $APT_UPDATED == 0 ]]; then
        log "apt-get update"
        as_root apt-get update -qq >/dev/null || die "apt-get update failed"
        APT_UPDATED=1
    fi
    log "installing $*"
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
        || die "apt-get install $* failed"
}

pg_bin() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x "$d/postgres" ]] && { echo "$d"; return; }
    done
}

install() {
    if [[ ! -x "$NATS_BIN" ]]; then
        command -v go >/dev/null || die "go is needed to build nats-server $NATS_VERSION (the machine image has it)"
        log "building nats-server $NATS_VERSION from the Go module proxy into $(dirname "$NATS_BIN")"
        mkdir -p "$(dirname "$NATS_BIN")"
        GOBIN="$(dirname "$NATS_BIN")" GOFLAGS=-mod=mod go install "github.com/nats-io/nats-server/v2@$NATS_VERSION" \
            || die "go install nats-server $NATS_VERSION failed"
    fi
    [[ -n "$(pg_bin)" ]] || apt_install postgresql
    command -v curl >/dev/null || apt_install curl
    [[ -n "$(pg_bin)" ]] || die "postgres is still missing after install"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # wait_for WHAT SECONDS CMD...
    local what="$1" secs="$2"
    shift 2
    for ((i = 0; i < secs * 10; i++)); do
        "$@" && return 0
        sleep 0.1
    done
    return 1
}

nats_pid() { [[ -f "$NATS_DIR/nats.pid" ]] && cat "$NATS_DIR/nats.pid"; }
nats_running() { local p; p=$(nats_pid) && kill -0 "$p" 2>/dev/null; }
nats_healthy() { curl -fsS "http://127.0.0.1:$NATS_MON/healthz?js-enabled-only=true" >/dev/null 2>&1; }

nats_up() {
    mkdir -p "$NATS_DIR/data"
    if nats_running; then
        log "nats already running (pid $(nats_pid))"
    else
        port_open "$NATS_PORT" && die "port $NATS_PORT is taken by another process; set VIGIL_NATS_PORT"
        log "starting nats-server on 127.0.0.1:$NATS_PORT (JetStream, data $NATS_DIR/data)"
        # sync_interval: JetStream fsyncs every 2 minutes by default; 1s bounds what a machine
        # crash can lose (see docs/adr/0004-nats-jetstream.md).
        cat >"$NATS_DIR/nats.conf" <<CONF
listen: 127.0.0.1:$NATS_PORT
http: 127.0.0.1:$NATS_MON
pid_file: "$NATS_DIR/nats.pid"
max_payload: 8MB
jetstream {
    store_dir: "$NATS_DIR/data"
    max_memory_store: 256MB
    max_file_store: 16GB
    sync_interval: 1s
}
CONF
        nohup "$NATS_BIN" -c "$NATS_DIR/nats.conf" >>"$NATS_DIR/nats.log" 2>&1 &
    fi
    wait_for nats 30 nats_healthy || { tail -n 20 "$NATS_DIR/nats.log" >&2; die "nats-server did not become ready (log: $NATS_DIR/nats.log)"; }
    log "nats ready: nats://127.0.0.1:$NATS_PORT"
}

pg_run() { # run a postgres binary as the cluster's owner
    local bin
    bin="$(pg_bin)/$1"
    shift
    if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$bin" "$@"; else "$bin" "$@"; fi
}

pg_ready() { "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; }

pg_up() {
    mkdir -p "$PG_DIR"
    [[ $(id -u) == 0 ]] && chown postgres: "$PG_DIR"
    if [[ ! -f "$PG_DIR/data/PG_VERSION" ]]; then
        log "initializing a private PostgreSQL cluster in $PG_DIR/data"
        pg_run initdb -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1 \
            || { cat "$PG_DIR/initdb.log" >&2; die "initdb failed"; }
    fi
    if pg_ready; then
        log "postgres already running on 127.0.0.1:$PG_PORT"
    else
        port_open "$PG_PORT" && die "port $PG_PORT is taken by another process; set VIGIL_PG_PORT"
        log "starting postgres on 127.0.0.1:$PG_PORT"
        pg_run pg_ctl -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 60 \
            -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$PG_DIR -c fsync=on" start >/dev/null \
            || { tail -n 20 "$PG_DIR/postgres.log" >&2; die "postgres did not start (log: $PG_DIR/postgres.log)"; }
    fi
    wait_for postgres 30 pg_ready || die "postgres did not become ready (log: $PG_DIR/postgres.log)"
    log "postgres ready: postgres://postgres@127.0.0.1:$PG_PORT/postgres"
}

write_env() {
    cat >"$VAR/services.env" <<ENV
VIGIL_NATS_URL=nats://127.0.0.1:$NATS_PORT
VIGIL_PG_URL=postgres://postgres@127.0.0.1:$PG_PORT/postgres
VIGIL_NATS_BIN=$NATS_BIN
ENV
}

down() {
    if nats_running; then
        log "stopping nats (pid $(nats_pid))"
        kill "$(nats_pid)"
        wait_for nats-stop 20 bash -c "! kill -0 $(nats_pid) 2>/dev/null" || kill -9 "$(nats_pid)" 2>/dev/null || true
    fi
    rm -f "$NATS_DIR/nats.pid"
    if [[ -f "$PG_DIR/data/postmaster.pid" ]] && [[ -n "$(pg_bin)" ]]; then
        log "stopping postgres"
        pg_run pg_ctl -D "$PG_DIR/data" -m fast -w stop >/dev/null || true
    fi
}

status() {
    if nats_running && nats_healthy; then echo "nats: running, nats://127.0.0.1:$NATS_PORT"; else echo "nats: stopped"; fi
    if [[ -n "$(pg_bin)" ]] && pg_ready; then echo "postgres: running, 127.0.0.1:$PG_PORT"; else echo "postgres: stopped"; fi
}

case "${1:-up}" in
    up) install; mkdir -p "$VAR"; nats_up; pg_up; write_env ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
