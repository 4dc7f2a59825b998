#!/usr/bin/env node
// Guest half of `pnpm bench:kernel` (see ./run.mjs): runs as root inside one kernel-vm boot,
// serves a tmpfs image through ONE backstore on tcm_loop, runs the fio jobs, writes JSON.
//
//   node tools/bench-kernel/guest.mjs --backstore NAME --out FILE
//        [--runtime 10] [--size 256M] [--tcmufile source|dist]
//
// NAME is one of jobs.mjs `backstores`. Plain configfs writes for the baselines (fileio,
// tcmu-runner, c-minimal), on purpose: the reference setups must not depend on the code under
// test. tcmu-runner gets its own boot (a daemon that answered netlink once makes later `enable`
// writes wait for replies: /work/shared/vm/README.md, pitfall 5).
import { spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { backstores, jobs } from './jobs.mjs';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CFS = '/sys/kernel/config/target';
const IMAGE = '/tmp/bench-kernel.img';
const NAME = 'bench';
const WWN = 'naa.5001405be0c00001';
const NEXUS = 'naa.5001405be0c0000f';

const { values } = parseArgs({
  options: {
    backstore: { type: 'string' },
    out: { type: 'string' },
    runtime: { type: 'string', default: '10' },
    size: { type: 'string', default: String(256 << 20) },
    tcmufile: { type: 'string', default: 'source' },
  },
});
const backstore = values.backstore;
if (!backstores.includes(backstore ?? '') || !values.out) {
  console.error(
    `usage: guest.mjs --backstore ${backstores.join('|')} --out FILE [--runtime S] [--size BYTES]`,
  );
  process.exit(2);
}
const runtime = Number(values.runtime);
const size = Number(values.size);

const log = (message) => console.error(`bench-kernel[${backstore}]: ${message}`);
const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

function run(command, args) {
  const result = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (result.error) throw result.error;
  if (result.status !== 0)
    throw new Error(`${command} ${args.join(' ')} exited ${result.status}: ${result.stderr}`);
  return result.stdout;
}

/** The same bytes for every backstore: random data, so no one reads zero pages. */
function makeImage() {
  run('dd', ['if=/dev/urandom', `of=${IMAGE}`, 'bs=1M', `count=${size >> 20}`, 'status=none']);
}

function write(path, text) {
  writeFileSync(path, text);
}

function loopbackLun(backstoreDir) {
  const tpg = join(CFS, 'loopback', WWN, 'tpgt_1');
  mkdirSync(tpg, { recursive: true });
  write(join(tpg, 'nexus'), NEXUS); // nexus before the LUN, or the scan finds no I_T nexus
  mkdirSync(join(tpg, 'lun', 'lun_0'));
  symlinkSync(backstoreDir, join(tpg, 'lun', 'lun_0', NAME));
  return tpg;
}

function removeLoopbackLun() {
  const tpg = join(CFS, 'loopback', WWN, 'tpgt_1');
  if (!existsSync(tpg)) return;
  unlinkSync(join(tpg, 'lun', 'lun_0', NAME));
  rmdirSync(join(tpg, 'lun', 'lun_0'));
  write(join(tpg, 'nexus'), 'NULL');
  rmdirSync(tpg);
  rmdirSync(join(CFS, 'loopback', WWN));
}

/** The disk of LUN 0 of the TPG: address is "<host>:0:<tpgt>". */
async function waitForDisk(tpg) {
  const [host, , tpgt] = readFileSync(join(tpg, 'address'), 'utf8').trim().split(':');
  const dir = `/sys/bus/scsi/devices/${host}:0:${tpgt}:0/block`;
  for (let i = 0; i < 300; i++) {
    if (existsSync(dir)) {
      const [disk] = readdirSync(dir);
      if (disk && existsSync(`/dev/${disk}`)) return `/dev/${disk}`;
    }
    await sleep(100);
  }
  throw new Error(`no disk appeared under ${dir} within 30 s`);
}

async function setUpFileio() {
  const dir = join(CFS, 'core', 'fileio_1', NAME);
  mkdirSync(dir, { recursive: true });
  write(join(dir, 'control'), `fd_dev_name=${IMAGE},fd_dev_size=${size}`);
  write(join(dir, 'enable'), '1');
  const disk = await waitForDisk(loopbackLun(dir));
  const mode = /Mode: (\S+)/.exec(readFileSync(join(dir, 'info'), 'utf8'))?.[1];
  return {
    disk,
    details: { fileioMode: mode },
    async tearDown() {
      removeLoopbackLun();
      rmdirSync(dir);
      rmdirSync(dirname(dir));
    },
  };
}

/**
 * Debian's tcmu-runner serving one user backstore: `devConfig` picks its handler. It opens the
 * device at start-up; `settleMs` is how long it gets to hold the uio node before the LUN is linked.
 */
async function setUpTcmuRunner({ devConfig, devSize, settleMs, details, stopped = () => {} }) {
  const dir = join(CFS, 'core', 'user_1', NAME);
  mkdirSync(dir, { recursive: true });
  write(join(dir, 'control'), `dev_config=${devConfig},dev_size=${devSize},hw_block_size=512`);
  write(join(dir, 'enable'), '1');
  const runner = spawn('tcmu-runner', ['--tcmu-log-dir', '/tmp'], { stdio: ['ignore', 'ignore', 'inherit'] });
  // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format syntax
  const version = run('dpkg-query', ['-W', '-f=${Version}', 'tcmu-runner']);
  await sleep(settleMs);
  const disk = await waitForDisk(loopbackLun(dir));
  return {
    disk,
    details: { tcmuRunnerVersion: version, ...details },
    async tearDown() {
      removeLoopbackLun();
      runner.kill('SIGTERM');
      await new Promise((done) => runner.once('exit', done));
      rmdirSync(dir);
      stopped();
    },
  };
}

const RBD_BYTES = 128 << 20;

/**
 * A one-node Ceph cluster on the guest's loopback (tools/ceph/one-node.sh, data on tmpfs) with
 * an image `tcmu/bench` holding the same random bytes as the file backstores' image (its first
 * RBD_BYTES): reads must reach the OSD, not librbd's "no object yet" zeros.
 */
function startCeph() {
  const env = { ...process.env, CEPH_DIR: '/tmp/ceph-bench', CEPH_TIMEOUT: '60' };
  const script = join(repo, 'tools/ceph/one-node.sh');
  const started = spawnSync('bash', [script, 'start'], { env, encoding: 'utf8', maxBuffer: 16 << 20 });
  if (started.status !== 0) throw new Error(`one-node.sh start failed: ${started.stderr.slice(-2000)}`);
  const value = (key) => new RegExp(`^${key}=(.*)$`, 'm').exec(started.stdout)?.[1];
  const cluster = { conf: value('CEPH_CONF'), keyring: value('CEPH_KEYRING'), pool: value('CEPH_POOL') };
  run('truncate', ['-s', String(RBD_BYTES), IMAGE]);
  run('rbd', ['-c', cluster.conf, 'import', IMAGE, `${cluster.pool}/${NAME}`]);
  const ceph = run('ceph', ['--version']).trim();
  return {
    ...cluster,
    image: `${cluster.pool}/${NAME}`,
    ceph,
    stop: () => spawnSync('bash', [script, 'wipe'], { env, stdio: 'ignore' }),
  };
}

/** tcmu-runner with its rbd handler (handler_rbd.so) on the guest's cluster. */
function setUpTcmuRunnerRbd() {
  const ceph = startCeph();
  return setUpTcmuRunner({
    devConfig: `rbd/${ceph.image};conf=${ceph.conf}`,
    devSize: RBD_BYTES,
    settleMs: 5000, // it connects to the cluster and opens the image first
    details: { handler: 'rbd', ceph: ceph.ceph, imageBytes: RBD_BYTES },
    stopped: ceph.stop,
  });
}

/**
 * The limit row: ./minimal-consumer.c (single thread, serves each command in place with
 * preadv/pwritev on the ring's iovecs), compiled in the guest with the host's cc.
 */
async function setUpCMinimal() {
  const hba = join(CFS, 'core', 'user_1');
  const dir = join(hba, NAME);
  const config = `minimal/${IMAGE}`;
  mkdirSync(dir, { recursive: true });
  write(join(dir, 'control'), `dev_config=${config},dev_size=${size},hw_block_size=512`);
  write(join(dir, 'control'), 'nl_reply_supported=-1'); // no netlink replies awaited on enable
  write(join(dir, 'enable'), '1');
  const uioName = `tcm-user/1/${NAME}/${config}`;
  const uio = readdirSync('/sys/class/uio').find(
    (entry) => readFileSync(`/sys/class/uio/${entry}/name`, 'utf8').trim() === uioName,
  );
  if (!uio) throw new Error(`no /sys/class/uio/*/name is ${uioName}`);
  const mapSize = Number.parseInt(readFileSync(`/sys/class/uio/${uio}/maps/map0/size`, 'utf8'), 16);
  const binary = '/tmp/minimal-consumer';
  run('cc', ['-O2', '-Wall', '-Wextra', '-o', binary, join(repo, 'tools/bench-kernel/minimal-consumer.c')]);
  const args = [`/dev/${uio}`, String(mapSize), IMAGE, '512', String(size / 512)];
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((done) => child.once('exit', (code, signal) => done({ code, signal })));
  // It prints "ready" once the ring is mapped: link the LUN only then (the scan starts at once).
  await new Promise((done, fail) => {
    child.stdout.setEncoding('utf8');
    child.stdout.once('data', done);
    exited.then(({ code, signal }) => fail(new Error(`minimal-consumer exited (${code ?? signal})`)));
  });
  const disk = await waitForDisk(loopbackLun(dir));
  return {
    disk,
    details: { consumer: 'minimal-consumer.c (cc -O2, single thread, in place)', mapBytes: mapSize },
    async tearDown() {
      removeLoopbackLun();
      child.kill('SIGTERM');
      const { code, signal } = await exited;
      if (code !== 0) throw new Error(`minimal-consumer exited ${code ?? signal} on SIGTERM`);
      rmdirSync(dir);
      rmdirSync(hba);
    },
  };
}

/** `tcmufile serve`; `io` adds `--io <io>`, without it the CLI's default is measured; `rbd` serves the guest cluster's image. */
async function setUpTcmufile(io, rbd) {
  const fromDist = values.tcmufile === 'dist';
  const cli = join(repo, 'apps/tcmufile', fromDist ? 'dist/cli.js' : 'src/cli.ts');
  const nodeArgs = fromDist ? [cli] : ['--conditions=@tcmu/source', '--import', 'tsx', cli];
  const source = rbd ? [`rbd:${rbd.image}`, '--ceph-conf', rbd.conf, '--keyring', rbd.keyring] : [IMAGE];
  const args = [
    ...nodeArgs,
    'serve',
    ...source,
    '--name',
    NAME,
    '--block-size',
    '512',
    '--dir',
    '/dev/tcmufile',
  ];
  if (io) args.push('--io', io);
  const child = spawn(process.execPath, args, { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  const exited = new Promise((done) => child.once('exit', (code, signal) => done({ code, signal })));
  const disk = await new Promise((done, fail) => {
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const line = out.split('\n');
      if (line.length > 1) done(line[0]);
    });
    exited.then(({ code, signal }) =>
      fail(new Error(`tcmufile exited (${code ?? signal}) before ready:\n${stderr}`)),
    );
    setTimeout(() => fail(new Error(`tcmufile printed no device within 120 s:\n${stderr}`)), 120_000).unref();
  });
  return {
    disk,
    details: {
      tcmufile: fromDist ? 'dist (tsup build)' : 'source (tsx)',
      node: process.version,
      ...(rbd
        ? { ceph: rbd.ceph, imageBytes: RBD_BYTES }
        : { io: io ? `--io ${io}` : 'no --io (CLI default)' }),
    },
    async tearDown() {
      child.kill('SIGTERM');
      const { code, signal } = await exited;
      if (code !== 0) throw new Error(`tcmufile exited ${code ?? signal} on SIGTERM:\n${stderr}`);
      const leftovers = readdirSync(join(CFS, 'core')).filter((hba) => hba.startsWith('user_'));
      if (leftovers.length > 0) throw new Error(`tcmufile left ${leftovers.join(', ')} in configfs`);
      rbd?.stop();
    },
  };
}

function fio(disk, job) {
  const output = run('fio', [
    `--name=${job.name}`,
    `--filename=${disk}`,
    `--rw=${job.rw}`,
    `--bs=${job.bs}`,
    `--iodepth=${job.iodepth}`,
    '--direct=1',
    '--ioengine=libaio',
    '--numjobs=1',
    `--runtime=${runtime}`,
    '--ramp_time=1',
    '--time_based',
    '--randrepeat=0',
    '--group_reporting',
    '--output-format=json',
  ]);
  const result = JSON.parse(output.slice(output.indexOf('{')));
  const side = job.rw.includes('read') ? result.jobs[0].read : result.jobs[0].write;
  return {
    ...job,
    iops: side.iops,
    bytesPerSecond: side.bw_bytes,
    clatMeanUs: side.clat_ns.mean / 1000,
    clatP99Us: (side.clat_ns.percentile?.['99.000000'] ?? 0) / 1000,
    errors: result.jobs[0].error,
  };
}

const setUp = {
  fileio: setUpFileio,
  // Debian's tcmu-runner has no file handler; qcow serves a non-qcow image raw, 512-byte blocks only.
  'tcmu-runner': () =>
    setUpTcmuRunner({
      devConfig: `qcow/${IMAGE}`,
      devSize: size,
      settleMs: 2000,
      details: { handler: 'qcow (raw image)' },
    }),
  'c-minimal': setUpCMinimal,
  tcmufile: () => setUpTcmufile(),
  'tcmufile-sync': () => setUpTcmufile('sync'),
  'tcmu-runner-rbd': setUpTcmuRunnerRbd,
  'tcmufile-rbd': () => setUpTcmufile(undefined, startCeph()),
}[backstore];
log(`preparing a ${size >> 20} MiB image on tmpfs`);
makeImage();
const served = await setUp();
log(`disk ${served.disk}`);
const results = [];
for (const job of jobs) {
  const result = fio(served.disk, job);
  log(`${job.name}: ${Math.round(result.iops)} IOPS, ${(result.bytesPerSecond / 1e6).toFixed(1)} MB/s`);
  results.push(result);
}
await served.tearDown();
const report = {
  backstore,
  date: new Date().toISOString(),
  kernel: run('uname', ['-r']).trim(),
  fio: run('fio', ['--version']).trim(),
  cpus: Number(run('nproc', []).trim()),
  imageBytes: size,
  blockSize: 512,
  runtimeSeconds: runtime,
  ...served.details,
  jobs: results,
};
mkdirSync(dirname(values.out), { recursive: true });
writeFileSync(values.out, `${JSON.stringify(report, null, 2)}\n`);
log(`wrote ${values.out}`);
