#!/usr/bin/env bash
# Re-record the fixtures of vnetgen's fact parsers (tests/fixtures/facts/) from the
# real tools of this machine: brctl, ip, bridge, sysctl, virsh and a real libvirtd.
#
# Usage: tests/record_fact_fixtures.sh        (as root; from any directory)
#
# Everything that changes state happens inside throw-away network + mount + PID
# namespaces (unshare): bridges, veths, libvirtd, dnsmasq and iptables rules vanish
# with them, and each step checks that it is not in the machine's own network
# namespace before it touches anything. Outside, it writes the fixtures only, and
# the mount points for libvirtd's tmpfs that do not exist yet (removed at the end).
# What cannot be confined: the kernel may load modules (bridge, veth, iptables).
# A fixture keeps its hand-written "fact" (or "error") when re-recorded:
# only "command", "exit_status" and "output" are replaced, so a test failure after
# re-recording means the tools now print something else.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self=$here/$(basename "${BASH_SOURCE[0]}")
fixtures=$here/fixtures/facts
node_xml=$fixtures/test-driver-node.xml
installed_xml=$fixtures/test-driver-installed.xml
driver_dir=/usr/lib/x86_64-linux-gnu/libvirt/connection-driver
# Where libvirtd keeps its state: each gets a tmpfs inside the namespace.
state_dirs=(/run/libvirt /etc/libvirt/qemu /var/lib/libvirt /var/log/libvirt /var/cache/libvirt)

die() {
    printf 'record_fact_fixtures: %s\n' "$*" >&2
    exit 1
}

# record PARSER CASE MODE CMD...: run CMD, store its output as fixture PARSER/CASE.
# MODE is "stdout" (stderr is shown on the terminal) or "merged" (2>&1, as a
# capture script that keeps the errors would store it).
record() {
    local parser=$1 case=$2 mode=$3 status=0
    shift 3
    local raw=$scratch/raw
    if [[ $mode == merged ]]; then
        "$@" >"$raw" 2>&1 || status=$?
    else
        "$@" >"$raw" || status=$?
    fi
    python3 - "$fixtures/$parser/$case.json" "$raw" "$status" "$mode" "$@" <<'PY'
import json, os, shlex, sys

path, raw, status, mode, argv = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:]
with open(raw, "rb") as f:
    output = f.read().decode("utf-8", "surrogateescape")
# The node file of the test driver lives in the repo: name it as run from the repo root.
repo = path
for _ in range(5):  # tests/fixtures/facts/PARSER/CASE.json
    repo = os.path.dirname(repo)
argv = [a.replace(repo + "/", "$PWD/") for a in argv]
command = " ".join(a if a.startswith("test://$PWD/") else shlex.quote(a) for a in argv)
if mode == "merged":
    command += " 2>&1"
fixture = {}
if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
        fixture = json.load(f)
fixture.update(command=command, exit_status=status, output=output)
if "fact" not in fixture and "error" not in fixture:
    fixture["fact"] = None  # to be written by hand, by reading the output
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path, "w", encoding="utf-8") as f:
    json.dump(fixture, f, indent=2, ensure_ascii=False)
    f.write("\n")
PY
    printf '  %s/%s\n' "$parser" "$case"
}

# guard OUTER_NETNS: refuse to go on in the machine's own network namespace.
guard() {
    [[ $(readlink /proc/self/ns/net) != "$1" ]] || die "still in the host's network namespace: refusing"
}

# fresh_namespace: the start of every scenario, run by "$self --inside".
fresh_namespace() {
    guard "$outer"
    # A sysfs of our own, so that brctl sees this namespace's bridges (and sorts them).
    mount -t sysfs sysfs /sys
    ip link set lo up
}

# veth NAME MAC PEER PEERMAC: a veth pair with fixed addresses (dummy links are not available).
veth() {
    ip link add "$1" address "$2" type veth peer name "$3" address "$4"
}

scenario_no_bridges() {
    record brctl empty stdout brctl show
    record ip_link_bridge empty stdout ip -j -d link show type bridge
    record bridge_link empty stdout bridge -j link
}

scenario_bridges() {
    # Created out of name order, so that name order and creation order differ.
    ip link add zbr0 address 02:00:00:00:b0:02 type bridge
    ip link add br0 address 02:00:00:00:b0:00 type bridge
    ip link add lab-br address 02:00:00:00:b0:01 type bridge
    veth v0a 02:00:00:00:00:0a v0b 02:00:00:00:00:0b
    veth v1a 02:00:00:00:01:0a v1b 02:00:00:00:01:0b
    veth v2a 02:00:00:00:02:0a v2b 02:00:00:00:02:0b
    brctl addif br0 v1a
    brctl addif br0 v0a
    brctl addif lab-br v2a
    brctl stp br0 on
    brctl setfd br0 4
    ip link set lab-br type bridge forward_delay 250
    record brctl several stdout brctl show
    record brctl named stdout brctl show br0
    record brctl nonexistent merged brctl show nosuchbr
    record brctl not-a-bridge merged brctl show v0b
    record brctl named-and-nonexistent merged brctl show lab-br nosuchbr
    record ip_link_bridge several stdout ip -j -d link show type bridge
    record ip_link_bridge all-links stdout ip -j -d link show
    record ip_link_bridge no-details stdout ip -j link show type bridge
    record bridge_link several stdout bridge -j link
    record bridge_link master-br0 stdout ip -j link show master br0
    record bridge_link bridge-slave-empty-objects stdout ip -j link show type bridge_slave
    # Without bridges in sysfs brctl falls back to ioctls: creation order, as on old hosts.
    mount -t tmpfs none /sys/class/net
    record brctl several-no-sysfs stdout brctl show
    umount /sys/class/net
    # A bridge that sysfs lists but whose attributes cannot be read (a bridge deleted
    # while brctl runs): brctl prints zeros and "can't get port info" on stdout, the
    # rest on stderr. Faked with a copy of /sys/class/net plus an empty ghost0/bridge.
    mkdir "$scratch/net"
    mount -t tmpfs none "$scratch/net"
    cp -a /sys/class/net/. "$scratch/net/"
    mkdir -p "$scratch/net/ghost0/bridge"
    mount --bind "$scratch/net" /sys/class/net
    record brctl unreadable-bridge stdout brctl show
    record brctl unreadable-bridge-merged merged brctl show
    umount /sys/class/net
}

scenario_one_bridge() {
    ip link add br0 address 02:00:00:00:b0:00 type bridge
    record brctl one-bridge-no-ports stdout brctl show
    record ip_link_bridge one-bridge-no-ports stdout ip -j -d link show type bridge
}

# start_libvirtd: a libvirtd that serves networks only, with all its state on tmpfs.
start_libvirtd() {
    mkdir "$scratch/drivers"
    cp "$driver_dir/libvirt_driver_network.so" "$scratch/drivers/"
    mount --bind "$scratch/drivers" "$driver_dir"
    local d
    for d in "${state_dirs[@]}"; do
        mount -t tmpfs none "$d"
    done
    trap stop_libvirtd EXIT
    libvirtd -d
    local i
    for i in $(seq 100); do
        [[ -S /run/libvirt/libvirt-sock ]] && return 0
        sleep 0.1
    done
    die "libvirtd did not start (after $i tries)"
}

stop_libvirtd() {
    # The PID namespace kills it anyway when the scenario ends; this is the polite way.
    if [[ -s /run/libvirt/libvirtd.pid ]]; then
        kill "$(cat /run/libvirt/libvirtd.pid)" 2>/dev/null || true
    fi
}

# define NAME XML: define a persistent network from XML text.
define() {
    printf '%s\n' "$2" >"$scratch/$1.xml"
    virsh -q -c network:///system net-define "$scratch/$1.xml" >/dev/null
}

scenario_libvirt() {
    start_libvirtd
    local v=(virsh -c network:///system)
    veth up0 02:00:00:00:0f:0a up1 02:00:00:00:0f:0b
    ip link add br-host address 02:00:00:00:b0:0f type bridge
    record net_list empty stdout "${v[@]}" net-list --all
    record sysctl ip-forward-off stdout sysctl net.ipv4.ip_forward

    define labnat "<network>
  <name>labnat</name>
  <uuid>6f8b6a4e-0b0a-4f0e-9d7e-000000000001</uuid>
  <forward mode='nat'/>
  <bridge name='virbr10'/>
  <mac address='52:54:00:0A:00:01'/>
  <ip address='192.168.100.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.100.10' end='192.168.100.20'/>
      <host mac='52:54:00:AA:BB:CC' name='vm1' ip='192.168.100.11'/>
      <host mac='52:54:00:aa:bb:dd' ip='192.168.100.12'/>
    </dhcp>
  </ip>
</network>"
    define routed "<network>
  <name>routed</name>
  <uuid>6f8b6a4e-0b0a-4f0e-9d7e-000000000002</uuid>
  <forward mode='route' dev='up0'/>
  <bridge name='virbr11' stp='off' delay='2'/>
  <mac address='52:54:00:0a:00:02'/>
  <ip address='10.10.20.1' prefix='24'/>
</network>"
    define isolated "<network>
  <name>isolated</name>
  <uuid>6f8b6a4e-0b0a-4f0e-9d7e-000000000003</uuid>
  <bridge name='virbr12'/>
  <mac address='52:54:00:0a:00:03'/>
</network>"
    define opennet "<network>
  <name>opennet</name>
  <uuid>6f8b6a4e-0b0a-4f0e-9d7e-000000000004</uuid>
  <forward mode='open'/>
  <bridge name='virbr13'/>
  <mac address='52:54:00:0a:00:04'/>
  <ip address='10.10.30.1' prefix='24'/>
</network>"
    define hostbr "<network>
  <name>hostbr</name>
  <uuid>6f8b6a4e-0b0a-4f0e-9d7e-000000000005</uuid>
  <forward mode='bridge'/>
  <bridge name='br-host'/>
</network>"
    define v6lab "<network>
  <name>v6lab</name>
  <uuid>6F8B6A4E-0B0A-4F0E-9D7E-000000000006</uuid>
  <forward mode='nat'/>
  <bridge name='virbr14' stp='on' delay='0'/>
  <mac address='52:54:00:0a:00:06'/>
  <ip family='ipv6' address='2001:0db8:0ca2:0002:0000:0000:0000:0001' prefix='64'>
    <dhcp>
      <range start='2001:db8:ca2:2:0:0:0:100' end='2001:db8:ca2:2::1ff'/>
      <host id='0:4:7e:7d:f0:7d:a8:bc:c5:d2:13:32:11:ed:16:ea:84:63' name='vm6' ip='2001:db8:ca2:2::150'/>
    </dhcp>
  </ip>
  <ip address='192.168.200.1' prefix='24'/>
</network>"
    define 'lab net' "<network>
  <name>lab net</name>
  <uuid>6f8b6a4e-0b0a-4f0e-9d7e-000000000007</uuid>
  <bridge name='virbr15'/>
  <mac address='52:54:00:0a:00:07'/>
  <ip address='10.40.0.1'/>
</network>"
    printf '%s\n' "<network>
  <name>scratch</name>
  <uuid>6f8b6a4e-0b0a-4f0e-9d7e-000000000008</uuid>
  <bridge name='virbr16'/>
  <mac address='52:54:00:0a:00:08'/>
</network>" >"$scratch/scratch.xml"

    local net
    for net in labnat routed isolated hostbr v6lab; do
        "${v[@]}" -q net-start "$net" >/dev/null
    done
    "${v[@]}" -q net-create "$scratch/scratch.xml" >/dev/null
    for net in labnat isolated opennet; do
        "${v[@]}" -q net-autostart "$net" >/dev/null
    done
    # A guest's port on labnat, so that its live XML counts connections='1'.
    printf '%s\n' "<networkport>
  <uuid>6f8b6a4e-0b0a-4f0e-9d7e-0000000000f1</uuid>
  <owner><name>vm1</name><uuid>6f8b6a4e-0b0a-4f0e-9d7e-0000000000e1</uuid></owner>
  <mac address='52:54:00:aa:bb:cc'/>
</networkport>" >"$scratch/port.xml"
    "${v[@]}" -q net-port-create labnat "$scratch/port.xml" >/dev/null

    record net_list mixed stdout "${v[@]}" net-list --all
    record net_list active-only stdout "${v[@]}" net-list
    record net_list quiet stdout "${v[@]}" -q net-list --all
    for net in labnat routed isolated hostbr v6lab scratch; do
        record net_dumpxml "$net" stdout "${v[@]}" net-dumpxml "$net"
    done
    for net in labnat routed opennet v6lab 'lab net'; do
        record net_dumpxml "${net// /-}-inactive" stdout "${v[@]}" net-dumpxml --inactive "$net"
    done
    record net_dumpxml no-such-network merged "${v[@]}" net-dumpxml nosuchnet
    record brctl libvirt stdout brctl show
    record sysctl ip-forward-on stdout sysctl net.ipv4.ip_forward
    record sysctl bare-value stdout sysctl -n net.ipv4.ip_forward
    record sysctl several-keys stdout sysctl net.ipv4.ip_forward net.ipv6.conf.all.forwarding net.ipv4.conf.virbr10.forwarding
    record sysctl missing-key merged sysctl net.ipv4.ip_forward net.ipv4.no_such_key
}

scenario_test_driver() {
    # The test driver runs inside virsh itself: nothing to start, nothing to change.
    local t=(virsh -c test:///default)
    record virsh_list test-driver stdout "${t[@]}" list --all
    record domiflist test-driver stdout "${t[@]}" domiflist test
    record virsh_list empty stdout "${t[@]}" list --inactive
    record virsh_list quiet stdout "${t[@]}" -q list --all
    local n=(virsh -c "test://$node_xml")
    record virsh_list all-states stdout "${n[@]}" list --all
    record virsh_list inactive-only stdout "${n[@]}" list --inactive
    record virsh_list state-other stdout "${n[@]}" list --state-other
    record domiflist several stdout "${n[@]}" domiflist 'web 1'
    record domiflist no-interfaces stdout "${n[@]}" domiflist db
    record domiflist no-such-domain merged "${n[@]}" domiflist nosuchvm
    record dom_dumpxml test-driver stdout "${t[@]}" dumpxml --inactive --domain test
    record dom_dumpxml several-nics stdout "${n[@]}" dumpxml --inactive --domain 'web 1'
    record dom_dumpxml no-such-domain merged "${n[@]}" dumpxml --inactive --domain nosuchvm
    write_installed_node
    local i=(virsh -c "test://$installed_xml")
    record dom_dumpxml virt-install stdout "${i[@]}" dumpxml --inactive --domain VM1
    record dom_dumpxml virt-install-two-disks-cdrom-vnc stdout "${i[@]}" dumpxml --inactive --domain 'web 2'
}

# write_installed_node: a test-driver node of the domains virt-install itself writes (as the runbook's
# VM step runs it, and one with a second disk, a CD-ROM, a bridge NIC, vCPU hotplug room and VNC),
# so that `virsh dumpxml --inactive` of them is what a host that ran the runbook shows.
write_installed_node() {
    local vi=(virt-install --connect test:///default --print-xml --import --noautoconsole)
    {
        printf '%s\n' "<!-- Written by tests/record_fact_fixtures.sh (write_installed_node) from virt-install's" \
            "     print-xml output: the input of its dom_dumpxml fixtures. -->" "<node>"
        "${vi[@]}" --name VM1 --uuid 6f8b6a4e-0b0a-4f0e-9d7e-0000000000d1 --memory 2048 --vcpus 2 --disk path=/data/vm-images/vm1.img,size=10 \
            --network network=default,mac=52:54:00:6d:33:55 --os-variant ubuntu14.04 --graphics none
        "${vi[@]}" --name 'web 2' --uuid 6f8b6a4e-0b0a-4f0e-9d7e-0000000000d2 --memory 1000 --vcpus 2,maxvcpus=4 --disk path=/srv/web2.qcow2,size=5 \
            --disk path=/srv/web2-data.img,size=1 --disk device=cdrom \
            --network network=default,mac=52:54:00:AA:00:02 --network bridge=br0,mac=52:54:00:aa:00:03 \
            --os-variant ubuntu14.04 --graphics vnc
        printf '%s\n' "</node>"
    } >"$installed_xml"
}

inside() {
    outer=$1
    scratch=$2
    fresh_namespace
    "scenario_$3"
}

cleanup() {
    rm -rf "$scratch"
    local i
    for ((i = ${#created[@]} - 1; i >= 0; i--)); do  # deepest first
        rmdir "${created[i]}" 2>/dev/null ||
            printf 'record_fact_fixtures: left %s (not empty)\n' "${created[i]}" >&2
    done
}

main() {
    [[ $(id -u) -eq 0 ]] || die "must run as root: it creates network namespaces"
    local tool
    for tool in unshare brctl ip bridge sysctl virsh libvirtd dnsmasq python3; do
        command -v "$tool" >/dev/null || die "missing tool: $tool"
    done
    [[ -f $driver_dir/libvirt_driver_network.so ]] || die "missing $driver_dir/libvirt_driver_network.so"
    outer=$(readlink /proc/self/ns/net)
    scratch=$(mktemp -d)
    created=()
    trap cleanup EXIT
    # A tmpfs needs a mount point: make the missing ones, and remove them at the end.
    local d part path
    local -a parts
    for d in "${state_dirs[@]}"; do
        path=
        IFS=/ read -ra parts <<<"${d#/}"
        for part in "${parts[@]}"; do
            path+=/$part
            if [[ ! -d $path ]]; then
                mkdir "$path"
                created+=("$path")
            fi
        done
    done
    local scenario
    for scenario in no_bridges one_bridge bridges libvirt test_driver; do
        echo "$scenario:"
        unshare -n -m -p --fork --mount-proc --propagation private \
            bash "$self" --inside "$outer" "$scratch/$scenario" "$scenario"
    done
}

if [[ ${1-} == --inside ]]; then
    mkdir -p "$3"
    inside "$2" "$3" "$4"
else
    main "$@"
fi
