#!/bin/busybox sh
# PID 1 of the lab VM (tests/vmlab.py builds it into the initramfs with busybox, the modules and
# run.sh). Mounts this machine's / read-only over virtio-9p, makes writable what the lab writes
# (all of it in RAM), switches root into it, runs /run.sh, and powers off whatever happened.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say() { echo "vmlab: $*" > /dev/console; }
fail() { say "FAILED: $*"; poweroff -f; }
say "kernel $(uname -r)"
for m in $(cat /modules.list); do
    insmod "/modules/$m.ko" || fail "insmod $m"
done
r=/newroot
mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=512000,cache=loose hostroot $r || fail "9p hostroot"
mount -t proc proc $r/proc || fail "proc"
mount -t sysfs sysfs $r/sys
mount -t devtmpfs devtmpfs $r/dev
mkdir -p $r/dev/pts $r/dev/shm
mount -t devpts devpts $r/dev/pts
mount -t tmpfs -o mode=1777 tmpfs $r/dev/shm
mount -t tmpfs -o mode=0755 tmpfs $r/run || fail "tmpfs /run"
# /etc, /var, /root and /tmp: this machine's, with a tmpfs on top for whatever the lab writes there
# (/tmp too, not a bare tmpfs: the checkout under test may live there, as a CI clone often does).
mkdir -p /upper
mount -t tmpfs -o mode=0755 tmpfs /upper
for top in etc var root tmp; do
    mkdir -p "/upper/$top" "/upper/$top-work"
    mount -t overlay overlay -o "lowerdir=$r/$top,upperdir=/upper/$top,workdir=/upper/$top-work" "$r/$top" \
        || fail "overlay /$top"
done
mount -t tmpfs -o mode=0755 tmpfs $r/var/tmp
chmod 1777 $r/var/tmp
mkdir -p $r/run/vmlab $r/run/lock
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 results $r/run/vmlab || fail "9p results"
cp /run.sh $r/run/vmlab-run.sh
mkdir -p $r/run/vmlab-bin && cp /bin/busybox $r/run/vmlab-bin/busybox
hostname vmlab
ip link set lo up
cat /proc/mounts > /dev/console
say "running the tests"
# switch_root, not chroot: it makes this machine's / the root of the mount namespace, which is
# where nsenter -m (the lab enters its hosts so) puts a process; after a chroot it would land in
# this initramfs instead.
exec switch_root $r /run/vmlab-bin/busybox sh -c '/bin/sh /run/vmlab-run.sh
echo "vmlab: exit $(cat /run/vmlab/exitcode 2>/dev/null)" > /dev/console
sync
/run/vmlab-bin/busybox poweroff -f'
