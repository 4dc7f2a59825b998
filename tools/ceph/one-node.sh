#!/usr/bin/env bash
# A one-node Ceph cluster on 127.0.0.1 for the @tcmu/rbd tests and demos (docs/rbd.md):
# one mon, one memstore OSD (a mgr only with CEPH_MGR=1), cephx on, every path in one scratch
# directory, no systemd, nothing under /etc or /var. Run as root.
#
#   tools/ceph/one-node.sh start    make the cluster if needed, start what is not running, make
#                                   the pool and the image; prints CEPH_CONF=, CEPH_KEYRING=, ...
#   tools/ceph/one-node.sh stop     stop the daemons by pid (SIGTERM: memstore saves its data)
#   tools/ceph/one-node.sh status   which daemons run; exit 0 when all do
#   tools/ceph/one-node.sh wipe     stop, then remove the scratch directory
#
# Environment (all optional):
#   CEPH_DIR         scratch directory (default: <repo>/.vm-artifacts/ceph)
#   CEPH_MON_PORT    the mon's msgr2 port on 127.0.0.1 (default 3300)
#   CEPH_POOL        pool to create (default tcmu); CEPH_IMAGE image in it (default disk0)
#   CEPH_IMAGE_SIZE  its size for `rbd create --size` (default 64M)
#   CEPH_MEMSTORE_BYTES  the OSD's memstore capacity (default 1 GiB, held in RAM)
#   CEPH_TIMEOUT     seconds for client ops, mounts and every wait here (default 10)
#   CEPH_MGR=1       also run a mgr (not needed for RBD I/O)
# start is idempotent and serialised with flock; a half-made cluster (no .ready marker) is
# stopped and made again.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
dir=${CEPH_DIR:-$repo/.vm-artifacts/ceph}
port=${CEPH_MON_PORT:-3300}
pool=${CEPH_POOL:-tcmu}
image=${CEPH_IMAGE:-disk0}
size=${CEPH_IMAGE_SIZE:-64M}
memstore=${CEPH_MEMSTORE_BYTES:-1073741824}
timeout=${CEPH_TIMEOUT:-10}
conf=$dir/ceph.conf
keyring=$dir/client.admin.keyring
daemons=(mon.a osd.0)
[ "${CEPH_MGR:-0}" = 1 ] && daemons+=(mgr.x)

say() { echo "one-node: $*"; }
die() {
  echo "one-node: $*" >&2
  exit 1
}

ceph_cli() { timeout "$((timeout * 3))" ceph -c "$conf" "$@"; }

pidfile() { echo "$dir/run/$1.pid"; }

running() {
  local file
  file=$(pidfile "$1")
  [ -s "$file" ] && kill -0 "$(cat "$file")" 2>/dev/null
}

stop_daemons() {
  local name pid waited
  # The OSD first: it reports itself down to the mon, and saves memstore's data at umount.
  for name in osd.0 mgr.x mon.a; do
    running "$name" || continue
    pid=$(cat "$(pidfile "$name")")
    kill -TERM "$pid" 2>/dev/null || true
    for ((waited = 0; waited < timeout * 10; waited++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      say "$name ($pid) ignored SIGTERM for ${timeout}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$(pidfile "$name")"
    say "stopped $name ($pid)"
  done
}

need_tools() {
  local missing=()
  for tool in ceph-mon ceph-osd ceph ceph-authtool monmaptool rbd; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  [ "${CEPH_MGR:-0}" = 1 ] && ! command -v ceph-mgr >/dev/null && missing+=(ceph-mgr)
  [ ${#missing[@]} -eq 0 ] ||
    die "${missing[*]} not found: apt-get install --no-install-recommends ceph-mon ceph-osd ceph-mgr ceph-common librbd-dev (or run tools/bootstrap.sh)"
  [ "$(id -u)" = 0 ] || die "run as root (the daemons and their scratch directory are root's)"
}

write_conf() {
  local fsid=$1
  cat >"$conf" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$port
public network = 127.0.0.0/8
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
run dir = $dir/run
pid file = $dir/run/\$name.pid
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
log to stderr = false
err to stderr = true
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
osd crush chooseleaf type = 0

[mon]
mon data = $dir/mon/\$name
mon cluster log file = $dir/log/cluster.log
keyring = $dir/mon/\$name/keyring

[osd]
osd data = $dir/osd/\$name
osd objectstore = memstore
memstore device bytes = $memstore
# memstore keeps objects in RAM and writes them out at umount, which a fast shutdown skips.
osd fast shutdown = false
keyring = $dir/osd/\$name/keyring

[mgr]
mgr data = $dir/mgr/\$name
keyring = $dir/mgr/\$name/keyring

[client]
keyring = $keyring
# One socket per client context: a process may open several images.
admin socket = $dir/run/\$name.\$pid.\$cctid.asok
# Bounded waits (docs/rbd.md): an op on an unreachable OSD or mon fails with ETIMEDOUT.
rados osd op timeout = $timeout
rados mon op timeout = $timeout
client mount timeout = $timeout
EOF
}

# wait_for WHAT SECONDS COMMAND...: runs COMMAND until it succeeds, for at most SECONDS.
wait_for() {
  local what=$1 seconds=$2 deadline=$((SECONDS + $2))
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "$what not ready after ${seconds}s (logs in $dir/log)"
    sleep 0.25
  done
}

osd_up() { ceph_cli osd dump -f json | grep -q '"up":1'; }

make_cluster() {
  local fsid uuid id
  stop_daemons
  rm -rf "$dir"
  mkdir -p "$dir/run" "$dir/log" "$dir/mon/mon.a" "$dir/osd/osd.0"
  fsid=$(cat /proc/sys/kernel/random/uuid)
  write_conf "$fsid"
  ceph-authtool --create-keyring "$dir/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool --create-keyring "$keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
  ceph-authtool "$dir/mon.keyring" --import-keyring "$keyring" >/dev/null
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$port]" "$dir/monmap" >/dev/null
  ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/mon.keyring"
  ceph-mon -c "$conf" -i a 2>>"$dir/log/stderr.log"
  wait_for "the mon on 127.0.0.1:$port" "$timeout" ceph_cli mon stat

  uuid=$(cat /proc/sys/kernel/random/uuid)
  id=$(ceph_cli osd new "$uuid")
  [ "$id" = 0 ] || die "ceph osd new gave osd.$id, expected osd.0"
  ceph-osd -c "$conf" -i 0 --mkfs --mkkey --osd-uuid "$uuid" --no-mon-config 2>>"$dir/log/mkfs.log"
  ceph_cli auth add osd.0 osd 'allow *' mon 'allow profile osd' mgr 'allow profile osd' \
    -i "$dir/osd/osd.0/keyring" >/dev/null 2>&1
  if [ "${CEPH_MGR:-0}" = 1 ]; then
    mkdir -p "$dir/mgr/mgr.x"
    ceph_cli auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' \
      -o "$dir/mgr/mgr.x/keyring"
  fi
  touch "$dir/.made"
}

start() {
  need_tools
  mkdir -p "$dir"
  exec 9>"$dir/.lock"
  flock -w "$((timeout * 12))" 9 || die "another start holds $dir/.lock"
  [ -f "$dir/.made" ] || make_cluster
  running mon.a || ceph-mon -c "$conf" -i a 2>>"$dir/log/stderr.log"
  wait_for "the mon on 127.0.0.1:$port" "$timeout" ceph_cli mon stat
  running osd.0 || ceph-osd -c "$conf" -i 0 2>>"$dir/log/stderr.log"
  [ "${CEPH_MGR:-0}" = 1 ] && { running mgr.x || ceph-mgr -c "$conf" -i x 2>>"$dir/log/stderr.log"; }
  wait_for "osd.0 (up in the osdmap)" "$((timeout * 3))" osd_up
  if [ ! -f "$dir/.ready" ]; then
    ceph_cli osd pool create "$pool" 8 8 >/dev/null 2>&1
    timeout "$((timeout * 3))" rbd -c "$conf" pool init "$pool"
    timeout "$((timeout * 3))" rbd -c "$conf" info "$pool/$image" >/dev/null 2>&1 ||
      timeout "$((timeout * 3))" rbd -c "$conf" create --size "$size" "$pool/$image"
    touch "$dir/.ready"
  fi
  # An I/O through librbd proves the pool's PGs are active (they peer again after an OSD restart).
  wait_for "pool $pool" "$((timeout * 3))" timeout "$timeout" rbd -c "$conf" info "$pool/$image"
  echo "CEPH_CONF=$conf"
  echo "CEPH_KEYRING=$keyring"
  echo "CEPH_CLIENT_ID=admin"
  echo "CEPH_POOL=$pool"
  echo "CEPH_IMAGE=$image"
}

status() {
  local rc=0 name
  for name in "${daemons[@]}"; do
    if running "$name"; then
      echo "$name running (pid $(cat "$(pidfile "$name")"))"
    else
      echo "$name stopped"
      rc=1
    fi
  done
  [ -f "$conf" ] && echo "CEPH_CONF=$conf"
  return $rc
}

case "${1:-}" in
start) start ;;
stop) stop_daemons ;;
status) status ;;
wipe)
  stop_daemons
  rm -rf "$dir"
  ;;
*) die "usage: $0 start|stop|status|wipe (CEPH_DIR=$dir)" ;;
esac
