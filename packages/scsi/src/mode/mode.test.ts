import { describe, expect, it } from 'vitest';
import { MemoryBackend } from '../backends/memory.js';
import { be16, be32, be64 } from '../core/bytes.js';
import { expectCheck, expectGood, makeUnit, run } from '../sbc/testing/harness.js';
import { modeCommands } from './commands.js';
import { ModePageStore } from './pages.js';

const sense6 = (page: number, opts: { pc?: number; dbd?: boolean; sub?: number; alloc?: number } = {}) => [
  0x1a,
  opts.dbd ? 0x08 : 0,
  ((opts.pc ?? 0) << 6) | page,
  opts.sub ?? 0,
  opts.alloc ?? 255,
  0,
];
const sense10 = (
  page: number,
  opts: { pc?: number; dbd?: boolean; llbaa?: boolean; sub?: number; alloc?: number } = {},
) => {
  const alloc = opts.alloc ?? 1024;
  return [
    0x5a,
    (opts.dbd ? 0x08 : 0) | (opts.llbaa ? 0x10 : 0),
    ((opts.pc ?? 0) << 6) | page,
    opts.sub ?? 0,
    0,
    0,
    0,
    alloc >> 8,
    alloc & 0xff,
    0,
  ];
};
const select6 = (length: number, flags = 0x10) => [0x15, flags, 0, 0, length, 0];
const select10 = (length: number, flags = 0x10) => [
  0x55,
  flags,
  0,
  0,
  0,
  0,
  0,
  length >> 8,
  length & 0xff,
  0,
];

/** Split MODE SENSE data into its pages (after header and block descriptors). */
const pagesOf = (data: Uint8Array, ten: boolean): Map<number, Uint8Array> => {
  const header = ten ? 8 : 4;
  const bdl = ten ? be16(data, 6) : data[3]!;
  const pages = new Map<number, Uint8Array>();
  for (let at = header + bdl; at < data.length; at += data[at + 1]! + 2) {
    pages.set(data[at]! & 0x3f, data.subarray(at, at + data[at + 1]! + 2));
  }
  return pages;
};

describe('MODE SENSE', () => {
  it('MODE SENSE(6) all pages: header, 8-byte block descriptor, pages 01 08 0A 1C in order', async () => {
    const { unit } = makeUnit({ blocks: 2048, blockSize: 512 });
    const out = await run(unit, sense6(0x3f), { dataInLength: 255 });
    expectGood(out);
    const d = out.data;
    expect(d[0]).toBe(d.length - 1); // MODE DATA LENGTH excludes itself
    expect(d[1]).toBe(0); // medium type
    expect(d[2]).toBe(0x10); // DPOFUA, not write protected
    expect(d[3]).toBe(8);
    expect(be32(d, 4)).toBe(2048);
    expect(d[8]).toBe(0);
    expect((d[9]! << 16) | (d[10]! << 8) | d[11]!).toBe(512);
    expect([...pagesOf(d, false).keys()]).toEqual([0x01, 0x08, 0x0a, 0x1c]);
    expect(d.length).toBe(4 + 8 + 12 + 20 + 12 + 12);
  });

  it('caching page reports WCE=1 by default and DRA', async () => {
    const { unit } = makeUnit();
    const out = await run(unit, sense6(0x08), { dataInLength: 255 });
    const page = pagesOf(out.data, false).get(0x08)!;
    expect(page.length).toBe(20);
    expect(page[1]).toBe(0x12);
    expect(page[2]! & 0x04).toBe(0x04);
    expect(page[12]! & 0x20).toBe(0x20);
  });

  it('control page defaults: GLTSD, queue algorithm modifier 1, TAS, busy timeout FFFFh; D_SENSE from the unit', async () => {
    const { unit } = makeUnit({ descriptorSense: true });
    const out = await run(unit, sense10(0x0a), { dataInLength: 1024 });
    const page = pagesOf(out.data, true).get(0x0a)!;
    expect([...page]).toEqual([0x0a, 0x0a, 0x06, 0x10, 0x00, 0x40, 0, 0, 0xff, 0xff, 0, 0]);
  });

  it('PC=01b returns the changeable masks (WCE, D_SENSE) and a zero block descriptor', async () => {
    const { unit } = makeUnit();
    const out = await run(unit, sense6(0x3f, { pc: 1 }), { dataInLength: 255 });
    const pages = pagesOf(out.data, false);
    expect([...pages.get(0x08)!.subarray(2)].map((b, i) => (i === 0 ? b : b === 0))).toEqual([
      0x04,
      ...new Array(17).fill(true),
    ]);
    expect(pages.get(0x0a)![2]).toBe(0x04);
    expect([...pages.get(0x01)!.subarray(2)].every((b) => b === 0)).toBe(true);
    expect([...out.data.subarray(4, 12)].every((b) => b === 0)).toBe(true);
  });

  it('PC=10b returns defaults, not the current values changed by MODE SELECT', async () => {
    const { unit } = makeUnit();
    unit.modes.writeCacheEnabled = false;
    const current = await run(unit, sense6(0x08, { dbd: true }), { dataInLength: 255 });
    const defaults = await run(unit, sense6(0x08, { dbd: true, pc: 2 }), { dataInLength: 255 });
    expect(current.data[4 + 2]! & 0x04).toBe(0);
    expect(defaults.data[4 + 2]! & 0x04).toBe(0x04);
  });

  it('PC=11b (saved values) is SAVING PARAMETERS NOT SUPPORTED', async () => {
    const { unit } = makeUnit();
    expectCheck(
      await run(unit, sense6(0x08, { pc: 3 }), { dataInLength: 255 }),
      'SAVING_PARAMETERS_NOT_SUPPORTED',
    );
    expectCheck(
      await run(unit, sense10(0x3f, { pc: 3 }), { dataInLength: 255 }),
      'SAVING_PARAMETERS_NOT_SUPPORTED',
    );
  });

  it('an unknown page is INVALID FIELD IN CDB pointing at byte 2 (go-tcmu answered it empty)', async () => {
    const { unit } = makeUnit();
    expectCheck(await run(unit, sense6(0x19), { dataInLength: 255 }), 'INVALID_FIELD_IN_CDB', {
      byte: 2,
      bit: 5,
    });
    expectCheck(await run(unit, sense10(0x00), { dataInLength: 255 }), 'INVALID_FIELD_IN_CDB', {
      byte: 2,
      bit: 5,
    });
  });

  it('subpage 00h and FFh are accepted, any other subpage is INVALID FIELD IN CDB at byte 3', async () => {
    const { unit } = makeUnit();
    const all = await run(unit, sense6(0x3f, { sub: 0xff }), { dataInLength: 255 });
    expectGood(all);
    expect([...pagesOf(all.data, false).keys()]).toEqual([0x01, 0x08, 0x0a, 0x1c]);
    expectGood(await run(unit, sense6(0x08, { sub: 0xff }), { dataInLength: 255 }));
    expectCheck(await run(unit, sense6(0x0a, { sub: 0x01 }), { dataInLength: 255 }), 'INVALID_FIELD_IN_CDB', {
      byte: 3,
    });
  });

  it('DBD=1 omits the block descriptor (block descriptor length 0)', async () => {
    const { unit } = makeUnit();
    const out = await run(unit, sense6(0x08, { dbd: true }), { dataInLength: 255 });
    expect(out.data[3]).toBe(0);
    expect(out.data.length).toBe(4 + 20);
    const ten = await run(unit, sense10(0x08, { dbd: true, llbaa: true }), { dataInLength: 255 });
    expect(be16(ten.data, 6)).toBe(0);
    expect(ten.data[4]).toBe(0); // LONGLBA only describes descriptors that are there
  });

  it('MODE SENSE(10) with LLBAA returns a 16-byte descriptor and LONGLBA=1', async () => {
    const { unit } = makeUnit({ blocks: 4096, blockSize: 4096 });
    const out = await run(unit, sense10(0x1c, { llbaa: true }), { dataInLength: 1024 });
    const d = out.data;
    expect(be16(d, 0)).toBe(d.length - 2);
    expect(d[4]).toBe(0x01);
    expect(be16(d, 6)).toBe(16);
    expect(be64(d, 8)).toBe(4096);
    expect(be32(d, 20)).toBe(4096);
    expect(d.length).toBe(8 + 16 + 12);
  });

  it('MODE SENSE(10) without LLBAA uses the short descriptor', async () => {
    const { unit } = makeUnit();
    const out = await run(unit, sense10(0x01), { dataInLength: 1024 });
    expect(be16(out.data, 6)).toBe(8);
    expect(out.data[4]).toBe(0);
  });

  it('short block descriptor NUMBER OF LOGICAL BLOCKS is FFFFFFFFh when the capacity does not fit', async () => {
    const huge = new MemoryBackend({ blockSize: 512, blockCount: 0x1_0000_0001 });
    const { unit } = makeUnit({ backend: huge });
    const out = await run(unit, sense6(0x01), { dataInLength: 255 });
    expect(be32(out.data, 4)).toBe(0xffff_ffff);
    const long = await run(unit, sense10(0x01, { llbaa: true }), { dataInLength: 255 });
    expect(be64(long.data, 8)).toBe(0x1_0000_0001);
  });

  it('WP is set in the device-specific parameter for a read-only unit', async () => {
    const { unit } = makeUnit({ readOnly: true });
    const six = await run(unit, sense6(0x3f), { dataInLength: 255 });
    expect(six.data[2]).toBe(0x90);
    const ten = await run(unit, sense10(0x3f), { dataInLength: 255 });
    expect(ten.data[3]).toBe(0x90);
  });

  it('allocation length truncates without changing MODE DATA LENGTH', async () => {
    const { unit } = makeUnit();
    const out = await run(unit, sense6(0x3f, { alloc: 4 }), { dataInLength: 255 });
    expect(out.data.length).toBe(4);
    expect(out.data[0]).toBe(67);
  });
});

/** Current MODE SENSE(10) data with DBD, as a template for MODE SELECT(10). */
const currentPage10 = async (unit: ReturnType<typeof makeUnit>['unit'], page: number) => {
  const out = await run(unit, sense10(page, { dbd: true }), { dataInLength: 1024 });
  const data = out.data.slice();
  data[0] = 0;
  data[1] = 0;
  data[3] = 0;
  return data;
};
const currentPage6 = async (unit: ReturnType<typeof makeUnit>['unit'], page: number, dbd = true) => {
  const out = await run(unit, sense6(page, { dbd }), { dataInLength: 255 });
  const data = out.data.slice();
  data[0] = 0;
  data[2] = 0;
  return data;
};

describe('MODE SELECT', () => {
  it('clearing WCE through MODE SELECT(6) turns the write cache off and is reported by MODE SENSE', async () => {
    const { unit } = makeUnit();
    const list = await currentPage6(unit, 0x08);
    list[4 + 2] = 0;
    expectGood(await run(unit, select6(list.length), { dataOut: list }));
    expect(unit.modes.writeCacheEnabled).toBe(false);
    const after = await run(unit, sense6(0x08, { dbd: true }), { dataInLength: 255 });
    expect(after.data[4 + 2]! & 0x04).toBe(0);
  });

  it('setting D_SENSE through MODE SELECT(10) switches the unit to descriptor sense', async () => {
    const { unit } = makeUnit();
    const list = await currentPage10(unit, 0x0a);
    list[8 + 2]! |= 0x04;
    expectGood(await run(unit, select10(list.length), { dataOut: list }));
    expect(unit.modes.descriptorSense).toBe(true);
    const failed = await run(unit, sense6(0x33), { dataInLength: 255 });
    expect(failed.decoded?.format).toBe('descriptor');
  });

  it('a changed non-changeable bit is INVALID FIELD IN PARAMETER LIST at that byte and bit', async () => {
    const { unit } = makeUnit();
    const list = await currentPage10(unit, 0x08);
    list[8 + 2]! |= 0x01; // RCD is not changeable
    expectCheck(
      await run(unit, select10(list.length), { dataOut: list }),
      'INVALID_FIELD_IN_PARAMETER_LIST',
      {
        inCdb: false,
        byte: 10,
        bit: 0,
      },
    );
    const control = await currentPage10(unit, 0x0a);
    control[8 + 5] = 0x00; // TAS is not changeable (current 0x40)
    expectCheck(
      await run(unit, select10(control.length), { dataOut: control }),
      'INVALID_FIELD_IN_PARAMETER_LIST',
      {
        inCdb: false,
        byte: 13,
        bit: 6,
      },
    );
    expect(unit.modes.writeCacheEnabled).toBe(true);
  });

  it('a rejected list changes nothing, even pages before the bad one', async () => {
    const { unit } = makeUnit();
    const caching = await currentPage6(unit, 0x08);
    const control = await run(unit, sense6(0x0a, { dbd: true }), { dataInLength: 255 });
    const list = new Uint8Array([...caching, ...control.data.subarray(4)]);
    list[4 + 2] = 0; // WCE off (allowed)
    list[4 + 20 + 3] = 0x00; // queue algorithm modifier (not changeable)
    expectCheck(await run(unit, select6(list.length), { dataOut: list }), 'INVALID_FIELD_IN_PARAMETER_LIST', {
      inCdb: false,
      byte: 27,
      bit: 4,
    });
    expect(unit.modes.writeCacheEnabled).toBe(true);
  });

  it('the PS bit of a page is ignored', async () => {
    const { unit } = makeUnit();
    const list = await currentPage6(unit, 0x1c);
    list[4]! |= 0x80;
    expectGood(await run(unit, select6(list.length), { dataOut: list }));
  });

  it('a wrong PAGE LENGTH is INVALID FIELD IN PARAMETER LIST at the length byte', async () => {
    const { unit } = makeUnit();
    const list = await currentPage6(unit, 0x01);
    list[5] = 0x0b;
    const padded = new Uint8Array([...list, 0]);
    expectCheck(
      await run(unit, select6(padded.length), { dataOut: padded }),
      'INVALID_FIELD_IN_PARAMETER_LIST',
      {
        inCdb: false,
        byte: 5,
      },
    );
  });

  it('an unknown page or a subpage format page is INVALID FIELD IN PARAMETER LIST at its first byte', async () => {
    const { unit } = makeUnit();
    const unknown = new Uint8Array([0, 0, 0, 0, 0x19, 0x02, 0, 0]);
    expectCheck(await run(unit, select6(8), { dataOut: unknown }), 'INVALID_FIELD_IN_PARAMETER_LIST', {
      inCdb: false,
      byte: 4,
      bit: 5,
    });
    const subpage = new Uint8Array([0, 0, 0, 0, 0x48, 0x01, 0, 0x12]);
    expectCheck(await run(unit, select6(8), { dataOut: subpage }), 'INVALID_FIELD_IN_PARAMETER_LIST', {
      inCdb: false,
      byte: 4,
      bit: 6,
    });
  });

  it('a page cut short by the parameter list length is PARAMETER LIST LENGTH ERROR', async () => {
    const { unit } = makeUnit();
    const list = (await currentPage6(unit, 0x08)).subarray(0, 10);
    expectCheck(await run(unit, select6(list.length), { dataOut: list }), 'PARAMETER_LIST_LENGTH_ERROR');
    const oneByte = new Uint8Array([0, 0, 0, 0, 0x08]);
    expectCheck(await run(unit, select6(5), { dataOut: oneByte }), 'PARAMETER_LIST_LENGTH_ERROR');
  });

  it('a list shorter than the header is PARAMETER LIST LENGTH ERROR; length 0 is a no-op', async () => {
    const { unit } = makeUnit();
    expectCheck(await run(unit, select10(6), { dataOut: new Uint8Array(6) }), 'PARAMETER_LIST_LENGTH_ERROR');
    expectCheck(await run(unit, select6(3), { dataOut: new Uint8Array(3) }), 'PARAMETER_LIST_LENGTH_ERROR');
    expectGood(await run(unit, select6(0)));
  });

  it('PF=0 is INVALID FIELD IN CDB at byte 1 bit 4; SP=1 is SAVING PARAMETERS NOT SUPPORTED', async () => {
    const { unit } = makeUnit();
    expectCheck(await run(unit, select6(0, 0x00)), 'INVALID_FIELD_IN_CDB', { byte: 1, bit: 4 });
    expectCheck(await run(unit, select10(0, 0x11)), 'SAVING_PARAMETERS_NOT_SUPPORTED', { byte: 1, bit: 0 });
  });

  it('a block descriptor must keep the block length (pointer at the block length field)', async () => {
    const { unit } = makeUnit({ blocks: 2048, blockSize: 512 });
    const list = await currentPage6(unit, 0x08, false); // with the 8-byte descriptor
    expectGood(await run(unit, select6(list.length), { dataOut: list }));
    list[10] = 0x10; // 512 -> 4096
    expectCheck(await run(unit, select6(list.length), { dataOut: list }), 'INVALID_FIELD_IN_PARAMETER_LIST', {
      inCdb: false,
      byte: 9,
    });
  });

  it('a block descriptor may give 0 blocks (keep the capacity) but no other capacity', async () => {
    const { unit } = makeUnit({ blocks: 2048 });
    const list = new Uint8Array([0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x02, 0x00]);
    expectGood(await run(unit, select6(list.length), { dataOut: list }));
    list[6] = 0x01;
    expectCheck(await run(unit, select6(list.length), { dataOut: list }), 'INVALID_FIELD_IN_PARAMETER_LIST', {
      inCdb: false,
      byte: 4,
    });
  });

  it('the long block descriptor is accepted with LONGLBA=1 in MODE SELECT(10)', async () => {
    const { unit } = makeUnit({ blocks: 2048, blockSize: 4096 });
    const list = new Uint8Array(8 + 16);
    list[4] = 0x01;
    list[7] = 16;
    list[8 + 15] = 0; // block length 4096 at bytes 20-23
    list[8 + 14] = 0x10;
    expectGood(await run(unit, select10(list.length), { dataOut: list }));
    list[7] = 8; // LONGLBA with an 8-byte descriptor length
    expectCheck(
      await run(unit, select10(list.length), { dataOut: list }),
      'INVALID_FIELD_IN_PARAMETER_LIST',
      {
        inCdb: false,
        byte: 6,
      },
    );
  });

  it('a wrong block descriptor length or a reserved header byte is INVALID FIELD IN PARAMETER LIST', async () => {
    const { unit } = makeUnit();
    const list = new Uint8Array([0, 0, 0, 4, 0, 0, 0, 0]);
    expectCheck(await run(unit, select6(8), { dataOut: list }), 'INVALID_FIELD_IN_PARAMETER_LIST', {
      inCdb: false,
      byte: 3,
    });
    const medium = new Uint8Array([0, 0x05, 0, 0]);
    expectCheck(await run(unit, select6(4), { dataOut: medium }), 'INVALID_FIELD_IN_PARAMETER_LIST', {
      inCdb: false,
      byte: 1,
    });
    const reserved = new Uint8Array([0, 0, 0, 0, 0x02, 0, 0, 0]);
    expectCheck(await run(unit, select10(8), { dataOut: reserved }), 'INVALID_FIELD_IN_PARAMETER_LIST', {
      inCdb: false,
      byte: 4,
      bit: 1,
    });
  });

  it('a block descriptor longer than the list is PARAMETER LIST LENGTH ERROR', async () => {
    const { unit } = makeUnit();
    const list = new Uint8Array([0, 0, 0, 8, 0, 0]);
    expectCheck(await run(unit, select6(6), { dataOut: list }), 'PARAMETER_LIST_LENGTH_ERROR');
  });

  it('a change raises MODE PARAMETERS CHANGED for the other nexuses only, and only when something changed', async () => {
    const { unit } = makeUnit();
    const tur = [0, 0, 0, 0, 0, 0];
    expectGood(await run(unit, tur, { nexus: 'a' }));
    expectGood(await run(unit, tur, { nexus: 'b' }));
    const same = await currentPage6(unit, 0x08);
    expectGood(await run(unit, select6(same.length), { dataOut: same, nexus: 'a' }));
    expectGood(await run(unit, tur, { nexus: 'b' }));
    const changed = same.slice();
    changed[4 + 2] = 0;
    expectGood(await run(unit, select6(changed.length), { dataOut: changed, nexus: 'a' }));
    expectGood(await run(unit, tur, { nexus: 'a' }));
    expectCheck(await run(unit, tur, { nexus: 'b' }), 'MODE_PARAMETERS_CHANGED');
    expectGood(await run(unit, tur, { nexus: 'b' }));
  });
});

describe('ModePageStore', () => {
  it('takes its defaults from the options and exposes WCE / D_SENSE as flags', () => {
    const store = new ModePageStore({ writeCacheEnabled: false, descriptorSense: true });
    expect(store.writeCacheEnabled).toBe(false);
    expect(store.descriptorSense).toBe(true);
    store.writeCacheEnabled = true;
    store.descriptorSense = false;
    expect(store.page(0x08, 'current')[2]! & 0x04).toBe(0x04);
    expect(store.page(0x08, 'default')[2]! & 0x04).toBe(0);
    expect(store.page(0x0a, 'current')[2]! & 0x04).toBe(0);
  });

  it('rejects unknown pages and wrong-sized updates with RangeError', () => {
    const store = new ModePageStore();
    expect(() => store.page(0x19, 'current')).toThrow(RangeError);
    expect(() => store.apply(0x08, new Uint8Array(3))).toThrow(RangeError);
    expect(store.has(0x1c)).toBe(true);
  });
});

describe('MODE SENSE/SELECT CDB codecs round-trip', () => {
  const byName = new Map(modeCommands.map((e) => [e.name, e]));
  it.each([
    ['MODE SENSE(6)', [0x1a, 0x08, 0x88, 0x00, 0xc0, 0x00]],
    ['MODE SENSE(10)', [0x5a, 0x18, 0x7f, 0xff, 0, 0, 0, 0x12, 0x34, 0x00]],
    ['MODE SELECT(6)', [0x15, 0x10, 0, 0, 0x18, 0x00]],
    ['MODE SELECT(10)', [0x55, 0x10, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]],
  ])('%s', (name, bytes) => {
    const entry = byName.get(name)!;
    const cdb = Uint8Array.from(bytes);
    expect([...entry.encode!(entry.decode(cdb))]).toEqual(bytes);
  });
});
