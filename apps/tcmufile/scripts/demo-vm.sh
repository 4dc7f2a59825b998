#!/usr/bin/env bash
# Runs ./demo.sh inside the project's kernel-vm (Debian's stock kernel with LIO under qemu), for
# hosts whose kernel lacks target_core_user/tcm_loop or where you'd rather not load them.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$repo"
exec tools/kernel-vm/vm --timeout 600 -- bash apps/tcmufile/scripts/demo.sh
