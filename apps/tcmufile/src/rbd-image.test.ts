import { describe, expect, it } from 'vitest';
import { formatDoctor } from './admin.js';
import { parseCommandLine, type ServeCommand } from './args.js';
import { type CliError, EnvironmentError, ExitCode, ImageError, UsageError } from './errors.js';
import { parseRbdImage, rbdImageName, rbdOpenError } from './rbd-image.js';

const serveOf = (argv: string[]) => parseCommandLine(['serve', ...argv]) as ServeCommand;

describe('rbd: image names', () => {
  it.each([
    ['rbd:tcmu/disk0', { pool: 'tcmu', image: 'disk0' }],
    ['rbd:tcmu/ns1/disk0', { pool: 'tcmu', namespace: 'ns1', image: 'disk0' }],
    ['rbd:tcmu/disk0@before-upgrade', { pool: 'tcmu', image: 'disk0', snapshot: 'before-upgrade' }],
    ['rbd:rbd/ns/vol.1@s_2', { pool: 'rbd', namespace: 'ns', image: 'vol.1', snapshot: 's_2' }],
  ])('%s', (text, spec) => {
    expect(parseRbdImage(text)).toEqual(spec);
    expect(`rbd:${rbdImageName(spec)}`).toBe(text);
  });

  it.each([
    ['rbd:', 'needs a pool and an image'],
    ['rbd:disk0', 'needs a pool and an image'],
    ['rbd:a/b/c/d', 'needs a pool and an image'],
    ['rbd:tcmu//disk0', "invalid name part ''"],
    ['rbd:tcmu/disk 0', "invalid name part 'disk 0'"],
    ['rbd:tcmu/disk0@', "invalid snapshot ''"],
  ])('refuses %s', (text, why) => {
    const error = (() => {
      try {
        parseRbdImage(text);
      } catch (caught) {
        return caught;
      }
    })();
    expect(error).toBeInstanceOf(UsageError);
    expect((error as Error).message).toContain(why);
  });
});

describe('serve rbd:POOL/IMAGE on the command line', () => {
  it('carries the image and the Ceph client; the name comes from the image', () => {
    const command = serveOf([
      'rbd:tcmu/disk0',
      '--ceph-conf',
      '/etc/ceph/ceph.conf',
      '--id',
      'tcmu',
      '--keyring',
      '/etc/ceph/k',
    ]);
    expect(command.rbd).toEqual({
      pool: 'tcmu',
      image: 'disk0',
      conf: '/etc/ceph/ceph.conf',
      clientId: 'tcmu',
      keyring: '/etc/ceph/k',
    });
    expect(command.name).toBe('disk0');
    expect(command.readOnly).toBe(false);
  });

  it('a snapshot is served read-only', () => {
    expect(serveOf(['rbd:tcmu/disk0@snap1']).readOnly).toBe(true);
  });

  it.each([
    [['disk.img', '--ceph-conf', '/etc/ceph/ceph.conf'], /--ceph-conf is for rbd: images only/],
    [['disk.img', '--id', 'admin'], /--id is for rbd: images only/],
    [['rbd:tcmu/disk0', '--size', '1G'], /--size does not apply to rbd: images/],
    [['rbd:tcmu/disk0', '--raw'], /--raw does not apply/],
    [['rbd:tcmu/disk0', '--id', 'client.admin'], /--id takes the user without "client."/],
    [['rbd:tcmu'], /needs a pool and an image/],
  ])('%j is refused', (argv, message) => {
    expect(() => serveOf(argv)).toThrow(message);
  });

  it('doctor takes an rbd: image and its client options, and nothing else', () => {
    expect(parseCommandLine(['doctor', 'rbd:tcmu/disk0', '--id', 'tcmu'])).toEqual({
      kind: 'doctor',
      rbd: { pool: 'tcmu', image: 'disk0', clientId: 'tcmu' },
    });
    expect(() => parseCommandLine(['doctor', 'disk.img'])).toThrow(/rbd: image only/);
    expect(() => parseCommandLine(['doctor', '--keyring', '/k'])).toThrow(
      /--keyring is for rbd: images only/,
    );
  });
});

/** What RbdBackend.open() throws, as @tcmu/rbd makes it (RbdNativeError's fields). */
const native = (code: string, syscall: string) =>
  Object.assign(new Error(`${syscall}: ${code}`), { name: 'RbdNativeError', code, syscall, errno: -1 });

describe('RbdBackend.open failures, told the CLI way', () => {
  const request = { pool: 'tcmu', image: 'disk0', conf: '/etc/ceph/c.conf', clientId: 'tcmu' };
  it.each([
    [
      'ENOENT',
      'rados_conf_read_file',
      ImageError,
      ExitCode.noImage,
      /configuration \/etc\/ceph\/c.conf/,
      /--ceph-conf/,
    ],
    [
      'ETIMEDOUT',
      'rados_connect',
      EnvironmentError,
      ExitCode.unavailable,
      /no Ceph monitor answered/,
      /ceph -s/,
    ],
    [
      'ENOENT',
      'rados_connect',
      EnvironmentError,
      ExitCode.noPermission,
      /no keyring for client.tcmu/,
      /--keyring/,
    ],
    [
      'EACCES',
      'rados_connect',
      EnvironmentError,
      ExitCode.noPermission,
      /refused client.tcmu \(EACCES\)/,
      /ceph auth get/,
    ],
    [
      'EIO',
      'rados_connect',
      EnvironmentError,
      ExitCode.noPermission,
      /keyring for client.tcmu cannot be parsed/,
      /ceph auth get client.tcmu/,
    ],
    [
      'ENOENT',
      'rados_ioctx_create',
      ImageError,
      ExitCode.noImage,
      /pool 'tcmu' does not exist/,
      /ceph osd pool create tcmu/,
    ],
    [
      'ENOENT',
      'rbd_open',
      ImageError,
      ExitCode.noImage,
      /tcmu\/disk0 does not exist/,
      /rbd create tcmu\/disk0 --size 1G/,
    ],
    ['EROFS', 'rbd_lock_acquire', ImageError, ExitCode.inUse, /served by another gateway/, /blocklists it/],
  ] as const)('%s from %s', (code, syscall, Kind, exitCode, message, fix) => {
    const told = rbdOpenError(native(code, syscall), request) as CliError;
    expect(told).toBeInstanceOf(Kind);
    expect(told.exitCode).toBe(exitCode);
    expect(told.message).toMatch(message);
    expect(told.fix).toMatch(fix);
  });

  it('a missing snapshot points at rbd snap ls; anything else keeps librbd’s words', () => {
    const snap = rbdOpenError(native('ENOENT', 'rbd_open_read_only'), {
      ...request,
      snapshot: 's',
    }) as CliError;
    expect(snap.fix).toBe('List the snapshots: rbd snap ls tcmu/disk0');
    const other = rbdOpenError(native('EBLOCKLISTED', 'rbd_open'), request) as CliError;
    expect(other.exitCode).toBe(ExitCode.osError);
    expect(other.message).toMatch(/cannot open RBD image tcmu\/disk0: rbd_open: EBLOCKLISTED/);
    const addon = rbdOpenError(
      Object.assign(new Error('librbd.so.1 missing'), { name: 'RbdAddonLoadError' }),
      request,
    );
    expect(addon).toBeInstanceOf(EnvironmentError);
    expect((addon as CliError).fix).toBe('apt-get install librbd1 librados2');
  });
});

describe('doctor with an rbd: image', () => {
  const machine = {
    ok: true,
    checks: [{ id: 'root', ok: true, required: true, detail: 'running as root', fix: undefined }],
  };
  const image = { pool: 'tcmu', image: 'disk0' };
  it('all good: the serve line names the image', () => {
    const { text, exitCode } = formatDoctor(machine as never, {
      image,
      checks: [
        {
          id: 'rbd:image',
          ok: true,
          required: true,
          detail: 'RBD image tcmu/disk0 exists (64 MiB)',
          fix: undefined,
        },
      ],
    });
    expect(exitCode).toBe(ExitCode.ok);
    expect(text).toContain('Ceph client for rbd:tcmu/disk0:\nok    RBD image tcmu/disk0 exists (64 MiB)');
    expect(text).toContain('Ready: `tcmufile serve rbd:tcmu/disk0` will work here.');
  });

  it.each([
    ['rbd:image', 'RBD image tcmu/disk0 does not exist', ExitCode.noImage],
    ['rbd:cluster', 'the cluster refused client.admin (EACCES)', ExitCode.noPermission],
    ['rbd:cluster', 'no Ceph monitor answered (mon_host of x)', ExitCode.unavailable],
    ['rbd:librbd', '@tcmu/rbd is not installed', ExitCode.unavailable],
  ])('%s failing: %s → exit %i, with its fix', (id, detail, exitCode) => {
    const result = formatDoctor(machine as never, {
      image,
      // The exit code travels with the failed check, from the error that failed it.
      checks: [{ id, ok: false, required: true, detail, fix: 'do this', exitCode }],
    });
    expect(result.exitCode).toBe(exitCode);
    expect(result.text).toContain(`FAIL  ${detail}\n      fix: do this`);
    expect(result.text).toContain('not this RBD image yet');
  });
});
