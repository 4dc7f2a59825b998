import { describe, expect, it } from 'vitest';
import {
  CliError,
  describeError,
  EnvironmentError,
  ExitCode,
  exitCodeFor,
  ImageError,
  UsageError,
} from './errors.js';

/** Mimics a library error class (name + code) without importing the library. */
function libraryError(name: string, extra: Record<string, unknown> = {}): Error {
  const error = new Error(`${name} happened`);
  error.name = name;
  return Object.assign(error, extra);
}

describe('exitCodeFor', () => {
  it('uses the code a CliError carries', () => {
    expect(exitCodeFor(new UsageError('bad'))).toBe(64);
    expect(exitCodeFor(new ImageError('small', ExitCode.badImage))).toBe(65);
    expect(exitCodeFor(new EnvironmentError('not root', ExitCode.noPermission))).toBe(77);
    expect(exitCodeFor(new EnvironmentError('no configfs', ExitCode.config))).toBe(78);
    expect(exitCodeFor(new EnvironmentError('no module', ExitCode.unavailable))).toBe(69);
  });

  it('classifies library errors by name', () => {
    expect(exitCodeFor(libraryError('InvalidNameError'))).toBe(ExitCode.usage);
    expect(exitCodeFor(libraryError('InvalidOptionError'))).toBe(ExitCode.usage);
    expect(exitCodeFor(libraryError('InvalidDeviceOptionError'))).toBe(ExitCode.usage);
    expect(exitCodeFor(libraryError('AlreadyExistsError'))).toBe(ExitCode.inUse);
    expect(exitCodeFor(libraryError('ReattachMismatchError'))).toBe(ExitCode.inUse);
    expect(exitCodeFor(libraryError('DeviceResizeError'))).toBe(ExitCode.osError);
    expect(exitCodeFor(libraryError('InUseError'))).toBe(ExitCode.inUse);
    expect(exitCodeFor(libraryError('KernelError', { errno: 'EINVAL' }))).toBe(ExitCode.osError);
    expect(exitCodeFor(libraryError('KernelError', { errno: 'EACCES' }))).toBe(ExitCode.noPermission);
  });

  it('classifies the file backend errors by code', () => {
    expect(exitCodeFor(libraryError('FileBackendError', { code: 'NOT_A_FILE' }))).toBe(ExitCode.noImage);
    expect(exitCodeFor(libraryError('FileBackendError', { code: 'SIZE_NOT_BLOCK_MULTIPLE' }))).toBe(
      ExitCode.badImage,
    );
    expect(exitCodeFor(libraryError('FileBackendError', { code: 'INVALID_OPTIONS' }))).toBe(ExitCode.usage);
  });

  it('looks through wrappers such as DeviceSetupError via cause', () => {
    const inner = libraryError('AlreadyExistsError');
    const outer = new Error('device setup failed at step backstore', { cause: inner });
    outer.name = 'DeviceSetupError';
    expect(exitCodeFor(outer)).toBe(ExitCode.inUse);
  });

  it('maps raw errno codes', () => {
    expect(exitCodeFor(Object.assign(new Error('x'), { code: 'EACCES' }))).toBe(ExitCode.noPermission);
    expect(exitCodeFor(Object.assign(new Error('x'), { code: 'ENOENT' }))).toBe(ExitCode.noImage);
    expect(exitCodeFor(Object.assign(new Error('x'), { code: 'EBUSY' }))).toBe(ExitCode.inUse);
  });

  it('calls anything else internal (1), and survives cause cycles', () => {
    expect(exitCodeFor(new Error('bug'))).toBe(ExitCode.internal);
    expect(exitCodeFor('a string')).toBe(ExitCode.internal);
    expect(exitCodeFor(null)).toBe(ExitCode.internal);
    const a: { cause?: unknown } = {};
    const b = { cause: a };
    a.cause = b;
    expect(exitCodeFor(a)).toBe(ExitCode.internal);
  });
});

describe('describeError', () => {
  it('prints the message and the fix', () => {
    const text = describeError(new CliError('configfs is not mounted', ExitCode.config, { fix: 'mount it' }));
    expect(text).toBe('tcmufile: configfs is not mounted\n  fix: mount it');
  });
  it('uses a library error fix property', () => {
    expect(describeError(Object.assign(new Error('no module'), { fix: 'modprobe x' }))).toContain(
      'fix: modprobe x',
    );
  });
  it('tells a usage error in one line: the command, the problem, what to do', () => {
    expect(describeError(new UsageError('bad'))).toBe('tcmufile: bad; see tcmufile --help');
    expect(describeError(new UsageError('bad', { command: 'list' }))).toBe(
      'tcmufile list: bad; see tcmufile list --help',
    );
    const sized = new UsageError('--size 1000 is no block multiple', { fix: 'use 1024' }).inCommand('serve');
    expect(describeError(sized)).toBe('tcmufile serve: --size 1000 is no block multiple; use 1024');
    expect(describeError(new UsageError('bad').inCommand('stop'))).toBe(
      'tcmufile stop: bad; see tcmufile stop --help',
    );
    // A command already known stays.
    expect(new UsageError('bad', { command: 'list' }).inCommand('serve').command).toBe('list');
  });

  it('adds a short stack for unexpected errors only', () => {
    expect(describeError(new Error('boom'))).toMatch(/^tcmufile: boom\n\s+at /);
    expect(describeError(new UsageError('bad'))).not.toMatch(/\bat /);
  });
});
