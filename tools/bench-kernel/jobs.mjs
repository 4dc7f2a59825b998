// The fio jobs of `pnpm bench:kernel`, shared by the guest runner and the host report.
export const jobs = [
  { name: '4k-randread-qd1', rw: 'randread', bs: '4k', iodepth: 1, random: true },
  { name: '4k-randread-qd16', rw: 'randread', bs: '4k', iodepth: 16, random: true },
  { name: '4k-randwrite-qd1', rw: 'randwrite', bs: '4k', iodepth: 1, random: true },
  { name: '4k-randwrite-qd16', rw: 'randwrite', bs: '4k', iodepth: 16, random: true },
  { name: '128k-read-qd16', rw: 'read', bs: '128k', iodepth: 16, random: false },
  { name: '128k-write-qd16', rw: 'write', bs: '128k', iodepth: 16, random: false },
];

/**
 * Backstores in table order: the references first (the kernel's fileio, tcmu-runner, and
 * c-minimal, the least a TCMU consumer can do: ./minimal-consumer.c), then tcmufile with the
 * CLI's default I/O mode and with `--io sync`; then the RBD pair on a one-node Ceph cluster in
 * the guest (issue 13): tcmu-runner's rbd handler and `tcmufile serve rbd:`.
 */
export const backstores = [
  'fileio',
  'tcmu-runner',
  'c-minimal',
  'tcmufile',
  'tcmufile-sync',
  'tcmu-runner-rbd',
  'tcmufile-rbd',
];

/** The backstores of the RBD section (`pnpm bench:kernel --only tcmu-runner-rbd,tcmufile-rbd`). */
export const rbdBackstores = ['tcmu-runner-rbd', 'tcmufile-rbd'];
