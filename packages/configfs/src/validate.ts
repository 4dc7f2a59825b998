import { isIPv4, isIPv6 } from 'node:net';
import { InvalidNameError, InvalidOptionError } from './errors.js';
import type { ChapCredentials } from './model.js';

// Object names become configfs directory names and parts of the UIO name
// `tcm-user/<hba>/<name>/<dev_config>` (at most 255 bytes): keep them short and plain.
const OBJECT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
export const MAX_OBJECT_NAME = 64;

/** Backstore names, LUN aliases: letters, digits, `.`, `_`, `-`; no `..`; 1–64 chars. */
export function validateObjectName(kind: string, value: unknown): string {
  if (typeof value !== 'string') throw new InvalidNameError(kind, String(value), 'must be a string');
  if (value.length === 0) throw new InvalidNameError(kind, value, 'must not be empty');
  if (value.length > MAX_OBJECT_NAME) {
    throw new InvalidNameError(kind, value, `longer than ${MAX_OBJECT_NAME} characters`);
  }
  if (value.includes('..')) throw new InvalidNameError(kind, value, 'must not contain ".."');
  if (!OBJECT_NAME.test(value)) {
    throw new InvalidNameError(
      kind,
      value,
      'only letters, digits, ".", "_" and "-" are allowed, starting with a letter or digit',
    );
  }
  return value;
}

const NAA_WWN = /^naa\.[0-9a-f]{16}$/;

/** Loopback (SAS-emulating) WWN: `naa.` followed by 16 hex digits. Returned lower-cased. */
export function validateNaaWwn(kind: string, value: unknown): string {
  if (typeof value !== 'string') throw new InvalidNameError(kind, String(value), 'must be a string');
  const wwn = value.toLowerCase();
  if (!NAA_WWN.test(wwn)) throw new InvalidNameError(kind, value, 'expected naa. followed by 16 hex digits');
  return wwn;
}

// RFC 3720 3.2.6.3.1: iqn.yyyy-mm.<reversed domain>[:<unique name>], at most 223 bytes.
const IQN =
  /^iqn\.(\d{4})-(\d{2})\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::[a-z0-9.:_-]+)?$/;
export const MAX_IQN = 223;

export function validateIqn(kind: string, value: unknown): string {
  if (typeof value !== 'string') throw new InvalidNameError(kind, String(value), 'must be a string');
  if (value.length > MAX_IQN) throw new InvalidNameError(kind, value, `longer than ${MAX_IQN} characters`);
  if (value !== value.toLowerCase()) throw new InvalidNameError(kind, value, 'IQNs are lower case');
  const match = IQN.exec(value);
  if (!match) {
    throw new InvalidNameError(kind, value, 'expected iqn.yyyy-mm.reversed.domain[:name]');
  }
  const month = Number(match[2]);
  if (month < 1 || month > 12) throw new InvalidNameError(kind, value, 'month must be 01-12');
  return value;
}

export interface Portal {
  readonly ip: string;
  readonly port: number;
}

/** Parses `ip:port`, `[v6]:port` or `{ip, port}`; returns the canonical portal. */
export function validatePortal(value: unknown): Portal {
  let ip: unknown;
  let port: unknown = 3260;
  if (typeof value === 'string') {
    const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(value);
    const plain = /^([^:[\]]+)(?::(\d+))?$/.exec(value);
    const match = bracketed ?? plain;
    if (!match) throw new InvalidNameError('portal', value, 'expected ip:port or [ipv6]:port');
    ip = match[1];
    if (match[2] !== undefined) port = Number(match[2]);
  } else if (typeof value === 'object' && value !== null) {
    ip = (value as { ip?: unknown }).ip;
    port = (value as { port?: unknown }).port ?? 3260;
  } else {
    throw new InvalidNameError('portal', String(value), 'expected ip:port or {ip, port}');
  }
  if (typeof ip !== 'string' || !(isIPv4(ip) || isIPv6(ip))) {
    throw new InvalidNameError('portal address', String(ip), 'not an IPv4 or IPv6 address');
  }
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new InvalidNameError('portal port', String(port), 'must be an integer 1-65535');
  }
  return { ip: ip.toLowerCase(), port };
}

/** The configfs directory name of a portal: `1.2.3.4:3260` or `[::1]:3260`. */
export function portalDirName(portal: Portal): string {
  return isIPv6(portal.ip) ? `[${portal.ip}]:${portal.port}` : `${portal.ip}:${portal.port}`;
}

export function validateInteger(option: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw new InvalidOptionError(option, `must be an integer, got ${JSON.stringify(value)}`);
  }
  if (value < min || value > max)
    throw new InvalidOptionError(option, `must be within ${min}..${max}, got ${value}`);
  return value;
}

/** LUN numbers (`lun_<n>`); LIO accepts u64 but initiators and tcm_loop use the low range. */
export const MAX_LUN = 65535;
/** tcm_loop refuses tpgt >= TL_TPGS_PER_HBA (32). */
export const MAX_LOOPBACK_TPGT = 31;
export const MAX_ISCSI_TPGT = 65535;

const LOGICAL_BLOCK_SIZES = [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536];

export function validateBlockSize(option: string, value: unknown): number {
  if (typeof value !== 'number' || !LOGICAL_BLOCK_SIZES.includes(value)) {
    throw new InvalidOptionError(option, `must be one of ${LOGICAL_BLOCK_SIZES.join(', ')}`);
  }
  return value;
}

/** Device size in bytes: a positive whole number of blocks. */
export function validateSize(option: string, value: unknown, blockSize: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new InvalidOptionError(
      option,
      `must be a positive integer number of bytes, got ${JSON.stringify(value)}`,
    );
  }
  if (value % blockSize !== 0) {
    throw new InvalidOptionError(option, `${value} is not a multiple of the block size ${blockSize}`);
  }
  return value;
}

// `control` tokens are split on `,` and newlines by the kernel (match_token), so
// no value we write may contain them.
const CONTROL_UNSAFE = /[,\n\r]/;
/** True when the string holds an ASCII control character (C0 or DEL). */
function hasControlChar(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}

/** `dev_config` of a TCMU backstore: `<subtype>/<cfgstring>`, no `:` (rtslib), at most 255 bytes. */
export function validateDevConfig(value: unknown): string {
  if (typeof value !== 'string') throw new InvalidOptionError('devConfig', 'must be a string');
  if (!value.includes('/') || value.startsWith('/')) {
    throw new InvalidOptionError('devConfig', `"${value}" must look like <subtype>/<config>`);
  }
  if (value.includes(':')) throw new InvalidOptionError('devConfig', 'must not contain ":"');
  if (CONTROL_UNSAFE.test(value) || hasControlChar(value) || /\s/.test(value)) {
    throw new InvalidOptionError('devConfig', 'must not contain ",", whitespace or control characters');
  }
  if (Buffer.byteLength(value) > 255) throw new InvalidOptionError('devConfig', 'longer than 255 bytes');
  return value;
}

/** Backing file of a fileio backstore: absolute, at most 255 bytes (FD_MAX_DEV_NAME). */
export function validateBackingFile(value: unknown): string {
  if (typeof value !== 'string' || !value.startsWith('/')) {
    throw new InvalidOptionError('file', `must be an absolute path, got ${JSON.stringify(value)}`);
  }
  if (CONTROL_UNSAFE.test(value) || hasControlChar(value) || /\s/.test(value)) {
    throw new InvalidOptionError('file', 'must not contain ",", whitespace or control characters');
  }
  if (Buffer.byteLength(value) > 255) throw new InvalidOptionError('file', 'longer than 255 bytes');
  return value;
}

/** T10 unit serial (`wwn/vpd_unit_serial`): printable ASCII without spaces, at most 254 bytes. */
export function validateSerial(value: unknown): string {
  if (typeof value !== 'string' || !/^[\x21-\x7e]{1,254}$/.test(value)) {
    throw new InvalidOptionError('serial', 'must be 1-254 printable ASCII characters without spaces');
  }
  return value;
}

/** CHAP user id / secret: 1-255 printable characters without whitespace. */
export function validateChapField(option: string, value: unknown): string {
  if (typeof value !== 'string' || !/^[\x21-\x7e]{1,255}$/.test(value)) {
    throw new InvalidOptionError(option, 'must be 1-255 printable ASCII characters without spaces');
  }
  return value;
}

/** CHAP credentials; mutual CHAP needs both halves and a secret of its own. */
export function validateChapCredentials(where: string, chap: ChapCredentials): ChapCredentials {
  if (typeof chap !== 'object' || chap === null) throw new InvalidOptionError(where, 'must be an object');
  const userid = validateChapField(`${where}.userid`, chap.userid);
  const password = validateChapField(`${where}.password`, chap.password);
  if ((chap.mutualUserid === undefined) !== (chap.mutualPassword === undefined)) {
    throw new InvalidOptionError(
      `${where}.mutualPassword`,
      'mutual CHAP needs both mutualUserid and mutualPassword',
    );
  }
  if (chap.mutualUserid === undefined) return { userid, password };
  const mutualUserid = validateChapField(`${where}.mutualUserid`, chap.mutualUserid);
  const mutualPassword = validateChapField(`${where}.mutualPassword`, chap.mutualPassword);
  // RFC 7143 (CHAP considerations): one secret for both directions would let a reflection attack through.
  if (mutualPassword === password) {
    throw new InvalidOptionError(`${where}.mutualPassword`, "must differ from the initiator's password");
  }
  return { userid, password, mutualUserid, mutualPassword };
}
