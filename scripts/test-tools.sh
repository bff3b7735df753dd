#!/usr/bin/env bash
# Installs the Python tools the tests run against (not mocks: real servers):
# aiosmtpd, the SMTP server of kernelci-http's TLS e-mail tests (tests/smtp_tls.rs),
# from PyPI into a venv under the cargo target directory. Idempotent; needs
# python3 with venv, and openssl (the tests make a self-signed certificate).
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir=${CARGO_TARGET_DIR:-target}
mkdir -p "$target_dir"
target_dir=$(cd "$target_dir" && pwd)
venv="$target_dir/test-tools-venv"

if ! "$venv/bin/python" -c 'import aiosmtpd' >/dev/null 2>&1; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "aiosmtpd==1.4.6"
fi
echo "test tools: $("$venv/bin/python" -c 'import aiosmtpd; print("aiosmtpd", aiosmtpd.__version__)') in $venv"
command -v openssl >/dev/null || { echo "openssl is missing" >&2; exit 1; }
