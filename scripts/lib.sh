# Shared set-up for scripts/test and scripts/demo: a virtualenv with the project, and a Redis that answers.
# Sourced, not run. Works on a fresh Debian machine with Python 3.11 (installs what is missing with apt-get).

PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "need root to run: $*" >&2; return 1; fi
}

apt_install() {
    echo "installing $* with apt-get" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 || {
        as_root apt-get update -q >/dev/null && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
    }
}

# Create the virtualenv and install the locked dependencies (requirements/dev.txt, every package pinned with
# its hashes: see scripts/lock), then the project itself without dependencies; again only when the lock or
# pyproject.toml changes.
LOCK=${LOCK:-requirements/dev.txt}
ensure_venv() {
    command -v "$PYTHON" >/dev/null || PYTHON=python3
    if [ ! -x "$VENV/bin/python" ]; then
        "$PYTHON" -m venv "$VENV" 2>/dev/null || { rm -rf "$VENV"; apt_install python3-venv; "$PYTHON" -m venv "$VENV"; }
    fi
    local stamp="$VENV/.installed-$(cat "$LOCK" pyproject.toml | sha256sum | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
        "$VENV/bin/python" -m pip install -q --require-hashes -r "$LOCK"
        "$VENV/bin/python" -m pip install -q --no-deps -e .
        # A dependency added to pyproject.toml but not to the lock shows here, not as an ImportError later.
        if ! "$VENV/bin/python" -m pip check >/dev/null; then
            "$VENV/bin/python" -m pip check >&2 || true
            echo "$LOCK does not satisfy pyproject.toml: run ./scripts/lock" >&2
            return 1
        fi
        rm -f "$VENV"/.installed-*
        touch "$stamp"
    fi
}

redis_answers() { # host port
    local reply
    reply=$(timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2 && printf 'PING\r\n' >&3 && head -c 7 <&3" 2>/dev/null) || return 1
    [[ "$reply" == +PONG* ]]
}

free_port() { # after ensure_venv: testsupport's, the one free_port of tests, bench and scripts
    "$VENV/bin/python" -c 'from testsupport import free_port; print(free_port())'
}

# Sets REDIS_HOST / REDIS_PORT to a Redis that answers: the local default when it does, else our own.
ensure_redis() {
    REDIS_HOST=127.0.0.1
    REDIS_PORT=${REDIS_PORT:-6379}
    if redis_answers "$REDIS_HOST" "$REDIS_PORT"; then return 0; fi
    command -v redis-server >/dev/null || apt_install redis-server
    local asked=$REDIS_PORT
    REDIS_PORT=$(free_port)
    local dir; dir=$(mktemp -d)
    echo "no Redis answered on port $asked: starting redis-server on port $REDIS_PORT (data in $dir, not persisted)" >&2
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
        --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
    for _ in $(seq 50); do redis_answers "$REDIS_HOST" "$REDIS_PORT" && return 0; sleep 0.1; done
    echo "redis-server did not answer on port $REDIS_PORT; see $dir/redis.log" >&2
    return 1
}

# promtool (Prometheus's rule checker), for tests/deploy's checks of deploy/monitoring: taken out of Debian's
# prometheus package with dpkg -x into .tools/, nothing installed system-wide (the server is not needed).
ensure_promtool() {
    if [ -n "${PROMTOOL:-}" ] || command -v promtool >/dev/null; then return 0; fi
    local dir=.tools/prometheus
    if [ ! -x "$dir/usr/bin/promtool" ]; then
        local tmp; tmp=$(mktemp -d)
        echo "fetching promtool: Debian's prometheus package, unpacked into $dir" >&2
        (cd "$tmp" && apt-get download -q prometheus >/dev/null 2>&1) || {
            as_root apt-get update -q >/dev/null && (cd "$tmp" && apt-get download -q prometheus >/dev/null)
        }
        mkdir -p "$dir" && dpkg -x "$tmp"/prometheus_*.deb "$dir"
        rm -rf "$tmp"
    fi
    export PROMTOOL="$PWD/$dir/usr/bin/promtool"
}
