#!/usr/bin/env bash
# The tcmufile demo, on a machine whose kernel has LIO + TCMU (run as root), or inside the
# kernel-vm through ./demo-vm.sh: serve a sparse temp image with `tcmufile serve`, look at the
# disk (lsblk, sg_inq, sg_readcap), make an ext4 filesystem on it, mount it, write and read a
# file, then stop the server with SIGTERM and check that nothing is left in configfs.
set -euo pipefail
app=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/tcmufile-demo.XXXXXX)
server=
cleanup() {
  mountpoint -q "$work/mnt" 2>/dev/null && umount "$work/mnt"
  [ -n "$server" ] && kill -TERM "$server" 2>/dev/null && wait "$server" || true
  rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

# From source by default (no build step); TCMUFILE_DIST=1 runs the tsup build instead.
if [ -n "${TCMUFILE_DIST:-}" ]; then
  tcmufile=(node "$app/dist/cli.js")
else
  tcmufile=(node --conditions=@tcmu/source --import tsx "$app/src/cli.ts")
fi

step "tcmufile doctor"
(cd "$app" && "${tcmufile[@]}" doctor)

step "tcmufile serve $work/disk.img --size 256M --name demo"
(cd "$app" && exec "${tcmufile[@]}" serve "$work/disk.img" --size 256M --name demo) \
  >"$work/stdout" 2>"$work/stderr" &
server=$!
for _ in $(seq 1200); do
  [ -s "$work/stdout" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$work/stderr" >&2; echo "demo: tcmufile serve failed" >&2; exit 1; }
  sleep 0.1
done
dev=$(head -n1 "$work/stdout")
[ -n "$dev" ] || { cat "$work/stderr" >&2; echo "demo: no device path after 120 s" >&2; exit 1; }
echo "device: $dev"
ls -l "$dev"

step "lsblk"
lsblk -o NAME,MAJ:MIN,SIZE,RO,TYPE,VENDOR,MODEL,SERIAL "$(readlink -f "$dev")" 2>/dev/null ||
  lsblk "$(readlink -f "$dev")"

step "sg_inq $dev"
sg_inq "$dev"

step "sg_readcap -l $dev"
sg_readcap -l "$dev"

step "mkfs.ext4, mount, write, read"
mkfs.ext4 -q -F "$dev"
mkdir -p "$work/mnt"
mount "$dev" "$work/mnt"
echo "hello from a Node.js block device" > "$work/mnt/hello.txt"
sync
df -h "$work/mnt"
umount "$work/mnt"
mount -o ro "$dev" "$work/mnt"
cat "$work/mnt/hello.txt"
umount "$work/mnt"

step "tcmufile list"
(cd "$app" && "${tcmufile[@]}" list)

step "kill -TERM $server (tcmufile serve)"
kill -TERM "$server"
status=0
wait "$server" || status=$?
server=
echo "tcmufile serve exited with $status"
echo "its log (JSON lines on stderr, because stderr is not a terminal):"
sed 's/^/  /' "$work/stderr"
[ "$status" = 0 ] || exit 1
[ ! -e "$dev" ] || { echo "demo: $dev is still there" >&2; exit 1; }

step "tcmufile list (after the stop)"
(cd "$app" && "${tcmufile[@]}" list)
echo
echo "demo: OK"
