#!/usr/bin/env bash
# Throwaway servers for the storage and limits tests: a PostgreSQL cluster, a MariaDB server and a
# Redis from Debian's packages, each in a data directory under the target directory, on a free loopback port.
#
#   scripts/services.sh          install what is missing, start what is not running, wait until
#                                every server accepts connections, write the env file
#   scripts/services.sh stop     stop the servers this script started
#   scripts/services.sh env      print the env file's path
#
# The env file (`$SERVICES_DIR/env.sh`, by default `target/services/env.sh`) exports:
#   OCTOLLM_TEST_POSTGRES_URL   postgres://postgres@127.0.0.1:<port>/octollm (trust auth)
#   OCTOLLM_TEST_POSTGRES_CTL   a command taking `stop` or `start` (waits until done), used by the
#                               test that takes the database away mid-run
#   OCTOLLM_TEST_MYSQL_URL      mysql://octollm:octollm@127.0.0.1:<port>/octollm (the user may create
#                               databases: tests use one each)
#   OCTOLLM_TEST_REDIS_URL      redis://127.0.0.1:<port>/0 (no persistence)
#   OCTOLLM_TEST_REDIS_CTL      a command taking `stop` or `start` (waits until done), used by the
#                               tests that take Redis away mid-run
#
# Idempotent: a second call reuses running servers and rewrites the env file. Runs as root on a
# fresh Debian machine (installs with apt-get); as another user the packages must be installed.
#
# Adding a service: write `<name>_install`, `<name>_start` (starts it if not running, returns once
# it accepts connections), `<name>_stop` and `<name>_env` (prints export lines), then append the
# name to SERVICES.
#
# Environment:
#   SERVICES_DIR   where data, sockets, logs and the env file live (default: $CARGO_TARGET_DIR or
#                  ./target, then /services)
#   SERVICES       the services to manage (default: "postgres mariadb redis")
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
SERVICES_DIR="${SERVICES_DIR:-$TARGET/services}"
SERVICES="${SERVICES:-postgres mariadb redis}"
ENV_FILE="$SERVICES_DIR/env.sh"
READY_TIMEOUT=60

log() { printf 'services: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# Installs Debian packages that are missing (quietly).
apt_install() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "packages missing (${missing[*]}): install them as root"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Package scripts must not start the distribution's own servers (port clashes, no init here).
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
    fi
    local apt=(apt-get -o DPkg::Lock::Timeout=600 -qq)
    "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null \
        || { "${apt[@]}" update >/dev/null && "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null; }
    [ "$created_policy" -eq 1 ] && rm -f "$policy"
    return 0
}

# A TCP port on 127.0.0.1 nobody listens on.
# Ports are picked below the kernel's ephemeral range (ip_local_port_range, 32768 by default): a
# port inside it can be taken by an outgoing connection's local end while a service is stopped by
# a test, and the service then fails to bind it again ("Address already in use").
free_port() {
    local p low
    low="$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)"
    [ "$low" -gt 12000 ] 2>/dev/null || low=32768
    for _ in $(seq 1 200); do
        p=$((10000 + RANDOM % (low - 10000)))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    die "no free port found"
}

# Retries "$@" until it succeeds or READY_TIMEOUT seconds pass (a readiness check, not a sleep).
wait_until() {
    local what="$1"
    shift
    local deadline=$((SECONDS + READY_TIMEOUT))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || die "$what not ready after ${READY_TIMEOUT}s"
        sleep 0.2
    done
}

# Runs a command as `$1` (root drops to it; anyone else runs it as themselves).
as_user() {
    local user="$1"
    shift
    if [ "$(id -u)" -eq 0 ] && [ "$user" != root ]; then
        runuser -u "$user" -- "$@"
    else
        "$@"
    fi
}

# ------------------------------------------------------------------------------------ PostgreSQL
PG_DIR="$SERVICES_DIR/postgres"
# initdb refuses to run as root: the cluster belongs to the `postgres` user Debian creates.
PG_USER=postgres
# Run as root, the cluster belongs to the postgres user, who must be able to reach its directory;
# the checkout may sit under one only root may enter (a clone in a `mktemp -d`), so the cluster
# lives under /tmp, at a path derived from the checkout so that later calls find it again.
if [ "$(id -u)" -eq 0 ]; then
    PG_DIR="/tmp/octollm-services-$(printf %s "$ROOT" | md5sum | cut -c1-12)/postgres"
fi
[ "$(id -u)" -eq 0 ] || PG_USER="$(id -un)"

pg_bin() {
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    [ -n "$d" ] || d="$(dirname "$(command -v pg_ctl 2>/dev/null || echo /nonexistent/pg_ctl)")"
    echo "$d"
}

postgres_install() {
    apt_install postgresql
}

postgres_ready() {
    "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$(cat "$PG_DIR/port")" -d postgres -U postgres
}

postgres_start() {
    local bin port
    bin="$(pg_bin)"
    [ -x "$bin/pg_ctl" ] || die "pg_ctl not found (is postgresql installed?)"
    mkdir -p "$PG_DIR"
    if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
        rm -rf "$PG_DIR/data"
        mkdir -p "$PG_DIR/data" "$PG_DIR/run"
        [ "$(id -u)" -eq 0 ] && chown -R "$PG_USER" "$PG_DIR/data" "$PG_DIR/run"
        as_user "$PG_USER" "$bin/initdb" -D "$PG_DIR/data" -A trust -U postgres --no-sync -E UTF8 >"$PG_DIR/initdb.log" 2>&1 \
            || { cat "$PG_DIR/initdb.log" >&2; die "initdb failed"; }
    fi
    [ -f "$PG_DIR/port" ] || free_port >"$PG_DIR/port"
    port="$(cat "$PG_DIR/port")"
    # The control command the tests use to take the database away and bring it back.
    cat >"$PG_DIR/ctl" <<EOF
#!/usr/bin/env bash
# Usage: ctl stop|start — stops or starts the throwaway PostgreSQL cluster and waits until done.
set -euo pipefail
run() { if [ "\$(id -u)" -eq 0 ] && [ "$PG_USER" != root ]; then runuser -u "$PG_USER" -- "\$@"; else "\$@"; fi; }
case "\${1:-}" in
  stop) run "$bin/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null ;;
  start) run "$bin/pg_ctl" -D "$PG_DIR/data" -w -t 60 -l "$PG_DIR/run/server.log" \\
           -o "-c listen_addresses=127.0.0.1 -p $port -k $PG_DIR/run -c fsync=off -c synchronous_commit=off -c full_page_writes=off" start >/dev/null ;;
  *) echo "usage: \$0 stop|start" >&2; exit 2 ;;
esac
EOF
    chmod +x "$PG_DIR/ctl"
    if ! as_user "$PG_USER" "$bin/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1; then
        # A port taken since the last run (the server was stopped) gets a new one.
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            free_port >"$PG_DIR/port"
            postgres_start
            return
        fi
        log "starting PostgreSQL on 127.0.0.1:$port"
        "$PG_DIR/ctl" start || { tail -n 20 "$PG_DIR/run/server.log" >&2; die "PostgreSQL did not start"; }
    fi
    wait_until PostgreSQL postgres_ready
    if ! "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'octollm'" | grep -q 1; then
        "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres octollm
    fi
}

postgres_stop() {
    [ -x "$PG_DIR/ctl" ] && [ -f "$PG_DIR/data/postmaster.pid" ] && "$PG_DIR/ctl" stop && log "PostgreSQL stopped"
    return 0
}

postgres_env() {
    echo "export OCTOLLM_TEST_POSTGRES_URL='postgres://postgres@127.0.0.1:$(cat "$PG_DIR/port")/octollm'"
    echo "export OCTOLLM_TEST_POSTGRES_CTL='$PG_DIR/ctl'"
}

# ------------------------------------------------------------------------------------ MariaDB
MY_DIR="$SERVICES_DIR/mariadb"

mariadb_install() {
    apt_install mariadb-server mariadb-client
}

mariadb_client() {
    mariadb --no-defaults --socket="$MY_DIR/run/mysqld.sock" -u root "$@"
}

mariadb_ready() {
    mariadb-admin --no-defaults --socket="$MY_DIR/run/mysqld.sock" -u root ping
}

mariadb_running() {
    [ -f "$MY_DIR/run/mysqld.pid" ] && kill -0 "$(cat "$MY_DIR/run/mysqld.pid")" 2>/dev/null
}

mariadb_start() {
    command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || die "mariadbd not found (is mariadb-server installed?)"
    local mariadbd
    mariadbd="$(command -v mariadbd || echo /usr/sbin/mariadbd)"
    mkdir -p "$MY_DIR/run"
    if [ ! -d "$MY_DIR/data/mysql" ]; then
        rm -rf "$MY_DIR/data"
        mariadb-install-db --no-defaults --datadir="$MY_DIR/data" --user="$(id -un)" \
            --auth-root-authentication-method=socket --skip-test-db >"$MY_DIR/install.log" 2>&1 \
            || { cat "$MY_DIR/install.log" >&2; die "mariadb-install-db failed"; }
    fi
    if ! mariadb_running; then
        [ -f "$MY_DIR/port" ] && ! (exec 3<>"/dev/tcp/127.0.0.1/$(cat "$MY_DIR/port")") 2>/dev/null \
            || free_port >"$MY_DIR/port"
        log "starting MariaDB on 127.0.0.1:$(cat "$MY_DIR/port")"
        setsid "$mariadbd" --no-defaults --datadir="$MY_DIR/data" --user="$(id -un)" \
            --bind-address=127.0.0.1 --port="$(cat "$MY_DIR/port")" \
            --socket="$MY_DIR/run/mysqld.sock" --pid-file="$MY_DIR/run/mysqld.pid" \
            --log-error="$MY_DIR/server.log" --innodb-flush-log-at-trx-commit=0 \
            --innodb-doublewrite=0 --skip-log-bin </dev/null >/dev/null 2>&1 &
    fi
    wait_until MariaDB mariadb_ready || { tail -n 20 "$MY_DIR/server.log" >&2; exit 1; }
    mariadb_client -e "CREATE DATABASE IF NOT EXISTS octollm;
        CREATE USER IF NOT EXISTS 'octollm'@'127.0.0.1' IDENTIFIED BY 'octollm';
        CREATE USER IF NOT EXISTS 'octollm'@'localhost' IDENTIFIED BY 'octollm';
        GRANT ALL ON *.* TO 'octollm'@'127.0.0.1';
        GRANT ALL ON *.* TO 'octollm'@'localhost';"
}

mariadb_stop() {
    if mariadb_running; then
        local pid
        pid="$(cat "$MY_DIR/run/mysqld.pid")"
        kill "$pid"
        while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
        log "MariaDB stopped"
    fi
}

mariadb_env() {
    echo "export OCTOLLM_TEST_MYSQL_URL='mysql://octollm:octollm@127.0.0.1:$(cat "$MY_DIR/port")/octollm'"
}

# ------------------------------------------------------------------------------------ Redis
RD_DIR="$SERVICES_DIR/redis"

redis_install() {
    apt_install redis-server
}

redis_running() {
    [ -f "$RD_DIR/redis.pid" ] && kill -0 "$(cat "$RD_DIR/redis.pid")" 2>/dev/null
}

redis_start() {
    command -v redis-server >/dev/null || die "redis-server not found (is redis-server installed?)"
    mkdir -p "$RD_DIR"
    [ -f "$RD_DIR/port" ] || free_port >"$RD_DIR/port"
    local port
    port="$(cat "$RD_DIR/port")"
    # The control command the tests use to take Redis away and bring it back (same port).
    cat >"$RD_DIR/ctl" <<EOF
#!/usr/bin/env bash
# Usage: ctl stop|start — stops or starts the throwaway Redis and waits until done.
set -euo pipefail
case "\${1:-}" in
  stop)
    if [ -f "$RD_DIR/redis.pid" ] && kill -0 "\$(cat "$RD_DIR/redis.pid")" 2>/dev/null; then
      pid="\$(cat "$RD_DIR/redis.pid")"; kill "\$pid"
      while kill -0 "\$pid" 2>/dev/null; do sleep 0.05; done
    fi ;;
  start)
    redis-server --port $port --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \\
      --dir "$RD_DIR" --pidfile "$RD_DIR/redis.pid" --logfile "$RD_DIR/server.log" >/dev/null
    for _ in \$(seq 1 300); do
      redis-cli -p $port ping 2>/dev/null | grep -q PONG && exit 0; sleep 0.05
    done
    echo "redis did not start" >&2; exit 1 ;;
  *) echo "usage: \$0 stop|start" >&2; exit 2 ;;
esac
EOF
    chmod +x "$RD_DIR/ctl"
    if ! redis_running; then
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            free_port >"$RD_DIR/port"
            redis_start
            return
        fi
        log "starting Redis on 127.0.0.1:$port"
        "$RD_DIR/ctl" start || { tail -n 20 "$RD_DIR/server.log" >&2; die "Redis did not start"; }
    fi
    wait_until Redis redis-cli -p "$port" ping
}

redis_stop() {
    if redis_running; then
        "$RD_DIR/ctl" stop && log "Redis stopped"
    fi
    return 0
}

redis_env() {
    echo "export OCTOLLM_TEST_REDIS_URL='redis://127.0.0.1:$(cat "$RD_DIR/port")/0'"
    echo "export OCTOLLM_TEST_REDIS_CTL='$RD_DIR/ctl'"
}

# ------------------------------------------------------------------------------------ main
case "${1:-start}" in
    start)
        mkdir -p "$SERVICES_DIR"
        for s in $SERVICES; do "${s}_install"; done
        for s in $SERVICES; do "${s}_start"; done
        {
            echo "# Written by scripts/services.sh; source it before cargo test."
            for s in $SERVICES; do "${s}_env"; done
        } >"$ENV_FILE.tmp"
        mv "$ENV_FILE.tmp" "$ENV_FILE"
        log "ready; env in $ENV_FILE"
        ;;
    stop)
        for s in $SERVICES; do "${s}_stop"; done
        ;;
    env)
        echo "$ENV_FILE"
        ;;
    *)
        die "usage: $0 [start|stop|env]"
        ;;
esac
