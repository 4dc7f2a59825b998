import { describe, expect, it } from 'vitest';
import { InvalidDeviceOptionError } from './errors.js';
import type { Handler } from './handler.js';
import { type OpenDeviceOptions, resolveOptions } from './options.js';
import { transportOf } from './scsi.js';

const backend = (blockSize = 512, blockCount = 2048) => ({
  blockSize,
  blockCount,
  read() {},
  write() {},
  flush() {},
});
const handler: Handler = () => ({ status: 0 });

describe('resolveOptions', () => {
  it('takes size and block size from the backend and fills defaults', () => {
    const r = resolveOptions({ name: 'vol0', backend: backend(4096, 100) });
    expect(r).toMatchObject({
      name: 'vol0',
      blockSize: 4096,
      blockCount: 100,
      queueDepth: 128,
      hwMaxSectors: 256, // 1 MiB of 4 KiB blocks
      nodeKind: 'block',
      lun: undefined,
      hba: undefined,
    });
    expect(r.targets).toEqual([
      {
        type: 'loopback',
        wwn: expect.stringMatching(/^naa\.5001405/),
        nexusWwn: expect.stringMatching(/^naa\.5001405/),
      },
    ]);
  });

  it('needs size and block size with a handler and no backend', () => {
    expect(resolveOptions({ name: 'v', handler, size: 1 << 20, blockSize: 4096 })).toMatchObject({
      blockSize: 4096,
      blockCount: 256,
    });
    expect(() => resolveOptions({ name: 'v', handler, size: 1 << 20 })).toThrow(/blockSize/);
    expect(() => resolveOptions({ name: 'v', handler, blockSize: 512 })).toThrow(/size/);
    expect(() => resolveOptions({ name: 'v', handler, blockSize: 512, size: 1000 })).toThrow(/multiple/);
  });

  it('resolves fabrics: none, iSCSI with the default portal, several at once', () => {
    expect(resolveOptions({ name: 'v', backend: backend(), fabric: { type: 'none' } }).targets).toEqual([]);
    expect(resolveOptions({ name: 'v', backend: backend(), fabric: { type: 'iscsi' } }).targets).toEqual([
      {
        type: 'iscsi',
        iqn: 'iqn.2003-01.org.linux-iscsi.tcmu-node:v',
        portal: '127.0.0.1:3260',
        initiators: undefined,
      },
    ]);
    const both = resolveOptions({
      name: 'v',
      backend: backend(),
      fabric: [
        { type: 'loopback', wwn: 'naa.5001405000000001' },
        { type: 'iscsi', portal: '[::1]:3260' },
      ],
    }).targets;
    expect(both.map((t) => t.type)).toEqual(['loopback', 'iscsi']);
    expect(both[0]).toMatchObject({ wwn: 'naa.5001405000000001' });
  });

  it('drops the loopback fabric for a device joining a Target', () => {
    expect(resolveOptions({ name: 'v', backend: backend() }, { attached: true }).targets).toEqual([]);
  });

  it.each<[string, Partial<OpenDeviceOptions>, RegExp]>([
    ['no backend or handler', {}, /backend or a handler/],
    ['bad block size', { backend: backend(520) }, /block size 520/],
    ['empty backend', { backend: backend(512, 0) }, /blockCount/],
    ['conflicting size', { backend: backend(), size: 4096 }, /size/],
    ['conflicting blockSize', { backend: backend(), blockSize: 4096 }, /blockSize/],
    ['not a backend', { backend: {} as never }, /BlockBackend/],
    ['negative hba', { backend: backend(), hba: -1 }, /hba/],
    ['big lun', { backend: backend(), lun: 70000 }, /lun/],
    ['zero queue depth', { backend: backend(), queueDepth: 0 }, /queueDepth/],
    ['fractional queue depth', { backend: backend(), queueDepth: 1.5 }, /queueDepth/],
    ['relative nodeDir', { backend: backend(), nodeDir: 'dev/x' }, /absolute/],
    [
      'nodeDir without loopback',
      { backend: backend(), nodeDir: '/dev/x', fabric: { type: 'none' } },
      /loopback/,
    ],
    ['bad nodeKind', { backend: backend(), nodeKind: 'char' as never }, /nodeKind/],
    ['bad fabric', { backend: backend(), fabric: { type: 'fc' } as never }, /fabric/],
    ['fabric twice', { backend: backend(), fabric: [{ type: 'iscsi' }, { type: 'iscsi' }] }, /twice/],
    [
      'empty initiators',
      { backend: backend(), fabric: { type: 'iscsi', initiators: [] } },
      /fabric.initiators.*demo mode/,
    ],
    [
      'upper-case initiator',
      { backend: backend(), fabric: { type: 'iscsi', initiators: [{ iqn: 'IQN.1994-05.com.x' }] } },
      /fabric.initiators\[0\].iqn.*lower case/,
    ],
    [
      'initiator twice',
      {
        backend: backend(),
        fabric: { type: 'iscsi', initiators: [{ iqn: 'iqn.1994-05.com.x' }, { iqn: 'iqn.1994-05.com.x' }] },
      },
      /listed twice/,
    ],
    [
      'CHAP password with a space',
      {
        backend: backend(),
        fabric: {
          type: 'iscsi',
          initiators: [{ iqn: 'iqn.1994-05.com.x', chap: { userid: 'u', password: 'a b' } }],
        },
      },
      /fabric.initiators\[0\].chap.password.*printable/,
    ],
    [
      'half a mutual CHAP pair',
      {
        backend: backend(),
        fabric: {
          type: 'iscsi',
          initiators: [{ iqn: 'iqn.1994-05.com.x', chap: { userid: 'u', password: 'p', mutualUserid: 't' } }],
        },
      },
      /mutualPassword.*both/,
    ],
    ['bad portal', { backend: backend(), fabric: { type: 'iscsi', portal: '1.2.3:3260' } }, /portal/],
    ['bad target IQN', { backend: backend(), fabric: { type: 'iscsi', iqn: 'eui.x' } }, /fabric.iqn/],
    ['long vendor', { backend: backend(), unit: { vendor: 'VENDOR123' } }, /unit.vendor/],
    ['middleware not functions', { backend: backend(), middleware: [1 as never] }, /middleware/],
    ['handler not a function', { backend: backend(), handler: 'x' as never }, /handler/],
    ['bad name', { backend: backend(), name: 'a/b' }, /name/],
  ])('rejects %s', (_what, options, message) => {
    const full = { name: 'vol0', ...options } as OpenDeviceOptions;
    expect(() => resolveOptions(full)).toThrow(InvalidDeviceOptionError);
    expect(() => resolveOptions(full)).toThrow(message);
  });

  it('rejects a non-object', () => {
    expect(() => resolveOptions(null as never)).toThrow(InvalidDeviceOptionError);
  });
});

describe('the transport standard INQUIRY claims', () => {
  it('is the one fabric’s (loopback identifies as SAS), none with several or none', () => {
    expect(transportOf(['loopback'])).toBe('sas');
    expect(transportOf(['iscsi', 'iscsi'])).toBe('iscsi');
    expect(transportOf(['loopback', 'iscsi'])).toBeUndefined();
    expect(transportOf([])).toBeUndefined();
  });
});
