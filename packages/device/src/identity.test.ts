import { describe, expect, it } from 'vitest';
import { InvalidDeviceOptionError } from './errors.js';
import { defaultIqn, loopbackWwn, resolveIdentity, validateName } from './identity.js';

describe('validateName', () => {
  it.each(['vol0', 'a', 'db-1.data_x', 'A'.repeat(64)])('accepts %s', (name) => {
    expect(validateName(name)).toBe(name);
  });

  it.each([
    ['', /non-empty/],
    ['a/b', /may only contain/],
    ['a:b', /may only contain/],
    ['..', /may only contain/],
    ['-x', /start with/],
    ['has space', /may only contain/],
    ['tab\t', /may only contain/],
    ['A'.repeat(65), /longer than 64/],
  ])('rejects %j', (name, message) => {
    expect(() => validateName(name)).toThrow(InvalidDeviceOptionError);
    expect(() => validateName(name)).toThrow(message);
  });

  it('rejects non-strings', () => {
    expect(() => validateName(42)).toThrow(InvalidDeviceOptionError);
  });
});

describe('resolveIdentity', () => {
  it('derives a stable serial and NAA from the name, different per name', () => {
    const a = resolveIdentity('vol0');
    expect(resolveIdentity('vol0')).toEqual(a);
    const b = resolveIdentity('vol1');
    expect(b.serial).not.toBe(a.serial);
    expect(Buffer.from(b.naa).equals(Buffer.from(a.naa))).toBe(false);
    expect(a.serial).toMatch(/^[0-9a-f]{32}$/);
  });

  it('makes an NAA 6 designator with the LIO OUI 00-14-05', () => {
    const { naa } = resolveIdentity('abc');
    expect(naa).toHaveLength(16);
    const hex = Buffer.from(naa).toString('hex');
    expect(hex.slice(0, 7)).toBe('6001405');
  });

  it('takes a given serial and NAA', () => {
    const id = resolveIdentity('vol0', { serial: 'SN-1', naa: '6001405aabbccddeeff0011223344556' });
    expect(id.serial).toBe('SN-1');
    expect(Buffer.from(id.naa).toString('hex')).toBe('6001405aabbccddeeff0011223344556');
    const bytes = Uint8Array.from(Buffer.from('60014050000000000000000000000001', 'hex'));
    expect(resolveIdentity('vol0', { naa: bytes }).naa).toEqual(bytes);
  });

  it.each([
    [{ serial: '' }, /identity.serial/],
    [{ serial: 'with space' }, /identity.serial/],
    [{ naa: '1234' }, /identity.naa/],
    [{ naa: '5001405aabbccddeeff0011223344556' }, /NAA 6/],
    [{ naa: new Uint8Array(8) }, /identity.naa/],
  ])('rejects %j', (options, message) => {
    expect(() => resolveIdentity('vol0', options)).toThrow(message);
  });
});

describe('WWNs and IQNs', () => {
  it('derives distinct, stable loopback WWNs for target and initiator', () => {
    const target = loopbackWwn('vol0', 'target');
    expect(target).toMatch(/^naa\.5001405[0-9a-f]{9}$/);
    expect(loopbackWwn('vol0', 'target')).toBe(target);
    expect(loopbackWwn('vol0', 'initiator')).not.toBe(target);
    expect(loopbackWwn('vol1', 'target')).not.toBe(target);
  });

  it('makes an IQN in lowercase without underscores', () => {
    expect(defaultIqn('My_Vol')).toBe('iqn.2003-01.org.linux-iscsi.tcmu-node:my-vol');
  });
});
