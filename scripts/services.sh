#!/usr/bin/env bash
# Dev services for Vigil: NATS with JetStream, PostgreSQL and OpenSearch, installed and started
# on loopback with their data under var/, idempotently, on a fresh machine.
#
# NATS: nats-server v2.15.2 built from the Go module proxy into a cache outside the clone
# (~/.cache/vigil, kept across runs); Debian's 2.9 lacks JetStream's sync_interval and the
# consumer API that async-nats 0.51 speaks. PostgreSQL: Debian's package, run as a private
# cluster under var/pg. OpenSearch: the minimal distribution 2.19.6 from Maven Central
# (org.opensearch.distribution.integ-test-zip:opensearch:2.19.6:zip, checked against Maven's
# SHA-1), unpacked into a world-readable cache (/var/cache/vigil as root), run on Java 17 by an
# unprivileged user (it refuses root) with a 512 MB heap, single node, data under
# var/opensearch (docs/adr/0007-opensearch-dev-node-and-alert-sink.md).
#
#   scripts/services.sh up       install if missing, start, wait until ready (default)
#   scripts/services.sh down     stop all three
#   scripts/services.sh status   say what runs
#
# Settings (environment): VIGIL_VAR (default <repo>/var), VIGIL_NATS_PORT (4222),
# VIGIL_NATS_MONITOR_PORT (8222), VIGIL_PG_PORT (5433), VIGIL_OS_PORT (9200),
# VIGIL_OS_TRANSPORT_PORT (9300). `up` writes var/services.env with the URLs the tests read
# (VIGIL_NATS_URL, VIGIL_PG_URL, VIGIL_OPENSEARCH_URL).
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
OS_PORT="${VIGIL_OS_PORT:-9200}"
OS_TRANSPORT_PORT="${VIGIL_OS_TRANSPORT_PORT:-9300}"
OS_VERSION=2.19.6
OS_SHA1=8e071b0fee7911b226f68bdead8946002e6b6e36
OS_URL="https://repo1.maven.org/maven2/org/opensearch/distribution/integ-test-zip/opensearch/$OS_VERSION/opensearch-$OS_VERSION.zip"
# The OpenSearch user must read the installation: not under root's private home.
if [[ $(id -u) == 0 ]]; then OS_CACHE="${VIGIL_OS_CACHE:-/var/cache/vigil}"; else OS_CACHE="${VIGIL_OS_CACHE:-$CACHE}"; fi
OS_HOME="$OS_CACHE/opensearch-$OS_VERSION"
OS_DIR="$VAR/opensearch"
OS_USER=vigil-opensearch

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
    os_install
}

java_home() {
    local java
    java="$(command -v java)" || return 1
    dirname "$(dirname "$(readlink -f "$java")")"
}

os_install() {
    command -v java >/dev/null || apt_install openjdk-17-jre-headless
    command -v unzip >/dev/null || apt_install unzip
    if [[ ! -x "$OS_HOME/bin/opensearch" ]]; then
        local zip="$OS_CACHE/opensearch-$OS_VERSION.zip"
        mkdir -p "$OS_CACHE"
        if [[ ! -f "$zip" ]] || [[ "$(sha1sum "$zip" | cut -d' ' -f1)" != "$OS_SHA1" ]]; then
            log "downloading OpenSearch $OS_VERSION from Maven Central"
            curl -fsSL --retry 3 -o "$zip.part" "$OS_URL" || die "download of $OS_URL failed"
            [[ "$(sha1sum "$zip.part" | cut -d' ' -f1)" == "$OS_SHA1" ]] || die "OpenSearch $OS_VERSION: checksum mismatch"
            mv "$zip.part" "$zip"
        fi
        log "unpacking OpenSearch $OS_VERSION into $OS_HOME"
        rm -rf "$OS_HOME.part" && mkdir -p "$OS_HOME.part"
        unzip -q "$zip" -d "$OS_HOME.part" || die "unzip $zip failed"
        rm -rf "$OS_HOME" && mv "$OS_HOME.part/opensearch-$OS_VERSION" "$OS_HOME" && rm -rf "$OS_HOME.part"
        chmod -R a+rX "$OS_HOME"
    fi
    if [[ $(id -u) == 0 ]] && ! id "$OS_USER" >/dev/null 2>&1; then
        log "creating the system user $OS_USER (OpenSearch does not run as root)"
        useradd --system --no-create-home --shell /usr/sbin/nologin "$OS_USER" || die "useradd $OS_USER failed"
    fi
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

nats_gone_or_healthy() { ! nats_running || nats_healthy; }

nats_up() {
    mkdir -p "$NATS_DIR/data"
    # A server stopped moments ago may still be exiting (it flushes JetStream first): wait for
    # it to go rather than take it for a running one that never becomes ready.
    if nats_running && ! nats_healthy; then
        wait_for "nats-server to exit or answer" 30 nats_gone_or_healthy \
            || die "nats-server (pid $(nats_pid)) neither answers nor exits (log: $NATS_DIR/nats.log)"
    fi
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
        # After a crash (kill -9) the old backends may still hold shared memory for a moment:
        # a refused start is tried again.
        local try
        for try in 1 2 3 4 5; do
            pg_run pg_ctl -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 60 \
                -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$PG_DIR -c fsync=on" start >/dev/null \
                && break
            [[ $try == 5 ]] && { tail -n 20 "$PG_DIR/postgres.log" >&2; die "postgres did not start (log: $PG_DIR/postgres.log)"; }
            log "postgres did not start (attempt $try); retrying in 2 s"
            sleep 2
        done
    fi
    wait_for postgres 30 pg_ready || die "postgres did not become ready (log: $PG_DIR/postgres.log)"
    log "postgres ready: postgres://postgres@127.0.0.1:$PG_PORT/postgres"
}

os_pid() { [[ -f "$OS_DIR/opensearch.pid" ]] && cat "$OS_DIR/opensearch.pid"; }
os_running() { local p; p=$(os_pid) && kill -0 "$p" 2>/dev/null; }
os_healthy() {
    curl -fsS "http://127.0.0.1:$OS_PORT/_cluster/health?wait_for_status=yellow&timeout=1s" 2>/dev/null | grep -q '"status":"\(green\|yellow\)"'
}

os_up() {
    mkdir -p "$OS_DIR/config" "$OS_DIR/data" "$OS_DIR/logs"
    if os_running; then
        log "opensearch already running (pid $(os_pid))"
    else
        port_open "$OS_PORT" && die "port $OS_PORT is taken by another process; set VIGIL_OS_PORT"
        cp "$OS_HOME/config/log4j2.properties" "$OS_DIR/config/"
        # The stock options name logs/ and data/ relative to the working directory.
        sed -e "s|logs/|$OS_DIR/logs/|g" -e "s|=data\$|=$OS_DIR/data|" "$OS_HOME/config/jvm.options" >"$OS_DIR/config/jvm.options"
        mkdir -p "$OS_DIR/config/jvm.options.d"
        # A small heap: the dev node shares 2 cores and the tests' memory with NATS, Postgres
        # and the engine. Disk-based shard allocation is off: a nearly full dev disk must not
        # turn indexes read-only under the tests.
        printf -- '-Xms512m\n-Xmx512m\n' >"$OS_DIR/config/jvm.options.d/heap.options"
        cat >"$OS_DIR/config/opensearch.yml" <<CONF
cluster.name: vigil-dev
node.name: vigil-dev-1
path.data: $OS_DIR/data
path.logs: $OS_DIR/logs
network.host: 127.0.0.1
http.port: $OS_PORT
transport.port: $OS_TRANSPORT_PORT
discovery.type: single-node
cluster.routing.allocation.disk.threshold_enabled: false
action.auto_create_index: false
CONF
        local run=()
        if [[ $(id -u) == 0 ]]; then
            chown -R "$OS_USER:" "$OS_DIR"
            run=(runuser -u "$OS_USER" --)
        fi
        log "starting opensearch $OS_VERSION on 127.0.0.1:$OS_PORT (data $OS_DIR/data)"
        (cd "$OS_DIR" && "${run[@]}" env OPENSEARCH_PATH_CONF="$OS_DIR/config" OPENSEARCH_JAVA_HOME="$(java_home)" \
            "$OS_HOME/bin/opensearch" -d -p "$OS_DIR/opensearch.pid" >>"$OS_DIR/start.log" 2>&1) \
            || { grep -v '^\s*at ' "$OS_DIR/start.log" | tail -n 20 >&2; die "opensearch did not start (log: $OS_DIR/start.log, $OS_DIR/logs)"; }
    fi
    wait_for opensearch 120 os_healthy || { tail -n 30 "$OS_DIR/logs/vigil-dev.log" >&2 || true; die "opensearch did not become ready (logs: $OS_DIR/logs)"; }
    log "opensearch ready: http://127.0.0.1:$OS_PORT"
}

write_env() {
    cat >"$VAR/services.env" <<ENV
VIGIL_NATS_URL=nats://127.0.0.1:$NATS_PORT
VIGIL_PG_URL=postgres://postgres@127.0.0.1:$PG_PORT/postgres
VIGIL_NATS_BIN=$NATS_BIN
VIGIL_OPENSEARCH_URL=http://127.0.0.1:$OS_PORT
VIGIL_OPENSEARCH_PIDFILE=$OS_DIR/opensearch.pid
VIGIL_PG_PIDFILE=$PG_DIR/data/postmaster.pid
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
    if os_running; then
        log "stopping opensearch (pid $(os_pid))"
        local p
        p=$(os_pid)
        kill "$p"
        wait_for opensearch-stop 60 bash -c "! kill -0 $p 2>/dev/null" || kill -9 "$p" 2>/dev/null || true
    fi
    rm -f "$OS_DIR/opensearch.pid"
}

status() {
    if nats_running && nats_healthy; then echo "nats: running, nats://127.0.0.1:$NATS_PORT"; else echo "nats: stopped"; fi
    if [[ -n "$(pg_bin)" ]] && pg_ready; then echo "postgres: running, 127.0.0.1:$PG_PORT"; else echo "postgres: stopped"; fi
    if os_running && os_healthy; then echo "opensearch: running, http://127.0.0.1:$OS_PORT"; else echo "opensearch: stopped"; fi
}

case "${1:-up}" in
    up) install; mkdir -p "$VAR"; nats_up; pg_up; os_up; write_env ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
