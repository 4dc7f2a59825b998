// `tcmufile serve --config` on the real kernel (kernel-vm): iSCSI logins through the ACLs and
// CHAP it writes (libiscsi's iscsi-inq), then a SIGHUP reload, then SIGTERM. Runs as root in the VM.
import { type ChildProcessByStdio, execFile, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const appDir = fileURLToPath(new URL('..', import.meta.url));
const cli = join(appDir, 'src', 'cli.ts');
const ISCSI = '/sys/kernel/config/target/iscsi';
const client = 'iqn.1994-05.com.example:client';
const stranger = 'iqn.1994-05.com.example:stranger';
const iqnA = 'iqn.2003-01.org.example:kt-acl';
const iqnB = 'iqn.2003-01.org.example:kt-mutual';

/**
 * iscsi-inq's exit code and output; never rejects on a refused login. `target` asks for mutual
 * CHAP: libiscsi then checks the target's CHAP_R against that secret.
 */
function inquire(
  initiator: string,
  url: string,
  target?: { userid: string; password: string },
): Promise<{ code: number; output: string }> {
  const env = target
    ? {
        ...process.env,
        LIBISCSI_CHAP_TARGET_USERNAME: target.userid,
        LIBISCSI_CHAP_TARGET_PASSWORD: target.password,
      }
    : process.env;
  return new Promise((resolve) => {
    execFile(
      'iscsi-inq',
      ['-i', initiator, url],
      { timeout: 120_000, encoding: 'utf8', env },
      (error, stdout, stderr) =>
        resolve({ code: error ? Number(error.code ?? 1) : 0, output: `${stdout}${stderr}` }),
    );
  });
}

/** A tcmufile command run to completion: its exit code and stdout. */
function cliRun(args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--conditions=@tcmu/source', '--import', 'tsx', cli, ...args],
      { cwd: appDir, timeout: 300_000, encoding: 'utf8' },
      (error, stdout, stderr) =>
        resolve({ code: error ? Number(error.code ?? 1) : 0, output: error ? `${stdout}${stderr}` : stdout }),
    );
  });
}

let dir: string;
let child: ChildProcessByStdio<null, Readable, Readable> | undefined;
const stdout: string[] = [];
const stderr: string[] = [];

async function until(what: string, check: () => boolean, timeoutMs = 600_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline || child?.exitCode !== null) {
      throw new Error(`${what}: timed out or exited (${child?.exitCode})\n${stderr.join('')}`);
    }
    await new Promise((done) => setTimeout(done, 100));
  }
}

const lines = () => stdout.join('').split('\n').filter(Boolean);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tcmufile-config-kt-'));
});
afterAll(async () => {
  if (child && child.exitCode === null) {
    child.kill('SIGTERM');
    await new Promise((done) => child!.once('exit', done));
  }
  await rm(dir, { recursive: true, force: true });
});

describe('tcmufile serve --config on the real kernel', { timeout: 1_200_000 }, () => {
  it('lets the listed initiator in with its CHAP secret only, reloads on SIGHUP, removes all on SIGTERM', async () => {
    const chap = join(dir, 'chap.json');
    await writeFile(chap, JSON.stringify({ userid: 'client', password: 'right-secret1' }));
    await chmod(chap, 0o600);
    const mutual = join(dir, 'mutual.json');
    await writeFile(
      mutual,
      JSON.stringify({
        userid: 'client',
        password: 'right-secret2',
        mutualUserid: 'target',
        mutualPassword: 'target-secret',
      }),
    );
    await chmod(mutual, 0o600);
    const iscsi = (iqn: string, chapFile: string) => ({
      portal: '127.0.0.1:3260',
      iqn,
      initiators: [client],
      chapFile,
    });
    const config = join(dir, 'disks.json');
    const write = (disks: object[]) => writeFile(config, JSON.stringify({ dir: join(dir, 'nodes'), disks }));
    await write([
      { name: 'kt-acl', image: 'acl.img', size: '16M', io: 'sync', iscsi: iscsi(iqnA, 'chap.json') },
      // A second LUN behind the same target (the lowest free number: 1; its loopback LUN is 0).
      { name: 'kt-acl1', image: 'acl1.img', size: '8M', iscsi: iscsi(iqnA, 'chap.json') },
      { name: 'kt-mutual', image: 'mutual.img', size: '16M', io: 'sync', iscsi: iscsi(iqnB, 'mutual.json') },
    ]);

    child = spawn(
      process.execPath,
      ['--conditions=@tcmu/source', '--import', 'tsx', cli, 'serve', '--config', config],
      {
        cwd: appDir,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => stdout.push(chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => stderr.push(chunk));
    await until('the disks up', () => lines().length === 3);
    expect(lines()).toEqual([
      `kt-acl ${join(dir, 'nodes', 'kt-acl')}`,
      `kt-acl1 ${join(dir, 'nodes', 'kt-acl1')}`,
      `kt-mutual ${join(dir, 'nodes', 'kt-mutual')}`,
    ]);

    const tpgA = `${ISCSI}/${iqnA}/tpgt_1`;
    expect(readFileSync(`${tpgA}/attrib/generate_node_acls`, 'utf8').trim()).toBe('0');
    expect(readFileSync(`${tpgA}/attrib/authentication`, 'utf8').trim()).toBe('1');
    const aclB = `${ISCSI}/${iqnB}/tpgt_1/acls/${client}/auth`;
    expect(readFileSync(`${aclB}/userid_mutual`, 'utf8').trim()).toBe('target');
    expect(readFileSync(`${aclB}/password_mutual`, 'utf8').trim()).toBe('target-secret');

    const urlA = (user: string, password: string) => `iscsi://${user}%${password}@127.0.0.1/${iqnA}/0`;
    const allowed = await inquire(client, urlA('client', 'right-secret1'));
    expect(allowed.code, allowed.output).toBe(0);
    expect(allowed.output).toMatch(/Peripheral Device Type/i);
    const wrongSecret = await inquire(client, urlA('client', 'wrong-secret1'));
    expect(wrongSecret.code, wrongSecret.output).not.toBe(0);
    const lun1 = await inquire(client, urlA('client', 'right-secret1').replace(/\/0$/, '/1'));
    expect(lun1.code, lun1.output).toBe(0);
    expect(readdirSync(`${tpgA}/lun`).sort()).toEqual(['lun_0', 'lun_1']);
    expect(
      readdirSync(`${tpgA}/acls/${client}`)
        .filter((e) => e.startsWith('lun_'))
        .sort(),
    ).toEqual(['lun_0', 'lun_1']);
    const unlisted = await inquire(stranger, urlA('client', 'right-secret1'));
    expect(unlisted.code, unlisted.output).not.toBe(0);

    // Mutual CHAP: the target proves itself with its own secret, and a wrong one is refused.
    const urlB = `iscsi://client%right-secret2@127.0.0.1/${iqnB}/0`;
    const mutualOk = await inquire(client, urlB, { userid: 'target', password: 'target-secret' });
    expect(mutualOk.code, mutualOk.output).toBe(0);
    expect(mutualOk.output).toMatch(/Peripheral Device Type/i);
    const impostor = await inquire(client, urlB, { userid: 'target', password: 'not-the-target' });
    expect(impostor.code, impostor.output).not.toBe(0);
    expect(impostor.output).toMatch(/CHAP_R/);

    // Reload: kt-mutual and kt-acl1 (LUN 1 of kt-acl's target) go, kt-new comes, kt-acl
    // (unchanged) keeps its target and LUN 0.
    await write([
      { name: 'kt-acl', image: 'acl.img', size: '16M', io: 'sync', iscsi: iscsi(iqnA, 'chap.json') },
      { name: 'kt-new', image: 'new.img', size: '8M', io: 'sync' },
    ]);
    child.kill('SIGHUP');
    await until('reloaded', () => stderr.join('').includes('SIGHUP: reloaded'));
    expect(lines().at(-1)).toBe(`kt-new ${join(dir, 'nodes', 'kt-new')}`);
    expect(stderr.join('')).toContain('1 added, 2 removed, 1 unchanged');
    expect(existsSync(`${ISCSI}/${iqnB}`)).toBe(false);
    expect(readdirSync(`${tpgA}/lun`)).toEqual(['lun_0']);
    expect(existsSync(`${tpgA}/acls/${client}/lun_1`)).toBe(false);
    expect(stderr.join('')).not.toMatch(/removed kt-acl(?![\w-])/);
    expect(stderr.join('')).toContain('removed kt-acl1');
    expect((await inquire(client, urlA('client', 'right-secret1'))).code).toBe(0);

    // Each disk has its control socket: status of one, and `tcmufile stop` of one alone.
    const status = await cliRun(['status', 'kt-acl', '--json']);
    expect(status.code, status.output).toBe(0);
    expect(JSON.parse(status.output)[0]).toMatchObject({ name: 'kt-acl', state: 'ready' });
    const stopped = await cliRun(['stop', 'kt-new']);
    expect(stopped.code, stopped.output).toBe(0);
    expect(stopped.output).toContain('kt-new stopped');
    expect(existsSync(join(dir, 'nodes', 'kt-new'))).toBe(false);
    expect(child.exitCode).toBeNull();
    expect((await inquire(client, urlA('client', 'right-secret1'))).code).toBe(0);

    child.kill('SIGTERM');
    const code = await new Promise<number | null>((done) => child!.once('exit', done));
    expect(code, stderr.join('')).toBe(0);
    expect(existsSync(`${ISCSI}/${iqnA}`)).toBe(false);
    for (const name of ['kt-acl', 'kt-acl1', 'kt-new'])
      expect(existsSync(join(dir, 'nodes', name))).toBe(false);
  });
});
