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
