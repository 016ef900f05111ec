#!/usr/bin/env bash
# Install everything the tests need, then run them. This is the README's test command and what CI runs.
#   bash tests/run.sh [PYTEST ARGS...]
# As root on Debian/Ubuntu it installs the real tools the tests use (libvirt, dnsmasq, bridge-utils,
# ShellCheck, virt-install, busybox); elsewhere the tests that need them are skipped with the reason
# (with CI=true they fail instead).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DEBIAN_PACKAGES=(libvirt-daemon libvirt-clients dnsmasq-base iptables bridge-utils busybox iputils-ping
  iproute2 shellcheck virtinst procps)

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  for package in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
exec .venv/bin/python -m pytest -q "$@"
