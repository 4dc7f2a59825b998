import { createHash } from 'node:crypto';
import { naaFromSerial } from '@tcmu/scsi';
import { InvalidDeviceOptionError } from './errors.js';

/**
 * Device names become a configfs directory, part of the UIO name and a file
 * under nodeDir: a conservative charset keeps every one of them valid.
 */
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
export const MAX_NAME_LENGTH = 64;

export function validateName(name: unknown, option = 'name'): string {
  if (typeof name !== 'string' || name.length === 0)
    throw new InvalidDeviceOptionError(option, 'must be a non-empty string');
  if (name.length > MAX_NAME_LENGTH) {
    throw new InvalidDeviceOptionError(
      option,
      `'${name.slice(0, 20)}…' is longer than ${MAX_NAME_LENGTH} characters`,
    );
  }
  if (!NAME_PATTERN.test(name)) {
    throw new InvalidDeviceOptionError(
      option,
      `'${name}' may only contain letters, digits, '.', '_' and '-', and must start with a letter or digit`,
    );
  }
  return name;
}

/** The IEEE company id (OUI) LIO uses for its NAA designators (OpenFabrics, 00-14-05). */
const LIO_OUI = 0x001405;

const digest = (...parts: string[]): Buffer => createHash('sha256').update(parts.join('\0')).digest();

export interface DeviceIdentity {
  /** VPD 0x80 unit serial number (printable ASCII). */
  readonly serial: string;
  /** 16-byte NAA IEEE Registered Extended designator (NAA 6) for VPD 0x83. */
  readonly naa: Uint8Array;
}

export interface IdentityOptions {
  /** Unit serial; default: 32 hex digits derived from the name (stable across runs). */
  readonly serial?: string;
  /** NAA designator as 32 hex digits (starting with 6) or 16 bytes; default derived from the serial (@tcmu/scsi naaFromSerial). */
  readonly naa?: string | Uint8Array;
}

// SPC-5 7.7.3.2: the serial is ASCII graphic characters; 255 keeps it inside configfs' limits.
const SERIAL_PATTERN = /^[\x21-\x7e]{1,255}$/;

function parseNaa(value: string | Uint8Array): Uint8Array {
  const bytes =
    typeof value === 'string'
      ? /^(0x)?[0-9a-fA-F]{32}$/.test(value)
        ? Uint8Array.from(Buffer.from(value.replace(/^0x/, ''), 'hex'))
        : undefined
      : value.length === 16
        ? Uint8Array.from(value)
        : undefined;
  if (!bytes) throw new InvalidDeviceOptionError('identity.naa', 'must be 16 bytes or 32 hex digits');
  if (bytes[0]! >> 4 !== 6)
    throw new InvalidDeviceOptionError(
      'identity.naa',
      'must be an NAA 6 (IEEE Registered Extended) designator',
    );
  return bytes;
}

/** The unit serial and NAA designator of a device, from options or derived from its name. */
export function resolveIdentity(name: string, options: IdentityOptions = {}): DeviceIdentity {
  const serial = options.serial ?? digest('tcmu-node serial', name).subarray(0, 16).toString('hex');
  if (!SERIAL_PATTERN.test(serial)) {
    throw new InvalidDeviceOptionError(
      'identity.serial',
      'must be 1-255 printable ASCII characters without spaces',
    );
  }
  const naa = options.naa === undefined ? naaFromSerial(serial) : parseNaa(options.naa);
  return { serial, naa };
}

/**
 * A tcm_loop / SAS-style WWN `naa.5001405<9 hex>` derived from a seed, so the
 * same device name gets the same target port name on every run.
 */
export function loopbackWwn(seed: string, role: 'target' | 'initiator'): string {
  const hash = digest('tcmu-node wwn', role, seed).toString('hex');
  return `naa.5${LIO_OUI.toString(16).padStart(6, '0')}${hash.slice(0, 9)}`;
}

/** An iSCSI target IQN for a device name. */
export function defaultIqn(name: string): string {
  return `iqn.2003-01.org.linux-iscsi.tcmu-node:${name.toLowerCase().replaceAll('_', '-')}`;
}
