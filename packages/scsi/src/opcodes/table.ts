import { be16 } from '../core/bytes.js';
import type { LogicalUnitState, OpcodeEntry } from '../core/command.js';
import { ScsiCheckCondition, invalidCdbField } from '../core/errors.js';
import { ScsiError } from '../core/scsi-error.js';

// biome-ignore lint/suspicious/noExplicitAny: a table mixes entries of different field types
export type AnyOpcodeEntry = OpcodeEntry<any>;

export const VARIABLE_LENGTH_OPCODE = 0x7f;

/**
 * CDB length from the operation code's group (SPC-5 4.2.5.1): 0 → 6, 1-2 → 10,
 * 4 → 16, 5 → 12, 0x7F → 8 + ADDITIONAL CDB LENGTH. Group 3 (reserved) and
 * 6-7 (vendor specific) have no defined length: undefined.
 */
export function cdbLengthOf(cdb: Uint8Array): number | undefined {
  if (cdb.length === 0) return undefined;
  const opcode = cdb[0]!;
  if (opcode === VARIABLE_LENGTH_OPCODE) return cdb.length >= 8 ? 8 + cdb[7]! : undefined;
  return groupLength(opcode);
}

const groupLength = (opcode: number): number | undefined => {
  switch (opcode >>> 5) {
    case 0:
      return 6;
    case 1:
    case 2:
      return 10;
    case 4:
      return 16;
    case 5:
      return 12;
    default:
      return undefined;
  }
};

/** Does the opcode carry a service action (in byte 1 bits 4:0, or bytes 8-9 for 0x7F)? */
const serviceActionLocation = (opcode: number) =>
  opcode === VARIABLE_LENGTH_OPCODE ? { byte: 8, bit: 7 } : { byte: 1, bit: 4 };

/** The service action in a CDB (undefined when the CDB is too short to hold one). */
export function serviceActionOf(cdb: Uint8Array): number | undefined {
  if (cdb[0] === VARIABLE_LENGTH_OPCODE) return cdb.length >= 10 ? be16(cdb, 8) : undefined;
  return cdb.length >= 2 ? cdb[1]! & 0x1f : undefined;
}

/**
 * The bits of each CDB byte that must be zero for `entry` under `usage`:
 * reserved bits, minus the service action (matched by the lookup), the 0x7F
 * ADDITIONAL CDB LENGTH (checked exactly) and NACA (checked first).
 */
function reservedBits(entry: AnyOpcodeEntry, usage: readonly number[], controlIndex: number): Uint8Array {
  const length = entry.cdbLength;
  const variable = entry.opcode === VARIABLE_LENGTH_OPCODE;
  const reserved = new Uint8Array(length);
  for (let i = 1; i < length; i++) reserved[i] = ~(usage[i] ?? 0) & 0xff;
  if (entry.serviceAction !== undefined) {
    if (variable) {
      reserved[8] = 0;
      reserved[9] = 0;
    } else reserved[1]! &= ~0x1f;
  }
  if (variable) reserved[7] = 0;
  // NACA is checked first, with its own pointer (SAM-5 5.11: no ACA support).
  reserved[controlIndex]! &= ~0x04;
  return reserved;
}

/**
 * One table row prepared for dispatch: the entry plus the bits of each CDB byte
 * that must be zero (reserved, per the usage mask) and where the control byte is.
 */
export class OpcodeSlot {
  readonly reserved: Uint8Array;
  readonly controlIndex: number;
  readonly mediumAccess: boolean;
  /** Reserved bits per unit-specific usage mask (`usageFor`), by mask identity. */
  readonly #reservedFor = new WeakMap<readonly number[], Uint8Array>();

  constructor(readonly entry: AnyOpcodeEntry) {
    this.controlIndex = entry.opcode === VARIABLE_LENGTH_OPCODE ? 1 : entry.cdbLength - 1;
    this.mediumAccess = entry.mediumAccess ?? entry.writes ?? false;
    this.reserved = reservedBits(entry, entry.usage, this.controlIndex);
  }

  /** The first reserved/unsupported bit set in the CDB, as INVALID FIELD IN CDB; or undefined. */
  checkCdb(cdb: Uint8Array, unit?: LogicalUnitState): ScsiCheckCondition | undefined {
    if (cdb[this.controlIndex]! & 0x04) return invalidCdbField(this.controlIndex, 2);
    let reserved = this.reserved;
    if (unit !== undefined && this.entry.usageFor !== undefined) {
      const usage = this.entry.usageFor(unit);
      let cached = this.#reservedFor.get(usage);
      if (cached === undefined) {
        cached = reservedBits(this.entry, usage, this.controlIndex);
        this.#reservedFor.set(usage, cached);
      }
      reserved = cached;
    }
    for (let i = 1; i < reserved.length; i++) {
      const bad = cdb[i]! & reserved[i]!;
      if (bad !== 0) return invalidCdbField(i, 31 - Math.clz32(bad));
    }
    return undefined;
  }
}

/** Does `unit` offer the command (its `supported` predicate, default yes)? */
export const isSupported = (entry: AnyOpcodeEntry, unit: LogicalUnitState): boolean =>
  entry.supported === undefined || entry.supported(unit);

/** The CDB usage mask `unit` honours for the command (`usageFor`, else `usage`). */
export const usageFor = (entry: AnyOpcodeEntry, unit: LogicalUnitState): readonly number[] =>
  entry.usageFor === undefined ? entry.usage : entry.usageFor(unit);

/** May the command run during a sanitize operation and after a failed one (OpcodeEntry.allowedDuringSanitize)? */
export const allowedDuringSanitize = (entry: AnyOpcodeEntry, cdb: Uint8Array): boolean => {
  const allowed = entry.allowedDuringSanitize;
  return typeof allowed === 'function' ? allowed(cdb) : allowed === true;
};

/** Thrown when an entry is malformed (a programming error, at table construction). */
export class OpcodeTableError extends ScsiError {
  static override readonly brand: string = '@tcmu/scsi.OpcodeTableError';
  override readonly name = 'OpcodeTableError';
}

const invalidOpcode = () => new ScsiCheckCondition('INVALID_COMMAND_OPERATION_CODE');
const badIu = () => new ScsiCheckCondition('INVALID_FIELD_IN_COMMAND_INFORMATION_UNIT');

/**
 * The one opcode table: parsing, dispatch, validation and REPORT SUPPORTED
 * OPERATION CODES all read it. Lookup is an array index by opcode (plus a map
 * by service action for opcodes that have them).
 */
export class OpcodeTable {
  readonly #plain: (OpcodeSlot | undefined)[] = new Array(256).fill(undefined);
  readonly #byAction: (Map<number, OpcodeSlot> | undefined)[] = new Array(256).fill(undefined);

  constructor(entries: Iterable<AnyOpcodeEntry> = []) {
    for (const entry of entries) this.set(entry);
  }

  /** Add an entry, replacing any entry with the same opcode and service action. */
  set(entry: AnyOpcodeEntry): this {
    validateEntry(entry);
    const slot = new OpcodeSlot(entry);
    if (entry.serviceAction === undefined) {
      if (this.#byAction[entry.opcode]) {
        throw new OpcodeTableError(
          `opcode 0x${hex(entry.opcode)} has service actions; ${entry.name} needs one`,
        );
      }
      this.#plain[entry.opcode] = slot;
    } else {
      if (this.#plain[entry.opcode]) {
        throw new OpcodeTableError(
          `opcode 0x${hex(entry.opcode)} has no service actions; ${entry.name} has one`,
        );
      }
      let actions = this.#byAction[entry.opcode];
      if (!actions) {
        actions = new Map();
        this.#byAction[entry.opcode] = actions;
      }
      actions.set(entry.serviceAction, slot);
    }
    return this;
  }

  /** The prepared row for an opcode (and service action), or undefined. */
  slot(opcode: number, serviceAction?: number): OpcodeSlot | undefined {
    if (serviceAction === undefined) return this.#plain[opcode];
    return this.#byAction[opcode]?.get(serviceAction);
  }

  /** The entry for an opcode (and service action), or undefined. */
  get(opcode: number, serviceAction?: number): AnyOpcodeEntry | undefined {
    if (serviceAction === undefined) return this.#plain[opcode]?.entry;
    return this.#byAction[opcode]?.get(serviceAction)?.entry;
  }

  /** The entry for an opcode (and service action) if `unit` offers it (see OpcodeEntry.supported). */
  getSupported(unit: LogicalUnitState, opcode: number, serviceAction?: number): AnyOpcodeEntry | undefined {
    const entry = this.get(opcode, serviceAction);
    return entry !== undefined && isSupported(entry, unit) ? entry : undefined;
  }

  /** True when the opcode is dispatched by service action (and, with `unit`, it offers one of them). */
  hasServiceActions(opcode: number, unit?: LogicalUnitState): boolean {
    const actions = this.#byAction[opcode];
    if (actions === undefined) return false;
    return unit === undefined || [...actions.values()].some((slot) => isSupported(slot.entry, unit));
  }

  /** Every entry in opcode, then service action order. */
  entries(): AnyOpcodeEntry[] {
    const out: AnyOpcodeEntry[] = [];
    for (let op = 0; op < 256; op++) {
      const plain = this.#plain[op];
      if (plain) out.push(plain.entry);
      const actions = this.#byAction[op];
      if (actions)
        for (const sa of [...actions.keys()].sort((a, b) => a - b)) out.push(actions.get(sa)!.entry);
    }
    return out;
  }

  /** The entries `unit` offers, in opcode, then service action order. */
  supportedEntries(unit: LogicalUnitState): AnyOpcodeEntry[] {
    return this.entries().filter((entry) => isSupported(entry, unit));
  }

  /** A copy that can be changed without affecting this table. */
  clone(): OpcodeTable {
    return new OpcodeTable(this.entries());
  }

  /**
   * Find the slot for a CDB, or the CHECK CONDITION to answer: INVALID COMMAND
   * OPERATION CODE for unknown opcodes, INVALID FIELD IN CDB at the service
   * action field for unknown service actions, and INVALID FIELD IN COMMAND
   * INFORMATION UNIT for CDBs shorter than the command (a transport error).
   * With `unit`, commands it does not offer (OpcodeEntry.supported) count as unknown.
   */
  resolve(cdb: Uint8Array, unit?: LogicalUnitState): OpcodeSlot | ScsiCheckCondition {
    if (cdb.length === 0) return badIu();
    const opcode = cdb[0]!;
    let slot = this.#plain[opcode];
    if (slot) {
      if (unit !== undefined && !isSupported(slot.entry, unit)) return invalidOpcode();
    } else {
      const actions = this.#byAction[opcode];
      if (!actions) return invalidOpcode();
      const offered = (s: OpcodeSlot | undefined): s is OpcodeSlot =>
        s !== undefined && (unit === undefined || isSupported(s.entry, unit));
      const sa = serviceActionOf(cdb);
      slot = sa === undefined ? undefined : actions.get(sa);
      if (!offered(slot)) {
        // An opcode none of whose service actions this unit offers is unsupported as a whole.
        if (![...actions.values()].some(offered)) return invalidOpcode();
        if (sa === undefined) return badIu();
        const at = serviceActionLocation(opcode);
        return invalidCdbField(at.byte, at.bit);
      }
    }
    const length = slot.entry.cdbLength;
    if (cdb.length < length) return badIu();
    // SPC-5 4.2.3: the ADDITIONAL CDB LENGTH must match the service action's CDB.
    if (opcode === VARIABLE_LENGTH_OPCODE && 8 + cdb[7]! !== length) return invalidCdbField(7);
    return slot;
  }
}

const hex = (n: number) => n.toString(16).padStart(2, '0');

function validateEntry(entry: AnyOpcodeEntry): void {
  const { opcode, cdbLength, name } = entry;
  if (!Number.isInteger(opcode) || opcode < 0 || opcode > 0xff) {
    throw new OpcodeTableError(`${name}: opcode ${opcode} is not a byte`);
  }
  const expected = opcode === VARIABLE_LENGTH_OPCODE ? undefined : groupLength(opcode);
  if (expected !== undefined && cdbLength !== expected) {
    throw new OpcodeTableError(`${name}: group ${opcode >>> 5} CDBs are ${expected} bytes, not ${cdbLength}`);
  }
  if (opcode === VARIABLE_LENGTH_OPCODE && (cdbLength < 10 || (cdbLength - 8) % 4 !== 0 || cdbLength > 260)) {
    throw new OpcodeTableError(`${name}: variable-length CDB length ${cdbLength} is invalid`);
  }
  if (!Number.isInteger(cdbLength) || cdbLength < 6 || cdbLength > 260) {
    throw new OpcodeTableError(`${name}: CDB length ${cdbLength} is invalid`);
  }
  if (entry.usage.length !== cdbLength || entry.usage[0] !== opcode) {
    throw new OpcodeTableError(`${name}: usage mask must have ${cdbLength} bytes starting with the opcode`);
  }
  if (opcode === VARIABLE_LENGTH_OPCODE && entry.serviceAction === undefined) {
    throw new OpcodeTableError(`${name}: variable-length CDBs need a service action`);
  }
}
