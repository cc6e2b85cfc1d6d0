#!/usr/bin/env sh
# Make sure redis-server and mosquitto are installed (the engine's tests and demo start their own
# throwaway instances of both; they never use a running system service), and, for the browser
# test of the live board, chromium with its chromedriver (optional: without them that one test
# is skipped, saying why).
# Installs from the system package manager when possible; otherwise says exactly what to install.
set -eu

have() {
    command -v "$1" >/dev/null 2>&1 && return 0
    for dir in /usr/sbin /usr/local/sbin /usr/bin /usr/local/bin /opt/homebrew/sbin /opt/homebrew/bin; do
        [ -x "$dir/$1" ] && return 0
    done
    return 1
}

# The headless browser for tests/integration/test_board_browser.py: Debian's chromium and
# chromium-driver (a matching chromedriver). Best effort: a failure here is reported, not fatal.
browser() {
    have chromium && have chromedriver && return 0
    command -v apt-get >/dev/null 2>&1 || { echo "install-servers: no chromium/chromedriver: the board's browser test will be skipped" >&2; return 0; }
    if [ "$(id -u)" = 0 ]; then s=""; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then s="sudo"; else
        echo "install-servers: no chromium/chromedriver (run: sudo apt-get install -y chromium chromium-driver); the browser test will be skipped" >&2
        return 0
    fi
    echo "install-servers: installing chromium chromium-driver (for the board's browser test)"
    { $s apt-get update -q && DEBIAN_FRONTEND=noninteractive $s apt-get install -y -q --no-install-recommends chromium chromium-driver; } \
        || echo "install-servers: chromium could not be installed; the browser test will be skipped" >&2
}

missing=""
have redis-server || missing="$missing redis-server"
have mosquitto || missing="$missing mosquitto"
# redis-cli creates the local Redis Cluster (tests, make cluster-demo): Debian's redis-tools.
have redis-cli || missing="$missing redis-tools"
if [ -z "$missing" ]; then browser; exit 0; fi

echo "install-servers: missing:$missing"
if command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        sudo=""
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo="sudo"
    else
        echo "install-servers: cannot install as $(id -un); run: sudo apt-get install -y$missing" >&2
        exit 1
    fi
    # Debian's packages may try to start system services; the engine does not need them.
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends $missing
elif command -v brew >/dev/null 2>&1; then
    packages=$(echo "$missing" | sed 's/redis-server/redis/; s/redis-tools/redis/')
    brew install $packages
else
    echo "install-servers: no apt-get or brew here; install Redis (redis-server) and Mosquitto yourself:$missing" >&2
    exit 1
fi
have redis-server && have mosquitto && have redis-cli || { echo "install-servers: install did not provide:$missing" >&2; exit 1; }
browser
