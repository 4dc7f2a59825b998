#!/usr/bin/env bash
# First of the two set-up commands (run as root on Debian/Ubuntu): the system
# packages the build, the tests and the kernel VM need, and pnpm itself.
# Idempotent; the second command is `pnpm install && pnpm build`.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
pkgs=(g++ make python3 qemu-system-x86 busybox-static kmod file sg3-utils fio libiscsi-bin e2fsprogs tcmu-runner)
# Ceph, for @tcmu/rbd: librbd-dev builds its addon (librbd1 and librados2 come with it), and the
# daemons and CLIs run the one-node cluster of its tests (tools/ceph/one-node.sh, docs/rbd.md).
pkgs+=(ceph-mon ceph-osd ceph-mgr ceph-common librbd-dev)
# Node's headers for the one source build of @tcmu/ring's addon (the workspace has no prebuild),
# found the way its install script finds them: beside node, else libnode-dev's /usr/include/node.
node packages/ring/scripts/headers.mjs >/dev/null 2>&1 || pkgs+=(libnode-dev)
need=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "bootstrap: apt-get install ${need[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Still none (libnode-dev is for another Node major): say so now, in the installer's words.
node packages/ring/scripts/headers.mjs >/dev/null || echo "bootstrap: pnpm install cannot build @tcmu/ring without them"
want=$(node -p "require('./package.json').packageManager.split('@')[1]")
if [ "$(pnpm --version 2>/dev/null || true)" != "$want" ]; then
  echo "bootstrap: npm install -g pnpm@$want"
  npm install -g "pnpm@$want" >/dev/null
fi
echo "bootstrap: pnpm $(pnpm --version), node $(node --version); next: pnpm install && pnpm build"
