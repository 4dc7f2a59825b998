import { describe, expect, it } from 'vitest';
import { parseBackstoreInfo, parseControl, renderControl } from './control.js';
import { InvalidNameError, InvalidOptionError } from './errors.js';
import {
  portalDirName,
  validateIqn,
  validateNaaWwn,
  validateObjectName,
  validatePortal,
} from './validate.js';

describe('names', () => {
  it('accepts plain names and rejects separators, dots, whitespace and control characters', () => {
    expect(validateObjectName('n', 'disk-0_a.b')).toBe('disk-0_a.b');
    for (const bad of [
      '',
      'a/b',
      'a:b',
      '..',
      'a..b',
      ' a',
      'a\tb',
      'a\nb',
      'a\u0001',
      '.hidden',
      'x'.repeat(65),
    ]) {
      expect(() => validateObjectName('n', bad)).toThrow(InvalidNameError);
    }
    expect(() => validateObjectName('n', 42)).toThrow(InvalidNameError);
  });

  it('validates naa WWNs and lower-cases them', () => {
    expect(validateNaaWwn('w', 'naa.5001405ABCDEF012')).toBe('naa.5001405abcdef012');
    for (const bad of [
      'naa.5001405',
      'naa.5001405abcdef0123',
      'eui.5001405abcdef012',
      'naa.5001405abcdefg12',
    ]) {
      expect(() => validateNaaWwn('w', bad)).toThrow(InvalidNameError);
    }
  });

  it('validates IQNs (RFC 3720 form)', () => {
    for (const good of [
      'iqn.2003-01.org.linux-iscsi.host:sn.1234',
      'iqn.1994-05.com.redhat:client',
      'iqn.2020-12.a',
    ]) {
      expect(validateIqn('i', good)).toBe(good);
    }
    for (const bad of [
      'iqn.2003-1.org.x',
      'iqn.2003-00.org.x',
      'iqn.2003-01.-org',
      'iqn.2003-01.org.x:a b',
      'IQN.2003-01.x',
    ]) {
      expect(() => validateIqn('i', bad)).toThrow(InvalidNameError);
    }
    expect(() => validateIqn('i', `iqn.2003-01.org.x:${'a'.repeat(220)}`)).toThrow(/longer than 223/);
  });

  it('parses portals, IPv6 in brackets', () => {
    expect(validatePortal('127.0.0.1:3260')).toEqual({ ip: '127.0.0.1', port: 3260 });
    expect(validatePortal('10.0.0.1')).toEqual({ ip: '10.0.0.1', port: 3260 });
    expect(validatePortal('[::1]:3261')).toEqual({ ip: '::1', port: 3261 });
    expect(validatePortal({ ip: 'FE80::1' })).toEqual({ ip: 'fe80::1', port: 3260 });
    expect(portalDirName({ ip: '::1', port: 3260 })).toBe('[::1]:3260');
    expect(portalDirName({ ip: '0.0.0.0', port: 3260 })).toBe('0.0.0.0:3260');
    for (const bad of ['::1:3260', '1.2.3.4:0', '1.2.3.4:65536', 'host:3260', '[::1]x', '1.2.3.256:1']) {
      expect(() => validatePortal(bad)).toThrow(InvalidNameError);
    }
  });
});

describe('control', () => {
  it('renders known keys and refuses unknown ones (the kernel would ignore them silently)', () => {
    expect(renderControl('user', { dev_config: 'tcmu-node/a', dev_size: 4096, nl_reply_supported: -1 })).toBe(
      'dev_config=tcmu-node/a,dev_size=4096,nl_reply_supported=-1',
    );
    expect(() => renderControl('user', { async: 1 })).toThrow(InvalidOptionError);
    expect(() => renderControl('user', { fd_dev_name: '/x' })).toThrow(/unknown user control key/);
    expect(() => renderControl('user', { cmd_ring_size_mb: 9 })).toThrow(InvalidOptionError);
    expect(() => renderControl('fileio', { fd_buffered_io: 0 })).toThrow(InvalidOptionError);
    expect(parseControl('user', 'max_data_area_mb=8,hw_block_size=4096')).toEqual({
      max_data_area_mb: 8,
      hw_block_size: 4096,
    });
    expect(() => parseControl('user', 'max_data_area_mb')).toThrow(/not key=value/);
  });

  it('parses the kernel info text of TCMU and fileio backstores', () => {
    const user = parseBackstoreInfo(
      'Status: DEACTIVATED  Max Queue Depth: 0  SectorSize: 512  HwMaxSectors: 128\n' +
        '        Config: tcmu-node/d0 Size: 1048576 MaxDataAreaMB: 8 DataPagesPerBlk: 1 CmdRingSizeMB: 8\n',
    );
    expect(user).toMatchObject({
      status: 'DEACTIVATED',
      maxQueueDepth: 0,
      sectorSize: 512,
      hwMaxSectors: 128,
      config: 'tcmu-node/d0',
      size: 1048576,
      maxDataAreaMb: 8,
      dataPagesPerBlk: 1,
      cmdRingSizeMb: 8,
    });
    const fresh = parseBackstoreInfo(
      'Status: DEACTIVATED  Max Queue Depth: 0  SectorSize: 0  HwMaxSectors: 0\n        Config: NULL Size: 0 MaxDataAreaMB: 1024 DataPagesPerBlk: 1 CmdRingSizeMB: 8\n',
    );
    expect(fresh.config).toBeUndefined();
    const fileio = parseBackstoreInfo(
      'Status: DEACTIVATED  Max Queue Depth: 0  SectorSize: 512  HwMaxSectors: 16384\n' +
        '        TCM FILEIO ID: 0        File: /tmp/f.img  Size: 8388608  Mode: Buffered-WCE Async: 0\n',
    );
    expect(fileio).toMatchObject({
      fileioId: 0,
      file: '/tmp/f.img',
      size: 8388608,
      mode: 'Buffered-WCE',
      hwMaxSectors: 16384,
    });
  });
});
