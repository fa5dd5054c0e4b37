#!/bin/sh
# rocebed guest /init (busybox sh). It loads the modules prepare chose, mounts the host's / read-only
# over 9p (mount_tag hostroot) with fresh proc/sys/dev/tmpfs on top, mounts the read-write work
# share (mount_tag work) at the same path as on the host, and runs the harness's command script in
# a chroot. The command's stdout/stderr go to files in the work share, which the host streams. The
# exit status goes to <work>/.vm/rc and to the console as ROCEBED-RC=N. Then it powers off.
# Kernel parameters: rocebed.work=DIR rocebed.timeout=SECONDS (0: none) rocebed.machine=pc|microvm.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
read up _ < /proc/uptime
echo "ROCEBED-INIT uptime=$up"

fail() {
	echo "ROCEBED-FAIL $*"
	poweroff -f
	sleep 10
}

WORK= TMO=0 MACHINE=
for w in $(cat /proc/cmdline); do
	case "$w" in
	rocebed.work=*) WORK=${w#*=} ;;
	rocebed.timeout=*) TMO=${w#*=} ;;
	rocebed.machine=*) MACHINE=${w#*=} ;;
	esac
done
[ -n "$WORK" ] || fail "no rocebed.work= on the kernel command line"

# Modules: "NAME required|optional|ondemand [MACHINE]" per line. One modprobe loads them all
# with their dependencies (lib/modules/KVER/modules.dep); modules for another QEMU machine and
# those the kernel loads on demand are left out.
load=
while read -r name need machine; do
	[ "$need" = ondemand ] && continue
	[ -n "$machine" ] && [ -n "$MACHINE" ] && [ "$machine" != "$MACHINE" ] && continue
	load="$load $name"
done < /etc/rocebed/modules
modprobe -a $load 2>/modprobe.err
while read -r name need machine; do
	[ "$need" = ondemand ] && continue
	[ -n "$machine" ] && [ -n "$MACHINE" ] && [ "$machine" != "$MACHINE" ] && continue
	[ -d "/sys/module/$name" ] && continue
	read -r err < /modprobe.err
	[ "$need" = required ] && fail "modprobe $name: $err"
	echo "rocebed-init: optional module $name not loaded: $err"
done < /etc/rocebed/modules
read up _ < /proc/uptime
echo "ROCEBED-MODULES uptime=$up"

ip link set lo up
hostname rocebed-vm

N=/newroot
O=trans=virtio,version=9p2000.L,msize=512000
mkdir -p $N
mount -t 9p -o $O,ro,cache=loose hostroot $N || fail "mount 9p hostroot"
mount -t proc proc $N/proc || fail "mount proc"
mount -t sysfs sysfs $N/sys || fail "mount sysfs"
mount -t devtmpfs devtmpfs $N/dev || fail "mount devtmpfs"
mkdir -p $N/dev/pts $N/dev/shm
mount -t devpts devpts $N/dev/pts
mount -t tmpfs tmpfs $N/dev/shm
for d in /run /tmp /var/tmp; do
	mount -t tmpfs -o mode=1777 tmpfs $N$d || fail "mount tmpfs on $d"
done
mkdir -p $N/run/netns $N$WORK
mount -t 9p -o $O work $N$WORK || fail "mount 9p work share at $WORK"

C=$N$WORK/.vm
[ -f $C/cmd.sh ] || fail "no command script $WORK/.vm/cmd.sh"
read up _ < /proc/uptime
echo "ROCEBED-START uptime=$up"
chroot $N /bin/sh $WORK/.vm/cmd.sh < /dev/null > $C/stdout 2> $C/stderr &
pid=$!
if [ "$TMO" -gt 0 ]; then
	# kill -1 signals every process but init and the caller: the whole command tree. A process
	# stuck in the kernel may never die and keep init's wait from returning, so the watchdog
	# reports the timeout and powers off itself, after listing blocked tasks on the console.
	(
		sleep "$TMO"
		echo "$TMO" > $C/timedout
		echo "ROCEBED-TIMEOUT after ${TMO}s; blocked tasks:"
		echo w > /proc/sysrq-trigger
		kill -KILL -1
		sleep 3
		echo timeout > $C/rc.tmp && mv $C/rc.tmp $C/rc
		sync
		echo "ROCEBED-RC=timeout"
		poweroff -f
	) &
fi
wait $pid
rc=$?
kill -KILL -1 2>/dev/null
[ -f $C/timedout ] && rc=timeout
echo $rc > $C/rc.tmp && mv $C/rc.tmp $C/rc
sync
echo "ROCEBED-RC=$rc"
umount $N$WORK
poweroff -f
sleep 10
