#!/usr/bin/env bash
# The step-by-step guide of docs/OPERATIONS.md ("From kernelci-api to
# kernelci-server, step by step"), run as an operator would, under a throwaway
# root instead of /: install, configure, import a mongodump of a kernelci-api
# instance (the committed fixture written by pymongo), check the configuration,
# serve, check health, readiness, logins with the old passwords and metrics, back
# up online, upgrade (stop, replace the binary, check the store, start), restore
# into a new data directory and serve it. Run by .ci/run; fails on the first step
# that does not do what the guide says.
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir=${CARGO_TARGET_DIR:-target}
cargo build --quiet -p kernelci-server
built="$target_dir/debug/kernelci-server"

root=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        echo "server log:" >&2
        cat "$root/server.log" >&2 || true
    fi
    rm -rf "$root"
}
trap cleanup EXIT

bin="$root/usr/local/bin/kernelci-server"
etc="$root/etc/kernelci"
data="$root/var/lib/kernelci"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
step() { echo "== walkthrough: $*"; }
fail() { echo "walkthrough FAILED: $*" >&2; exit 1; }
# GET/POST with curl-like behaviour in Python (curl may be missing): prints the body,
# fails on a status other than the expected one.
http() {
    python3 - "$@" <<'EOF'
import sys, urllib.request, urllib.error
method, url, expect = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = sys.argv[4].encode() if len(sys.argv) > 4 else None
req = urllib.request.Request(url, data=data, method=method)
if data is not None:
    req.add_header("Content-Type", "application/x-www-form-urlencoded")
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        status, body = r.status, r.read().decode()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read().decode()
except OSError as e:
    status, body = 0, str(e)
print(body)
sys.exit(0 if status == expect else 1)
EOF
}
wait_ready() {
    for _ in $(seq 1 100); do
        if http GET "$url/ready" 200 >/dev/null 2>&1; then return 0; fi
        kill -0 "$server_pid" 2>/dev/null || fail "the server exited"
        sleep 0.2
    done
    fail "the server is not ready after 20 s"
}
# As the systemd unit's ExecStart: the configuration file and the data directory.
start() {
    SECRET_KEY_FILE="$etc/secret_key" "$bin" serve --config "$etc/kernelci.toml" --data-dir "$1" \
        >>"$root/server.log" 2>&1 &
    server_pid=$!
    wait_ready
}
stop() {
    kill -TERM "$server_pid"
    wait "$server_pid" || fail "the server did not stop cleanly (status $?)"
    server_pid=
}
login() {
    http POST "$url/latest/user/login" 200 "username=$1&password=$2" \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}
count() { http GET "$url/latest/count" 200; }

step "1. install the binary, the sample configuration and a secret key"
install -D -m 0755 "$built" "$bin"
install -D -m 0644 deploy/kernelci.toml "$etc/kernelci.toml"
umask 077
openssl rand -hex 32 >"$etc/secret_key"
umask 022
# What an operator edits in the sample: the address and the data directory.
cat >>"$etc/kernelci.toml" <<EOF
listen = "127.0.0.1:$port"
data_dir = "$data"
EOF

step "2. check the configuration"
SECRET_KEY_FILE="$etc/secret_key" "$bin" config check --config "$etc/kernelci.toml" >"$root/check.txt" \
    || fail "config check refused the configuration: $(cat "$root/check.txt")"
grep -qx "configuration OK" "$root/check.txt" || fail "config check: $(cat "$root/check.txt")"
grep -qx "secret_key = \*\*\*\* (set)" "$root/check.txt" || fail "the secret is not masked"

step "3. import the mongodump of the kernelci-api instance"
SECRET_KEY_FILE="$etc/secret_key" "$bin" import mongo kernelci-server/tests/fixtures/pymongo-dump \
    --config "$etc/kernelci.toml" --rejects "$root/rejects.jsonl" >"$root/import.txt"
cat "$root/import.txt"
grep -Eq "^node +3 +3 +0 +0" "$root/import.txt" || fail "the 3 nodes are not imported"
grep -Eq "^user +2 +2 +0 +0" "$root/import.txt" || fail "the 2 users are not imported"

step "4. serve, and check health, readiness, the old logins and the data"
start "$data"
http GET "$url/health" 200 | grep -q '"status":"ok"' || fail "/health"
token=$(login alice alice-fixture) || fail "alice cannot log in with her kernelci-api password"
login bob bob-fixture >/dev/null || fail "bob cannot log in with his kernelci-api password"
[ "$(count)" = 3 ] || fail "count is not 3"

step "5. monitor: /metrics"
http GET "$url/metrics" 200 >"$root/metrics.txt"
grep -q '^http_requests_total{instance="api"} ' "$root/metrics.txt" || fail "reference counters"
grep -q '^kci_http_request_duration_seconds_count{method="POST",route="/user/login",status="200"} 2$' \
    "$root/metrics.txt" || fail "request histogram"
grep -q '^kci_store_operation_duration_seconds_count{operation="get_user_by_username"}' \
    "$root/metrics.txt" || fail "store histogram"

step "6. back up the running server, and verify the backup"
mkdir -p "$root/backups"
KCI_TOKEN=$token "$bin" backup --url "$url" --out "$root/backups/kci.backup"
"$bin" verify "$root/backups/kci.backup" | tee "$root/verify.txt"

step "7. upgrade: stop, install the new binary, check the store, start"
stop
install -m 0755 "$built" "$bin"
SECRET_KEY_FILE="$etc/secret_key" "$bin" verify --config "$etc/kernelci.toml"
start "$data"
[ "$(count)" = 3 ] || fail "count after the upgrade"
stop

step "8. restore the backup into a new data directory and serve it"
SECRET_KEY_FILE="$etc/secret_key" "$bin" restore "$root/backups/kci.backup" \
    --config "$etc/kernelci.toml" --data-dir "$root/var/lib/kernelci-restored"
start "$root/var/lib/kernelci-restored"
[ "$(count)" = 3 ] || fail "count after the restore"
login bob bob-fixture >/dev/null || fail "bob cannot log in on the restored store"
stop

step "9. the systemd unit"
if command -v systemd-analyze >/dev/null 2>&1; then
    # The unit names /usr/local/bin/kernelci-server: verify it against this build.
    sed "s#/usr/local/bin/kernelci-server#$bin#" deploy/kernelci-server.service \
        >"$root/kernelci-server.service"
    systemd-analyze verify "$root/kernelci-server.service"
else
    echo "systemd-analyze is not installed: the unit is not checked here"
fi

echo "== walkthrough: every step passed"
