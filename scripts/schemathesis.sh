#!/usr/bin/env bash
# Schema-based fuzzing of a real kernelci-server with its own OpenAPI document.
#
# Builds the server, starts it in --dev mode on a free loopback port with a temporary
# data directory, logs in as the dev admin, and runs schemathesis (from PyPI, in a
# venv under the cargo target directory) on every operation of
# /latest/openapi.json with the checks not_a_server_error, status_code_conformance
# and response_schema_conformance. Fails on any failure, and unless the cases
# include successful node writes (POST /latest/node answered 200).
#
# Bounded: SCHEMATHESIS_MAX_EXAMPLES cases per operation and phase (default 100),
# each request at most 10 s, the whole run SCHEMATHESIS_MAX_TIME seconds (default
# 150; the fuzzing and stateful phases repeat until it is spent).
# Not fuzzed: GET /pop/{list}, which waits for a queue entry as long as the client
# does, and GET /events/stream, which streams until the client goes (both are in
# the document; their answers are tested in kernelci-http's tests).
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir=${CARGO_TARGET_DIR:-target}
mkdir -p "$target_dir"
target_dir=$(cd "$target_dir" && pwd)
venv="$target_dir/schemathesis-venv"
max_examples=${SCHEMATHESIS_MAX_EXAMPLES:-100}
max_time=${SCHEMATHESIS_MAX_TIME:-150}

echo "== schemathesis: venv"
if [ ! -x "$venv/bin/schemathesis" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==4.32.5"
fi
"$venv/bin/schemathesis" --version

echo "== schemathesis: build the server"
cargo build --quiet -p kernelci-server
bin="$target_dir/debug/kernelci-server"

work=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# A 1 s keep-alive, so a listen on a subscription the fuzzer created answers soon.
env -u SECRET_KEY -u KCI_INITIAL_PASSWORD -u KCI_DATA_DIR -u KCI_BACKEND \
    -u DATABASE_URL -u KCI_DATABASE_URL -u KCI_LISTEN \
    KEEP_ALIVE_PERIOD=1 RUST_LOG=warn \
    "$bin" serve --listen 127.0.0.1:0 --data-dir "$work/data" --dev \
    >"$work/server.out" 2>"$work/server.err" &
server_pid=$!

addr= password=
for _ in $(seq 1 100); do
    addr=$(sed -n 's|^kernelci-server listening on http://\([^ ]*\).*|\1|p' "$work/server.out" | head -n 1)
    password=$(sed -n 's|.*password=\([^ ]*\).*|\1|p' "$work/server.out" | head -n 1)
    [ -n "$addr" ] && [ -n "$password" ] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.err" >&2; exit 1; }
    sleep 0.1
done
[ -n "$addr" ] && [ -n "$password" ] || { echo "the server did not start" >&2; exit 1; }
echo "server on $addr"

token=$(ADDR="$addr" PASSWORD="$password" python3 - <<'EOF'
import json, os, urllib.parse, urllib.request
body = urllib.parse.urlencode({"username": "admin", "password": os.environ["PASSWORD"]}).encode()
req = urllib.request.Request(f"http://{os.environ['ADDR']}/latest/user/login", data=body)
print(json.load(urllib.request.urlopen(req, timeout=30))["access_token"])
EOF
)

echo "== schemathesis run (at most $max_examples cases per operation, ${max_time}s)"
start=$(date +%s)
status=0
# From the temporary directory: schemathesis keeps a replay cache in the working one.
(cd "$work" && "$venv/bin/schemathesis" run "http://$addr/latest/openapi.json" \
    --checks not_a_server_error,status_code_conformance,response_schema_conformance \
    --header "Authorization: Bearer $token" \
    --exclude-path "/latest/pop/{list}" \
    --exclude-path "/latest/events/stream" \
    --max-examples "$max_examples" \
    --max-time "$max_time" \
    --request-timeout 10 \
    --seed "${SCHEMATHESIS_SEED:-20261203}" \
    --suppress-health-check all \
    --report vcr --report-vcr-path "$work/cassette.yaml" \
    --warnings off \
    --generation-database none) \
    || status=$?
echo "schemathesis took $(( $(date +%s) - start ))s"
if [ "$status" -ne 0 ]; then
    echo "server log:" >&2
    tail -n 50 "$work/server.err" >&2
    exit "$status"
fi

# Successful node writes among the cases.
writes=$(python3 - "$work/cassette.yaml" <<'EOF'
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
n = 0
for block in re.split(r"\n- id: ", text):
    m = re.search(r"request:\s*\n\s*uri: '?([^'\n]*)'?\s*\n\s*method: '?(\w+)'?", block)
    s = re.search(r"response:\s*\n\s*status:\s*\n\s*code: '?(\d+)'?", block)
    if m and s and m.group(2) == "POST" and m.group(1).split("?")[0].endswith("/latest/node") and s.group(1) == "200":
        n += 1
print(n)
EOF
)
echo "POST /latest/node answered 200: $writes times"
if [ "$writes" -lt 1 ]; then
    echo "no successful node write among the cases" >&2
    exit 1
fi
