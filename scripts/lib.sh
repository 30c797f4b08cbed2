# shellcheck shell=bash
# Shared set-up for scripts/test, scripts/demo and .ci/run. Source it; it defines functions only
# (plus TM_ROOT). Every function that cannot do its job says why on stderr and exits non-zero:
# a set-up step that fails quietly costs more time than one that stops the run.

TM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Bump when the way venvs are built changes, so that every existing venv is rebuilt once.
TM_RECIPE=3

if [[ -t 2 && -z "${NO_COLOR:-}" ]]; then
    TM_BOLD=$'\e[1m' TM_RED=$'\e[31m' TM_YELLOW=$'\e[33m' TM_RESET=$'\e[0m'
else
    TM_BOLD='' TM_RED='' TM_YELLOW='' TM_RESET=''
fi

tm_log() { printf '%s==>%s %s\n' "$TM_BOLD" "$TM_RESET" "$*" >&2; }
tm_warn() { printf '%sWARNING:%s %s\n' "$TM_YELLOW$TM_BOLD" "$TM_RESET" "$*" >&2; }
tm_error() { printf '%sERROR:%s %s\n' "$TM_RED$TM_BOLD" "$TM_RESET" "$*" >&2; }
tm_die() {
    tm_error "$*"
    exit 1
}

# Run a command as root: directly when we are root, else through sudo when there is one.
tm_as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo -n "$@"
    else
        tm_error "need root for: $* (not root and no sudo)"
        return 1
    fi
}

# ---------------------------------------------------------------------------------------------
# Python

# Print the real path of a Python interpreter of version $1 (e.g. 3.13), or fail. Looks on PATH
# (python3.13), then in pyenv's versions, then in ~/.pyenv/versions, then python3 itself. Each
# candidate must actually be that version and have venv + ensurepip (pyenv shims and Debian's
# python without python3-venv fail that test and are passed over).
tm_find_python() {
    local minor=$1 candidate real
    local -a candidates=()
    command -v "python$minor" >/dev/null && candidates+=("$(command -v "python$minor")")
    local roots=()
    [[ -n ${PYENV_ROOT:-} ]] && roots+=("$PYENV_ROOT/versions")
    if command -v pyenv >/dev/null; then
        roots+=("$(pyenv root 2>/dev/null)/versions")
    fi
    roots+=("$HOME/.pyenv/versions")
    local root dir
    for root in "${roots[@]}"; do
        [[ -d $root ]] || continue
        # Newest patch release first: 3.13.10 before 3.13.9.
        while IFS= read -r dir; do
            [[ -n $dir ]] && candidates+=("$dir/bin/python")
        done < <(find "$root" -mindepth 1 -maxdepth 1 -name "$minor.[0-9]*" 2>/dev/null | sort -rV)
    done
    for candidate in "/usr/local/bin/python$minor" "/usr/bin/python$minor" python3; do
        command -v "$candidate" >/dev/null && candidates+=("$(command -v "$candidate")")
    done
    for candidate in "${candidates[@]}"; do
        [[ -x $candidate ]] || continue
        real=$("$candidate" -c "
import sys, venv, ensurepip
assert '%d.%d' % sys.version_info[:2] == '$minor'
print(sys.executable)" 2>/dev/null) || continue
        [[ -n $real ]] && { echo "$real"; return 0; }
    done
    tm_error "no Python $minor found (looked for python$minor on PATH, in \$(pyenv root)/versions" \
        "and ~/.pyenv/versions). Install one, e.g. 'pyenv install $minor', and run again."
    return 1
}

# ---------------------------------------------------------------------------------------------
# Debian build dependencies

# mysqlclient has no Linux wheels: pip builds it against libmariadb (found through pkg-config)
# with a C compiler. Install what is missing; `apt-get update` only when an install fails.
tm_ensure_mysql_build_deps() {
    local -a missing=()
    command -v pkg-config >/dev/null || missing+=(pkg-config)
    if ! dpkg -s libmariadb-dev >/dev/null 2>&1 &&
        ! { command -v pkg-config >/dev/null &&
            { pkg-config --exists libmariadb || pkg-config --exists mysqlclient; }; }; then
        missing+=(libmariadb-dev)
    fi
    command -v cc >/dev/null || command -v gcc >/dev/null || missing+=(gcc libc6-dev)
    ((${#missing[@]})) || return 0
    command -v apt-get >/dev/null ||
        tm_die "mysqlclient needs ${missing[*]}, and this machine has no apt-get: install them by hand."
    tm_log "installing Debian packages for mysqlclient: ${missing[*]}"
    local log="$TM_ROOT/.venv/apt.log"
    mkdir -p "$TM_ROOT/.venv"
    local -a install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=300 --no-install-recommends "${missing[@]}")
    if tm_as_root "${install[@]}" >"$log" 2>&1; then
        return 0
    fi
    tm_log "apt-get install failed; running apt-get update and trying again"
    if tm_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q -o DPkg::Lock::Timeout=300 >>"$log" 2>&1 &&
        tm_as_root "${install[@]}" >>"$log" 2>&1; then
        return 0
    fi
    tail -n 20 "$log" >&2
    tm_die "apt-get could not install ${missing[*]} (full log: $log). mysqlclient cannot be built without them."
}

# ---------------------------------------------------------------------------------------------
# The browser for the browser tests (tests/browser)

# Where Debian's chromium and chromium-driver put their programs. tests/browser/conftest.py
# looks in the same places (TASKMILL_CHROMIUM / TASKMILL_CHROMEDRIVER override both).
tm_chromium() { echo "${TASKMILL_CHROMIUM:-/usr/bin/chromium}"; }
tm_chromedriver() { echo "${TASKMILL_CHROMEDRIVER:-/usr/bin/chromedriver}"; }

# Install Debian's chromium and chromium-driver when either program is missing. Selenium is
# pointed at these two, so nothing is downloaded at test time. Chromium's version moves with
# every security release and an old package index names .debs the mirror no longer has, so
# `apt-get update` runs once first. Prints nothing and succeeds when both are there; prints
# the reason on stdout and fails otherwise (the caller decides: skip locally, fail under CI).
tm_ensure_chromium() {
    local -a missing=()
    [[ -x $(tm_chromium) ]] || missing+=(chromium)
    [[ -x $(tm_chromedriver) ]] || missing+=(chromium-driver)
    ((${#missing[@]})) || return 0
    if ! command -v apt-get >/dev/null; then
        echo "$(tm_chromium) or $(tm_chromedriver) is missing and this machine has no apt-get: install chromium and its driver by hand"
        return 1
    fi
    local log="$TM_ROOT/.venv/apt.log"
    mkdir -p "$TM_ROOT/.venv"
    tm_log "installing Debian packages for the browser tests: ${missing[*]} (log: .venv/apt.log)" >&2
    if ! tm_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q -o DPkg::Lock::Timeout=300 >>"$log" 2>&1 ||
        ! tm_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=300 \
            --no-install-recommends "${missing[@]}" >>"$log" 2>&1; then
        tail -n 20 "$log" >&2
        echo "apt-get could not install ${missing[*]} (full log: $log)"
        return 1
    fi
    if [[ ! -x $(tm_chromium) || ! -x $(tm_chromedriver) ]]; then
        echo "installed ${missing[*]}, yet $(tm_chromium) or $(tm_chromedriver) is still missing"
        return 1
    fi
}

# ---------------------------------------------------------------------------------------------
# Virtual environments

# tm_venv NAME PYTHON_MINOR REQUIREMENTS EXTRAS
#   Make .venv/NAME with Python PYTHON_MINOR and `pip install -e .[EXTRAS] -r REQUIREMENTS`, and
#   print its path. Installs only when the stamp (a hash of pyproject.toml, the requirements
#   file, the extras and the interpreter) changed, so a second run costs a second. A lock keeps
#   two scripts from building the same venv at once.
tm_venv() {
    local name=$1 minor=$2 requirements=$3 extras=$4
    local venv="$TM_ROOT/.venv/$name"
    mkdir -p "$TM_ROOT/.venv"
    [[ -f $requirements ]] || tm_die "requirements file $requirements is missing"
    (
        flock -w 900 9 || tm_die "timed out waiting for another script to finish building $venv"
        local python stamp current=""
        python=$(tm_find_python "$minor") || exit 1
        stamp=$(
            {
                echo "recipe=$TM_RECIPE extras=$extras"
                "$python" -c 'import sys; print(sys.version)'
                cat "$TM_ROOT/pyproject.toml" "$requirements"
            } | sha256sum | cut -d' ' -f1
        )
        if [[ -x $venv/bin/python ]] && "$venv/bin/python" -c 'import sys' 2>/dev/null; then
            current=$(cat "$venv/.taskmill-stamp" 2>/dev/null || true)
        else
            rm -rf "$venv"
        fi
        [[ $current == "$stamp" ]] && exit 0
        if [[ ! -x $venv/bin/python ]]; then
            tm_log "creating $venv with $python"
            "$python" -m venv "$venv" || tm_die "could not create a venv at $venv with $python"
        fi
        [[ $extras == *mysql* ]] && tm_ensure_mysql_build_deps
        tm_log "installing taskmill[$extras] and $(basename "$requirements") into .venv/$name"
        local log="$venv/pip.log" attempt
        rm -f "$venv/.taskmill-stamp"
        for attempt in 1 2; do
            if (cd "$TM_ROOT" && "$venv/bin/python" -m pip install --disable-pip-version-check \
                --progress-bar off -e ".[$extras]" -r "$requirements") >"$log" 2>&1; then
                echo "$stamp" >"$venv/.taskmill-stamp"
                exit 0
            fi
            ((attempt == 1)) && tm_log "pip install failed; trying once more"
        done
        tail -n 30 "$log" >&2
        tm_die "pip could not install taskmill[$extras] into $venv (full log: $log)"
    ) 9>"$TM_ROOT/.venv/.$name.lock" || exit 1
    echo "$venv"
}

# ---------------------------------------------------------------------------------------------
# Database services

tm_pg_host() { echo "${TASKMILL_PG_HOST:-127.0.0.1}"; }
tm_pg_port() { echo "${TASKMILL_PG_PORT:-5432}"; }
tm_mysql_host() { echo "${TASKMILL_MYSQL_HOST:-127.0.0.1}"; }
tm_mysql_port() { echo "${TASKMILL_MYSQL_PORT:-3306}"; }

tm_port_open() { timeout 3 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

# Ready means it answers its own protocol, not just that the port is open (a server still in
# crash recovery accepts connections and refuses queries).
tm_postgresql_ready() {
    local host port
    host=$(tm_pg_host) port=$(tm_pg_port)
    if command -v pg_isready >/dev/null; then
        pg_isready -q -h "$host" -p "$port" -t 3
    else
        tm_port_open "$host" "$port"
    fi
}

tm_mysql_ready() {
    local host port admin
    host=$(tm_mysql_host) port=$(tm_mysql_port)
    admin=$(command -v mariadb-admin || command -v mysqladmin || true)
    if [[ -n $admin ]]; then
        # ping answers 0 for a live server even when the credentials are wrong: it is a
        # liveness test, the test run itself will say if the login fails.
        "$admin" --no-defaults --connect-timeout=3 --protocol=tcp -h "$host" -P "$port" \
            -u "${TASKMILL_MYSQL_USER:-root}" ping >/dev/null 2>&1
    else
        tm_port_open "$host" "$port"
    fi
}

# tm_wait_until SECONDS COMMAND...: poll COMMAND until it succeeds or the deadline passes.
tm_wait_until() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

tm_is_local() { [[ $1 == 127.0.0.1 || $1 == localhost || $1 == ::1 ]]; }

tm_start_postgresql() {
    command -v pg_ctlcluster >/dev/null || {
        echo "pg_ctlcluster not found (is the postgresql Debian package installed?)"
        return 1
    }
    local conf version started=0
    for conf in /etc/postgresql/*/main; do
        [[ -d $conf ]] || continue
        version=$(basename "$(dirname "$conf")")
        tm_log "starting PostgreSQL $version/main"
        tm_as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 || true
        started=1
    done
    ((started)) || { echo "no PostgreSQL cluster under /etc/postgresql/*/main"; return 1; }
}

tm_start_mysql() {
    [[ -x /usr/sbin/mariadbd ]] || { echo "/usr/sbin/mariadbd not found (is mariadb-server installed?)"; return 1; }
    # /run is a tmpfs: after a reboot the socket directory is gone and mariadbd will not start.
    tm_as_root install -d -o mysql -g mysql -m 755 /run/mysqld || true
    tm_log "starting MariaDB (/usr/sbin/mariadbd; its output goes to /run/mysqld/taskmill-start.log)"
    tm_as_root start-stop-daemon --start --oknodo --background \
        --output /run/mysqld/taskmill-start.log --exec /usr/sbin/mariadbd -- --user=mysql >&2 || true
}

# tm_ensure_service postgresql|mysql: reach the server, starting a local one if it is down.
# Prints nothing and succeeds when it is up; prints the reason on stdout and fails otherwise.
tm_ensure_service() {
    local service=$1 host port label deadline=${TASKMILL_SERVICE_DEADLINE:-60}
    case $service in
        postgresql) host=$(tm_pg_host) port=$(tm_pg_port) label=PostgreSQL ;;
        mysql) host=$(tm_mysql_host) port=$(tm_mysql_port) label=MariaDB ;;
        *) tm_die "unknown service $service" ;;
    esac
    "tm_${service}_ready" && return 0
    if ! tm_is_local "$host"; then
        echo "$label at $host:$port does not answer (not local, so not started here)"
        return 1
    fi
    tm_warn "$label at $host:$port does not answer; trying to start it"
    local why
    if ! why=$("tm_start_$service"); then
        echo "$label at $host:$port is down and could not be started: $why"
        return 1
    fi
    if tm_wait_until "$deadline" "tm_${service}_ready"; then
        tm_log "$label is up"
        return 0
    fi
    why="$label at $host:$port is down and did not answer within ${deadline}s of starting it"
    if [[ $service == mysql && -s /run/mysqld/taskmill-start.log ]]; then
        why+=" (last line of /run/mysqld/taskmill-start.log: $(tail -n 1 /run/mysqld/taskmill-start.log))"
    elif [[ $service == postgresql ]]; then
        why+=" (see /var/log/postgresql/)"
    fi
    echo "$why"
    return 1
}

# ---------------------------------------------------------------------------------------------
# PgBouncer, for the suite that runs through a pooler in transaction mode

# Install Debian's pgbouncer when it is missing. Prints nothing and succeeds when it is there;
# prints the reason on stdout and fails otherwise.
tm_ensure_pgbouncer() {
    [[ -x /usr/sbin/pgbouncer ]] && return 0
    command -v apt-get >/dev/null || { echo "pgbouncer is missing and this machine has no apt-get"; return 1; }
    local log="$TM_ROOT/.venv/apt.log"
    mkdir -p "$TM_ROOT/.venv"
    tm_log "installing Debian's pgbouncer for the pooled suite (log: .venv/apt.log)" >&2
    local -a install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q
        -o DPkg::Lock::Timeout=300 --no-install-recommends pgbouncer)
    # An old package index may name a .deb the mirror no longer has: update once and retry.
    if ! tm_as_root "${install[@]}" >>"$log" 2>&1; then
        tm_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q -o DPkg::Lock::Timeout=300 >>"$log" 2>&1 || true
        tm_as_root "${install[@]}" >>"$log" 2>&1 || {
            tail -n 20 "$log" >&2
            echo "apt-get could not install pgbouncer (full log: $log)"
            return 1
        }
    fi
    [[ -x /usr/sbin/pgbouncer ]] || { echo "installed pgbouncer, yet /usr/sbin/pgbouncer is missing"; return 1; }
}

tm_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# tm_start_pgbouncer DIR: a private PgBouncer in transaction mode on a free port, every
# database forwarded to the PostgreSQL the suites use; its files (config, log, pid) in DIR.
# Prints the port. PgBouncer refuses to run as root: as root, it runs as postgres.
tm_start_pgbouncer() {
    local dir=$1 port user=${TASKMILL_PG_USER:-postgres}
    port=$(tm_free_port)
    mkdir -p "$dir"
    chmod 755 "$dir"
    printf '"%s" ""\n' "$user" >"$dir/users.txt"
    cat >"$dir/pgbouncer.ini" <<INI
[databases]
* = host=$(tm_pg_host) port=$(tm_pg_port)
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/users.txt
pool_mode = transaction
max_client_conn = 500
default_pool_size = 40
ignore_startup_parameters = extra_float_digits,options
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
    local -a command=(/usr/sbin/pgbouncer -d "$dir/pgbouncer.ini")
    if [[ $EUID -eq 0 ]]; then
        chown -R postgres "$dir"
        command=(runuser -u postgres -- "${command[@]}")
    fi
    "${command[@]}" >&2 || { echo "pgbouncer did not start (see $dir/pgbouncer.log)"; return 1; }
    tm_wait_until 20 tm_port_open 127.0.0.1 "$port" ||
        { echo "pgbouncer did not open port $port (see $dir/pgbouncer.log)"; return 1; }
    echo "$port"
}

# tm_stop_pgbouncer DIR: stop the PgBouncer tm_start_pgbouncer started there.
tm_stop_pgbouncer() {
    [[ -s $1/pgbouncer.pid ]] && kill "$(cat "$1/pgbouncer.pid")" 2>/dev/null || true
}
