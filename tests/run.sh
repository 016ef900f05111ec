#!/usr/bin/env bash
# Install everything the tests need, then run them. This is the README's test command and what CI runs.
#   bash tests/run.sh [PYTEST ARGS...]
# As root on Debian/Ubuntu it installs the real tools the tests use (libvirt, dnsmasq, bridge-utils,
# ShellCheck, virt-install, busybox); elsewhere the tests that need them are skipped with the reason
# (with CI=true they fail instead).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DEBIAN_PACKAGES=(libvirt-daemon libvirt-clients dnsmasq-base iptables nftables bridge-utils busybox iputils-ping
  iproute2 shellcheck virtinst procps network-manager dbus netplan.io openssh-server openssh-client
  isc-dhcp-client qemu-system-x86)

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  for package in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    # No service of these packages may start on this machine (a NetworkManager would take over its
    # interfaces): the lab starts its own, inside namespaces. policy-rc.d 101 = "not allowed".
    policy_rc_d=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
      chmod 755 /usr/sbin/policy-rc.d
      policy_rc_d=/usr/sbin/policy-rc.d
      trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [ -n "$policy_rc_d" ]; then rm -f "$policy_rc_d"; trap - EXIT; fi
  fi
  # The VM lab (tests/vmlab.py): Debian's kernel and a static busybox, unpacked into a cache, never
  # installed (a kernel's install hooks would change /boot; busybox-static conflicts with busybox).
  # Only the parts the VM uses are kept: the kernel image and the modules of net/, fs/, lib/, crypto/,
  # drivers/net and drivers/virtio. Once fetched, nothing is done again.
  vm_cache=tests/vm/cache
  if [ ! -f "$vm_cache/ready" ]; then
    kernel_package=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ {print $2; exit}')
    if [ -z "$kernel_package" ]; then
      apt-get update -qq
      kernel_package=$(apt-cache depends linux-image-amd64 | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ {print $2; exit}')
    fi
    echo "fetching $kernel_package and busybox-static for the VM lab into $vm_cache"
    rm -rf "$vm_cache" && mkdir -p "$vm_cache/debs" "$vm_cache/linux" "$vm_cache/busybox"
    (cd "$vm_cache/debs" && apt-get download -qq -o APT::Sandbox::User=root "$kernel_package" busybox-static)
    dpkg-deb --fsys-tarfile "$vm_cache"/debs/linux-image-*.deb | tar -x -C "$vm_cache/linux" --wildcards \
      './boot/vmlinuz-*' './lib/modules/*/modules.builtin' './lib/modules/*/kernel/net' './lib/modules/*/kernel/fs' \
      './lib/modules/*/kernel/lib' './lib/modules/*/kernel/crypto' './lib/modules/*/kernel/drivers/net' \
      './lib/modules/*/kernel/drivers/virtio'
    dpkg-deb -x "$vm_cache"/debs/busybox-static_*.deb "$vm_cache/busybox"
    rm -rf "$vm_cache/debs"
    echo "$kernel_package" > "$vm_cache/ready"
  fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
# The example third-party plugin, installed as a user would: tests/test_example_plugin.py uses it.
.venv/bin/python -m pip install -q --disable-pip-version-check -e examples/vnetgen-macvtap
# Mermaid's own parser, for the check that REVIEW.md's diagrams parse (tests/test_review.py): versions
# pinned by tests/mermaid/package-lock.json, from the npm registry, when Node.js is on the machine.
if command -v npm >/dev/null 2>&1 && [ ! -d tests/mermaid/node_modules/mermaid ]; then
  npm ci --prefix tests/mermaid --no-audit --no-fund --loglevel=error >/dev/null
fi
# --fast: what a developer runs in a minute (no lab, no real-tool replays).
if [ "${1:-}" = --fast ]; then
  shift
  set -- -m "not lab and not realtool" "$@"
fi
# Parallel: most of the suite's time is lab tests waiting on daemons (libvirtd, dnsmasq, sshd,
# ansible-playbook), not on the CPU, so 4 workers pay even on 2 cores; each lab lives in its own
# namespaces. VNETGEN_TEST_WORKERS=0 runs them one by one.
exec .venv/bin/python -m pytest -q -n "${VNETGEN_TEST_WORKERS:-4}" --dist worksteal "$@"
