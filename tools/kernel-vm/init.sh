#!/bin/busybox sh
# /init of the kernel-vm initramfs (PID 1 in the guest); see ./vm.
# Host root (9p, read-only) under a tmpfs overlay becomes the root; the shared
# work dir (9p, read-write) is mounted at its host path; LIO modules are loaded,
# configfs mounted, then /run/kernel-vm/cmd runs chrooted and its status is
# written to the ctl share before the VM leaves through isa-debug-exit.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /modules.list); do insmod "/mod/$m" 2>/dev/null; done

leave() { printf '\000' | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null; poweroff -f; }
die() { echo "kernel-vm init: $*" >&2; echo 125 > /ctl/rc 2>/dev/null; sync; leave; }
P9="trans=virtio,version=9p2000.L,msize=512000"
mkdir -p /ctl /host /rw /newroot
mount -t 9p -o "$P9,cache=none" ctl /ctl || die "cannot mount the ctl share"
. /ctl/env                                   # CWD SHARE KVER MODDIR
mount -t 9p -o "$P9,cache=loose,ro" hostroot /host || die "cannot mount the host root"
mount -t tmpfs -o mode=755 rw /rw && mkdir -p /rw/u /rw/w
mount -t overlay -o lowerdir=/host,upperdir=/rw/u,workdir=/rw/w root /newroot ||
  die "cannot mount the overlay root"
R=/newroot
# LIO's kernel threads resolve its db_root (/var/target) from this root, not the
# chroot's: without pr/ here PERSISTENT RESERVE OUT with APTPL fails (08/00).
mkdir -p /var/target/pr /var/target/alua
# request_module() runs /sbin/modprobe in the initramfs, not in the chroot.
mkdir -p /sbin; printf '#!/bin/sh\nexec chroot /newroot /sbin/modprobe "$@"\n' > /sbin/modprobe
chmod 755 /sbin/modprobe
mount -t proc proc $R/proc; mount -t sysfs sys $R/sys; mount -t devtmpfs dev $R/dev
mkdir -p $R/dev/pts $R/dev/shm; mount -t devpts -o ptmxmode=666 pts $R/dev/pts
for d in /dev/shm /run /tmp /var/tmp; do mount -t tmpfs -o mode=1777 tmp "$R$d"; done
chmod 755 $R/run; mkdir -p $R/run/kernel-vm $R/run/lock; mount --bind /ctl $R/run/kernel-vm
# Modules come from the host's cache, bound from /host: a cache under /tmp would be
# hidden by the guest's tmpfs if reached through the overlay.
mkdir -p "$R/usr/lib/modules/$KVER" && mount --bind "/host$MODDIR" "$R/usr/lib/modules/$KVER"
MODS="configfs target_core_mod target_core_user tcm_loop target_core_file
      target_core_iblock iscsi_target_mod sd_mod sg loop ext4"
chroot $R /sbin/modprobe -a $MODS ||
  for m in $MODS; do chroot $R /sbin/modprobe $m || echo "kernel-vm init: modprobe $m failed" >&2; done
mount -t configfs configfs $R/sys/kernel/config || die "cannot mount configfs"
if [ "$SHARE" != / ]; then
  mkdir -p "$R$SHARE"                        # a share under /tmp needs its mount point back
  # cache=loose: node_modules is read over and over (vitest workers); without a
  # page cache every read is a 9p round trip under TCG. Writes still reach the
  # host (flushed by the final sync).
  mount -t 9p -o "$P9,cache=${SHARE_CACHE:-loose}" work "$R$SHARE" || die "cannot mount the work share"
fi
hostname kernel-vm; ip link set lo up
echo "command starts at guest uptime $(cut -d' ' -f1 /proc/uptime)s" > /ctl/boot
chroot $R /usr/bin/env -i HOME=/root TERM=linux LANG=C.UTF-8 \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  /bin/bash /run/kernel-vm/cmd
echo $? > /ctl/rc
timeout 20 sync
# No clean poweroff: sd_shutdown sends SYNCHRONIZE CACHE to every disk and hangs
# on a TCMU disk whose handler is gone. Leave through isa-debug-exit (port 0xf4).
leave
