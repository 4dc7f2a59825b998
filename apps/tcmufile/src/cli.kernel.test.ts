// `tcmufile` as a user runs it, on the real kernel (kernel-vm): a spawned process, the device
// path read from its stdout, the disk used with dd, then SIGTERM. Runs as root in the VM.
import { type ChildProcessByStdio, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from './errors.js';

const appDir = fileURLToPath(new URL('..', import.meta.url));
const cli = join(appDir, 'src', 'cli.ts');
const nodeArgs = ['--conditions=@tcmu/source', '--import', 'tsx', cli];
const CONFIGFS = '/sys/kernel/config/target';

type Child = ChildProcessByStdio<null, Readable, Readable>;

interface Running {
  child: Child;
  stdout: string[];
  stderr: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children: Child[] = [];

function start(args: string[]): Running {
  const child = spawn(process.execPath, [...nodeArgs, ...args], {
    cwd: appDir,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  const stdout: string[] = [];
  const stderr: string[] = [];
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => stdout.push(chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => stderr.push(chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
    child.once('exit', (code, signal) => done({ code, signal })),
  );
  return { child, stdout, stderr, exited };
}

/** The first stdout line (the device path), or the exit if the process dies first. */
async function firstLine(running: Running, timeoutMs = 600_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const text = running.stdout.join('');
    if (text.includes('\n')) return text.slice(0, text.indexOf('\n'));
    if (running.child.exitCode !== null) break;
    await new Promise((done) => setTimeout(done, 50));
  }
  throw new Error(`no device path on stdout (exit ${running.child.exitCode}):\n${running.stderr.join('')}`);
}

/** Runs the CLI to completion. */
async function runToExit(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const running = start(args);
  const { code } = await running.exited;
  return { code, stdout: running.stdout.join(''), stderr: running.stderr.join('') };
}

/** Every configfs object whose name mentions `name`, and its uio devices: must be empty after a stop. */
function leftovers(name: string): string[] {
  const found: string[] = [];
  const core = join(CONFIGFS, 'core');
  for (const hba of existsSync(core) ? readdirSync(core) : []) {
    if (!hba.startsWith('user_')) continue;
    for (const entry of readdirSync(join(core, hba))) {
      if (entry === name) found.push(`core/${hba}/${entry}`);
    }
  }
  for (const uio of existsSync('/sys/class/uio') ? readdirSync('/sys/class/uio') : []) {
    const uioName = readFileSync(`/sys/class/uio/${uio}/name`, 'utf8').trim();
    if (uioName.split('/')[2] === name) found.push(`uio ${uio}: ${uioName}`);
  }
  return found;
}

function userHbas(): string[] {
  const core = join(CONFIGFS, 'core');
  return existsSync(core) ? readdirSync(core).filter((entry) => entry.startsWith('user_')) : [];
}

function loopbackTargets(): string[] {
  const loopback = join(CONFIGFS, 'loopback');
  return existsSync(loopback) ? readdirSync(loopback).filter((entry) => entry.startsWith('naa.')) : [];
}

function jsonLogs(running: Running): Array<Record<string, unknown>> {
  return running.stderr
    .join('')
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tcmufile-kt-'));
});
afterEach(async () => {
  // A failed test must not leave a server behind for the next kernel test file.
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await new Promise((done) => child.once('exit', done));
    }
  }
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

// Each CLI start loads the sources through tsx on an emulated CPU: allow minutes per test.
describe('tcmufile on the real kernel', { timeout: 900_000 }, () => {
  it('doctor finds this VM ready', async () => {
    const { code, stdout } = await runToExit(['doctor']);
    expect(stdout).toContain('Ready');
    expect(code).toBe(0);
  });

  it('serve: prints the node, the disk works with dd, SIGTERM exits 0 and leaves nothing', async () => {
    const image = join(dir, 'disk0.img');
    const targetsBefore = loopbackTargets();
    const hbasBefore = userHbas();
    const running = start(['serve', image, '--size', '64M', '--name', 'tcmufile-kt0']);
    const path = await firstLine(running);
    expect(path).toBe('/dev/tcmufile/tcmufile-kt0');
    expect(statSync(path).isBlockDevice()).toBe(true);
    expect(execFileSync('blockdev', ['--getsize64', path], { encoding: 'utf8' }).trim()).toBe(
      String(64 << 20),
    );
    expect(statSync(image).size).toBe(64 << 20);

    // O_DIRECT write of a random pattern at 1 MiB, read back through the disk and from the image.
    const pattern = randomBytes(4 << 20);
    const patternFile = join(dir, 'pattern');
    await writeFile(patternFile, pattern);
    const dd = (args: string[]) => execFileSync('dd', [...args, 'bs=1M', 'status=none'], { stdio: 'pipe' });
    dd([`if=${patternFile}`, `of=${path}`, 'oflag=direct', 'seek=1', 'conv=fsync']);
    dd([`if=${path}`, `of=${join(dir, 'readback')}`, 'iflag=direct', 'skip=1', 'count=4']);
    expect((await readFile(join(dir, 'readback'))).equals(pattern)).toBe(true);

    // The server is listed as ours while it runs.
    const list = await runToExit(['list']);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`tcmufile-kt0 .*\\[ours, pid ${running.child.pid}\\]`));

    running.child.kill('SIGTERM');
    const { code, signal } = await running.exited;
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    const logs = jsonLogs(running);
    expect(logs.some((record) => String(record.msg).startsWith('SIGTERM: stopping tcmufile-kt0'))).toBe(true);
    expect(logs.every((record) => (record.level as number) < 50)).toBe(true);

    expect(leftovers('tcmufile-kt0')).toEqual([]);
    expect(loopbackTargets()).toEqual(targetsBefore);
    expect(userHbas()).toEqual(hbasBefore); // no empty user_N left behind
    expect(existsSync(path)).toBe(false);
    const image1M = (await readFile(image)).subarray(1 << 20, 5 << 20);
    expect(image1M.equals(pattern)).toBe(true);
  });

  it('on a terminal: a live status line redrawn in place, and a clean stop', async () => {
    // script(1) gives the server a pseudo-terminal; -e passes the server's exit status through.
    const quote = (arg: string) => `'${arg.replaceAll("'", "'\\''")}'`;
    const serverArgs = [...nodeArgs, 'serve', join(dir, 'tty.img'), '--size', '8M', '--name', 'tcmufile-kt3'];
    // exec: script runs the command through a shell, which must become the server.
    const command = `exec ${[process.execPath, ...serverArgs].map(quote).join(' ')}`;
    const script = spawn('script', ['-qfec', command, '/dev/null'], {
      cwd: appDir,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let output = '';
    script.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      output += chunk;
    });
    const exited = new Promise<number | null>((done) => script.once('exit', (code) => done(code)));
    const waitFor = async (pattern: RegExp) => {
      for (let i = 0; i < 6000 && !pattern.test(output); i++)
        await new Promise((done) => setTimeout(done, 100));
      expect(output).toMatch(pattern);
    };
    await waitFor(/\/dev\/tcmufile\/tcmufile-kt3\r?\n/);
    const quiet = { stdio: 'pipe' } as const;
    execFileSync(
      'dd',
      ['if=/dev/tcmufile/tcmufile-kt3', 'of=/dev/null', 'bs=64k', 'count=64', 'iflag=direct'],
      quiet,
    );
    const statusLine =
      // biome-ignore lint/suspicious/noControlCharactersInRegex: ESC [ K is what the live line writes
      /\r\/dev\/sd[a-z]+ tcmufile-kt3 \| [\d.]+k? IOPS \| read [\d.]+ MB\/s \| write [\d.]+ MB\/s \| in flight \d+ \| errors 0\x1b\[K/;
    await waitFor(statusLine);
    // The server is script's child: signal it, not script.
    const serverPid = Number(
      readFileSync(`/proc/${script.pid}/task/${script.pid}/children`, 'utf8').trim().split(' ')[0],
    );
    expect(serverPid).toBeGreaterThan(0);
    process.kill(serverPid, 'SIGTERM');
    expect(await exited).toBe(0);
    script.stdin.end();
    expect(output).toMatch(/SIGTERM: stopping tcmufile-kt3/);
    expect(output).not.toMatch(/^\{"level"/m); // human lines on a terminal, not JSON
    expect(leftovers('tcmufile-kt3')).toEqual([]);
  });

  it('a name in use: the second serve exits 75 and the first keeps serving', async () => {
    const first = start(['serve', join(dir, 'a.img'), '--size', '8M', '--name', 'tcmufile-kt1']);
    const path = await firstLine(first);
    const second = await runToExit(['serve', join(dir, 'b.img'), '--size', '8M', '--name', 'tcmufile-kt1']);
    expect(second.code).toBe(ExitCode.inUse);
    expect(second.stdout).toBe('');
    expect(second.stderr).toMatch(/tcmufile-kt1/);
    expect(lstatSync(path).isBlockDevice() || lstatSync(path).isSymbolicLink()).toBe(true);
    expect(execFileSync('blockdev', ['--getsize64', realpathSync(path)], { encoding: 'utf8' }).trim()).toBe(
      String(8 << 20),
    );
    first.child.kill('SIGTERM');
    expect((await first.exited).code).toBe(0);
    expect(leftovers('tcmufile-kt1')).toEqual([]);
  });

  it('refuses an image smaller than --size (65) and an unreadable image (66), touching nothing', async () => {
    const small = join(dir, 'small.img');
    await writeFile(small, Buffer.alloc(4096));
    const tooSmall = await runToExit(['serve', small, '--size', '1M', '--name', 'tcmufile-kt2']);
    expect(tooSmall.code).toBe(ExitCode.badImage);
    expect(tooSmall.stderr).toMatch(/smaller than --size/);
    const missing = await runToExit(['serve', join(dir, 'nope', 'x.img'), '--name', 'tcmufile-kt2']);
    expect(missing.code).toBe(ExitCode.noImage);
    const badSize = await runToExit(['serve', small, '--size', '1000']);
    expect(badSize.code).toBe(ExitCode.usage);
    expect(leftovers('tcmufile-kt2')).toEqual([]);
  });
});

/** bash -euo pipefail; throws with the output on a non-zero exit. */
function sh(script: string, timeoutMs = 600_000): string {
  return execFileSync('bash', ['-euo', 'pipefail', '-c', script], { encoding: 'utf8', timeout: timeoutMs });
}

/** configfs path (relative to target/) of the user backstore `name`. */
function backstoreOf(name: string): string | undefined {
  for (const hba of userHbas()) {
    if (existsSync(join(CONFIGFS, 'core', hba, name))) return `core/${hba}/${name}`;
  }
  return undefined;
}

/** The pid in the ownership marker of `name`'s backstore (undefined without one). */
function markerPid(name: string): number | undefined {
  const rel = backstoreOf(name);
  if (rel === undefined) return undefined;
  try {
    return JSON.parse(readFileSync(`/run/tcmu-node/owners/${encodeURIComponent(rel)}.json`, 'utf8')).pid;
  } catch {
    return undefined;
  }
}

async function killed(running: Running): Promise<void> {
  running.child.kill('SIGKILL');
  await running.exited;
}

describe('restart and reattach on the real kernel', { timeout: 1_800_000 }, () => {
  it('SIGKILL during fio --verify on ext4 over a file image: the restarted serve takes over the same disk; fio, fsck and synced writes hold', async () => {
    const name = 'tcmufile-kt-re1';
    const image = join(dir, 're1.img');
    const mnt = join(dir, 'mnt-re1');
    // A long command timeout: commands wait in the ring through the restart instead of failing.
    const args = ['serve', image, '--size', '96M', '--name', name, '--command-timeout', '300'];
    const first = start(args);
    const node = await firstLine(first);
    const disk = realpathSync(node);
    // ext4 on the first 64 MiB; the last 32 MiB hold raw synced data to find in the image later.
    sh(`mkfs.ext4 -q -F ${disk} 64M && mkdir -p ${mnt} && mount ${disk} ${mnt}`);
    const synced = randomBytes(4 << 20);
    await writeFile(join(dir, 're1-synced'), synced);
    sh(`dd if=${dir}/re1-synced of=${disk} bs=1M seek=80 oflag=direct conv=fsync status=none`);
    const fio = spawn(
      'fio',
      [
        '--name=verify',
        `--filename=${mnt}/fio.dat`,
        '--size=24M',
        '--rw=randwrite',
        '--bs=4k',
        '--direct=1',
        '--ioengine=libaio',
        '--iodepth=8',
        '--verify=crc32c',
        '--do_verify=1',
        '--verify_fatal=1',
        '--output-format=json',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let fioOut = '';
    fio.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      fioOut += chunk;
    });
    const fioDone = new Promise<number | null>((done) => fio.once('exit', done));
    await new Promise((done) => setTimeout(done, 3000)); // fio is writing
    await killed(first);

    // Acknowledged after a completed SYNCHRONIZE CACHE (conv=fsync) before the kill: in the image.
    const fd = readFileSync(image);
    expect(Buffer.compare(fd.subarray(80 << 20, (80 << 20) + synced.length), synced)).toBe(0);
    expect(existsSync(node)).toBe(true); // the disk and its node outlive the process

    const second = start(args);
    expect(await firstLine(second)).toBe(node);
    expect(realpathSync(node)).toBe(disk);
    expect(await fioDone).toBe(0);
    const job = JSON.parse(fioOut.slice(fioOut.indexOf('{'))).jobs[0];
    expect(job.error).toBe(0);
    expect(job.read.io_bytes).toBe(24 << 20); // the verify pass read it all back
    expect(jsonLogs(second).some((r) => String(r.msg).startsWith('serving again'))).toBe(true);
    sh(`umount ${mnt} && fsck.ext4 -fn ${disk}`);
    second.child.kill('SIGTERM');
    expect((await second.exited).code).toBe(0);
    expect(leftovers(name)).toEqual([]);
    expect(existsSync(node)).toBe(false);
  });

  it('killed twice in a row, then during the takeover: the next serve still takes over, data intact', async () => {
    const name = 'tcmufile-kt-re2';
    const image = join(dir, 're2.img');
    const args = ['serve', image, '--size', '16M', '--name', name];
    const first = start(args);
    const node = await firstLine(first);
    const disk = realpathSync(node);
    const data = randomBytes(1 << 20);
    await writeFile(join(dir, 're2-data'), data);
    sh(`dd if=${dir}/re2-data of=${disk} bs=1M oflag=direct conv=fsync status=none`);
    await killed(first);
    const second = start(args);
    expect(await firstLine(second)).toBe(node);
    await killed(second);
    // The third is killed as soon as it has taken the ownership over (mid-takeover).
    const third = start(args);
    const deadline = Date.now() + 600_000;
    while (markerPid(name) !== third.child.pid && Date.now() < deadline && third.child.exitCode === null) {
      await new Promise((done) => setTimeout(done, 5));
    }
    expect(markerPid(name)).toBe(third.child.pid);
    await killed(third);
    const fourth = start(args);
    expect(await firstLine(fourth)).toBe(node);
    expect(realpathSync(node)).toBe(disk);
    sh(`dd if=${disk} of=${dir}/re2-back bs=1M count=1 iflag=direct status=none`);
    expect(Buffer.compare(readFileSync(join(dir, 're2-back')), data)).toBe(0);
    fourth.child.kill('SIGTERM');
    expect((await fourth.exited).code).toBe(0);
    expect(leftovers(name)).toEqual([]);
  });

  it('stop --keep leaves a mounted filesystem in place; I/O waits through the gap; serve again takes over', async () => {
    const name = 'tcmufile-kt-re3';
    const image = join(dir, 're3.img');
    const mnt = join(dir, 'mnt-re3');
    const args = ['serve', image, '--size', '64M', '--name', name, '--command-timeout', '300'];
    const first = start(args);
    const node = await firstLine(first);
    const disk = realpathSync(node);
    sh(
      `mkfs.ext4 -q -F ${disk} && mkdir -p ${mnt} && mount ${disk} ${mnt} && echo before > ${mnt}/a && sync`,
    );
    const stop = await runToExit(['stop', name, '--keep']);
    expect(stop.code).toBe(0);
    expect(stop.stdout).toBe(`${name} left in place\n`);
    expect((await first.exited).code).toBe(0);
    expect(existsSync(node)).toBe(true);
    expect(readFileSync('/proc/mounts', 'utf8')).toContain(mnt);
    // A write during the gap blocks in the kernel until the next process serves it.
    const writer = spawn('bash', ['-c', `echo during > ${mnt}/b && sync ${mnt}/b`], { stdio: 'ignore' });
    const written = new Promise<number | null>((done) => writer.once('exit', done));
    await new Promise((done) => setTimeout(done, 1000));
    expect(writer.exitCode).toBe(null);
    const second = start(args);
    expect(await firstLine(second)).toBe(node);
    expect(await written).toBe(0);
    expect(readFileSync(join(mnt, 'a'), 'utf8')).toBe('before\n');
    expect(readFileSync(join(mnt, 'b'), 'utf8')).toBe('during\n');
    sh(`umount ${mnt} && fsck.ext4 -fn ${disk}`);
    const end = await runToExit(['stop', name]);
    expect(end.code).toBe(0);
    expect((await second.exited).code).toBe(0);
    expect(leftovers(name)).toEqual([]);
  });

  it('cleanup of a killed serve with writes in flight does not wait for its command timeout, and removes its node', async () => {
    const name = 'tcmufile-kt-re5';
    // 600 s: an unlink that waited on the dead ring would show.
    const first = start([
      'serve',
      join(dir, 're5.img'),
      '--size',
      '32M',
      '--name',
      name,
      '--command-timeout',
      '600',
    ]);
    const node = await firstLine(first);
    const disk = realpathSync(node);
    const writer = spawn('dd', ['if=/dev/zero', `of=${disk}`, 'bs=64k', 'count=100000', 'oflag=direct'], {
      stdio: 'ignore',
    });
    await new Promise((done) => setTimeout(done, 1500));
    await killed(first);
    const started = Date.now();
    const cleanup = await runToExit(['cleanup']);
    const seconds = (Date.now() - started) / 1000;
    writer.kill('SIGKILL');
    console.log(
      `cleanup of a dead ring with writes in flight: ${seconds.toFixed(1)} s (command timeout 600 s)`,
    );
    expect(cleanup.code).toBe(0);
    expect(cleanup.stdout).toContain(`${node} (its device node)`);
    expect(seconds).toBeLessThan(300); // a bound on hanging, not a speed figure: the timeout is 600 s
    expect(leftovers(name)).toEqual([]);
    expect(existsSync(node)).toBe(false);
  });

  it('one image is never served twice: a second serve of it under another name exits 75 (the image lock)', async () => {
    const image = join(dir, 're6.img');
    const first = start(['serve', image, '--size', '8M', '--name', 'tcmufile-kt-re6a']);
    await firstLine(first);
    const second = await runToExit(['serve', image, '--name', 'tcmufile-kt-re6b']);
    expect(second.code).toBe(ExitCode.inUse);
    expect(second.stderr).toMatch(/in use by another server/);
    expect(leftovers('tcmufile-kt-re6b')).toEqual([]);
    first.child.kill('SIGTERM');
    expect((await first.exited).code).toBe(0);
  });

  it('another image under a dead serve’s name is refused (75), naming what differs, and the disk stays', async () => {
    const name = 'tcmufile-kt-re4';
    const first = start(['serve', join(dir, 're4a.img'), '--size', '8M', '--name', name]);
    const node = await firstLine(first);
    await killed(first);
    const other = await runToExit(['serve', join(dir, 're4b.img'), '--size', '8M', '--name', name]);
    expect(other.code).toBe(ExitCode.inUse);
    expect(other.stderr).toMatch(/serves something else: source/);
    expect(existsSync(node)).toBe(true);
    const again = start(['serve', join(dir, 're4a.img'), '--size', '8M', '--name', name]);
    expect(await firstLine(again)).toBe(node);
    again.child.kill('SIGTERM');
    expect((await again.exited).code).toBe(0);
    expect(leftovers(name)).toEqual([]);
  });
});

/** One sample of a Prometheus text exposition ("name{labels} value"); 0 when absent. */
function promSample(text: string, name: string, labels: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('the service features on the real kernel', { timeout: 900_000 }, () => {
  it('serve --metrics: a scrape during fio sees the counters move, and after it they match what fio did; status --json agrees', async () => {
    const name = 'tcmufile-kt-svc';
    const controlDir = join(dir, 'run');
    const url = 'http://127.0.0.1:19464/metrics';
    const running = start([
      'serve',
      join(dir, 'svc.img'),
      '--size',
      '32M',
      '--name',
      name,
      '--metrics',
      '127.0.0.1:19464',
      '--control-dir',
      controlDir,
    ]);
    const node = await firstLine(running);
    const scrape = async () => {
      const response = await fetch(url);
      expect(response.status).toBe(200);
      return response.text();
    };
    const labels = (group: string) => `device="${name}",group="${group}",status="good"`;
    // The kernel's partition scan reads the disk once it appears: let it finish first.
    await new Promise((done) => setTimeout(done, 2000));
    const before = await scrape();
    expect(promSample(before, 'tcmu_device_state', `device="${name}",state="ready"`)).toBe(1);
    expect(before).toContain(`tcmu_ring_full_total{device="${name}"}`);

    const fio = spawn(
      'fio',
      [
        '--name=metrics',
        `--filename=${node}`,
        '--rw=randrw',
        '--bs=4k',
        '--size=16M',
        '--direct=1',
        '--ioengine=libaio',
        '--iodepth=4',
        '--runtime=6',
        '--time_based',
        '--output-format=json',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let fioOut = '';
    fio.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      fioOut += chunk;
    });
    const fioExit = new Promise<number | null>((done) => fio.once('exit', done));
    // During the run: the read and write counts grow between two scrapes.
    let during = before;
    const deadline = Date.now() + 60_000;
    while (promSample(during, 'tcmu_commands_total', labels('write')) === 0 && Date.now() < deadline) {
      await new Promise((done) => setTimeout(done, 250));
      during = await scrape();
    }
    await new Promise((done) => setTimeout(done, 1000));
    const later = await scrape();
    expect(fio.exitCode).toBeNull(); // both scrapes were during the I/O
    expect(promSample(later, 'tcmu_commands_total', labels('write'))).toBeGreaterThan(
      promSample(during, 'tcmu_commands_total', labels('write')),
    );
    expect(await fioExit).toBe(0);

    const after = await scrape();
    const job = (
      JSON.parse(fioOut.slice(fioOut.indexOf('{'))) as {
        jobs: Array<{
          read: { io_bytes: number; total_ios: number };
          write: { io_bytes: number; total_ios: number };
        }>;
      }
    ).jobs[0]!;
    const delta = (metric: string, l: string) => promSample(after, metric, l) - promSample(before, metric, l);
    // Bytes are exact: O_DIRECT, nothing else used the disk meanwhile.
    expect(delta('tcmu_read_bytes_total', `device="${name}"`)).toBe(job.read.io_bytes);
    expect(delta('tcmu_written_bytes_total', `device="${name}"`)).toBe(job.write.io_bytes);
    // status --json over the control socket: the same counters, and the disk behind the node.
    const status = await runToExit(['status', name, '--json', '--control-dir', controlDir]);
    expect(status.code, status.stderr).toBe(0);
    const report = (JSON.parse(status.stdout) as Array<Record<string, unknown>>)[0]!;
    expect(report).toMatchObject({
      name,
      state: 'ready',
      node,
      disk: expect.stringMatching(/^\/dev\/sd[a-z]+$/),
    });
    // Commands: one per fio I/O, less the few the block layer merged (bytes stay exact).
    const reads = delta('tcmu_commands_total', labels('read'));
    const writes = delta('tcmu_commands_total', labels('write'));
    for (const [counted, ios] of [
      [reads, job.read.total_ios],
      [writes, job.write.total_ios],
    ] as const) {
      expect(ios).toBeGreaterThan(100);
      expect(counted).toBeLessThanOrEqual(ios);
      expect(counted).toBeGreaterThanOrEqual(Math.floor(ios * 0.95));
    }
    expect(promSample(after, 'tcmu_commands_in_flight', `device="${name}"`)).toBe(0);
    expect(
      promSample(after, 'tcmu_command_latency_seconds_count', `device="${name}"`),
    ).toBeGreaterThanOrEqual(reads + writes);

    expect(report.bytesWritten).toBe(promSample(after, 'tcmu_written_bytes_total', `device="${name}"`));
    expect(Number(report.commands)).toBeGreaterThanOrEqual(reads + writes);
    expect(report.latency).toMatchObject({ p50Ms: expect.any(Number), p99Ms: expect.any(Number) });

    running.child.kill('SIGTERM');
    expect((await running.exited).code).toBe(0);
    await expect(fetch(url)).rejects.toThrow();
    expect(existsSync(join(controlDir, `${name}.sock`))).toBe(false);
    expect(leftovers(name)).toEqual([]);
  });

  it('serve --run: mkfs.ext4 and fsck on $DISK, the serve exits with the command status and leaves nothing', async () => {
    const name = 'tcmufile-kt-run';
    const image = join(dir, 'run.img');
    const ok = await runToExit([
      'serve',
      image,
      '--size',
      '32M',
      '--name',
      name,
      '--run',
      'test "$NODE" = /dev/tcmufile/tcmufile-kt-run && mkfs.ext4 -F -q "$DISK" && fsck.ext4 -fn "$DISK"',
    ]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(leftovers(name)).toEqual([]);
    expect(existsSync(`/dev/tcmufile/${name}`)).toBe(false);
    // The file system is in the image: a second serve's command sees it.
    const again = await runToExit([
      'serve',
      image,
      '--name',
      name,
      '--run',
      'blkid -o value -s TYPE "$DISK"; exit 7',
    ]);
    expect(again.code, again.stderr).toBe(7);
    expect(again.stdout).toContain('ext4');
    expect(leftovers(name)).toEqual([]);
  });
});

describe('online resize of a mounted file system on the real kernel', { timeout: 900_000 }, () => {
  it('tcmufile resize grows the disk under a mounted ext4; resize2fs grows it online, the data and fsck hold', async () => {
    const name = 'tcmufile-kt-grow';
    const controlDir = join(dir, 'run-grow');
    const mnt = join(dir, 'mnt-grow');
    const running = start([
      'serve',
      join(dir, 'grow.img'),
      '--size',
      '48M',
      '--name',
      name,
      '--control-dir',
      controlDir,
    ]);
    const node = await firstLine(running);
    const sizeOf = () => Number(sh(`blockdev --getsize64 ${node}`).trim());
    expect(sizeOf()).toBe(48 << 20);
    sh(`mkfs.ext4 -q -F ${node} && mkdir -p ${mnt} && mount ${node} ${mnt}`);
    // Checksums, not buffers, are compared: a mismatch must not make the test diff megabytes.
    sh(`dd if=/dev/urandom of=${mnt}/before bs=1M count=8 status=none conv=fsync`);
    const before = sh(`sha256sum ${mnt}/before`).split(' ')[0];
    const fsBlocks = () =>
      Number(sh(`stat -f -c %b ${mnt}`).trim()) * Number(sh(`stat -f -c %S ${mnt}`).trim());
    const smallFs = fsBlocks();

    const grown = await runToExit(['resize', name, '160M', '--control-dir', controlDir]);
    expect(grown.code, grown.stderr).toBe(0);
    expect(grown.stdout).toContain('resize2fs');
    // The kernel learnt the size (CAPACITY DATA HAS CHANGED, rescan): the mounted disk grew.
    const deadline = Date.now() + 60_000;
    while (sizeOf() !== 160 << 20 && Date.now() < deadline)
      await new Promise((done) => setTimeout(done, 200));
    expect(sizeOf()).toBe(160 << 20);
    sh(`resize2fs ${node} 2>&1`);
    expect(fsBlocks()).toBeGreaterThan(smallFs * 2.5);
    // Data past the old end: a file bigger than the whole old disk.
    sh(`dd if=/dev/urandom of=${mnt}/after bs=1M count=64 status=none conv=fsync`);
    const after = sh(`sha256sum ${mnt}/after`).split(' ')[0];
    sh(`umount ${mnt}`);
    sh(`fsck.ext4 -fn ${node} 2>&1`);
    sh(`mount ${node} ${mnt}`);
    expect(
      sh(`sha256sum ${mnt}/before ${mnt}/after`)
        .split('\n')
        .map((l) => l.split(' ')[0])
        .slice(0, 2),
    ).toEqual([before, after]);
    sh(`umount ${mnt}`);
    running.child.kill('SIGTERM');
    expect((await running.exited).code).toBe(0);
    expect(leftovers(name)).toEqual([]);
  });
});
