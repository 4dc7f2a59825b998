import type { ModeState } from '../core/command.js';

export interface ModePageStoreOptions {
  /** Caching page WCE default (true: writes may be acknowledged before they are durable). */
  readonly writeCacheEnabled?: boolean;
  /** Control page D_SENSE default (true: descriptor-format sense). */
  readonly descriptorSense?: boolean;
  /** Report WP in the mode parameter header even if the unit itself is writable. */
  readonly readOnly?: boolean;
}

/** Page control (PC) field of MODE SENSE: SPC-5 6.14.1 Table 166. */
export type PageControl = 'current' | 'changeable' | 'default';

/** Page codes this device server implements (SPC-5 7.5, SBC-4 6.5). */
export const ModePageCode = {
  READ_WRITE_ERROR_RECOVERY: 0x01,
  CACHING: 0x08,
  CONTROL: 0x0a,
  INFORMATIONAL_EXCEPTIONS_CONTROL: 0x1c,
  ALL_PAGES: 0x3f,
} as const;

interface PageDefinition {
  readonly code: number;
  /** Whole page length in bytes (PAGE LENGTH field + 2). */
  readonly size: number;
  /** Default values (PC=10b), page code and length included. */
  readonly defaults: (options: ModePageStoreOptions) => Uint8Array;
  /** Changeable mask (PC=01b): bit set = the application client may change it. */
  readonly changeable: Uint8Array;
}

const page = (code: number, size: number, fill: (p: Uint8Array) => void = () => {}): Uint8Array => {
  const p = new Uint8Array(size);
  p[0] = code;
  p[1] = size - 2;
  fill(p);
  return p;
};

const WCE = 0x04; // caching page byte 2 (SBC-4 6.5.5)
const D_SENSE = 0x04; // control page byte 2 (SPC-5 7.5.9)

/** Listed in ascending page-code order: MODE SENSE returns all pages in this order. */
const definitions: readonly PageDefinition[] = [
  // SBC-4 6.5.9: no error-recovery tuning is offered; all zero like LIO.
  { code: 0x01, size: 12, defaults: () => page(0x01, 12), changeable: page(0x01, 12) },
  {
    code: 0x08,
    size: 20,
    defaults: (o) =>
      page(0x08, 20, (p) => {
        p[2] = (o.writeCacheEnabled ?? true) ? WCE : 0;
        p[12] = 0x20; // DRA: no read-ahead is performed
      }),
    changeable: page(0x08, 20, (p) => {
      p[2] = WCE;
    }),
  },
  {
    code: 0x0a,
    size: 12,
    defaults: (o) =>
      page(0x0a, 12, (p) => {
        p[2] = 0x02 | ((o.descriptorSense ?? false) ? D_SENSE : 0); // GLTSD: no log parameters are saved
        p[3] = 0x10; // QUEUE ALGORITHM MODIFIER 1: unrestricted reordering
        p[5] = 0x40; // TAS: aborted tasks of other nexuses get TASK ABORTED status
        p[8] = 0xff; // BUSY TIMEOUT PERIOD: unlimited
        p[9] = 0xff;
      }),
    changeable: page(0x0a, 12, (p) => {
      p[2] = D_SENSE;
    }),
  },
  // SPC-5 7.5.13: no informational exception reporting (MRIE 0).
  { code: 0x1c, size: 12, defaults: () => page(0x1c, 12), changeable: page(0x1c, 12) },
];

const byCode = new Map(definitions.map((d) => [d.code, d]));

/** Page codes implemented, ascending. */
export const modePageCodes: readonly number[] = definitions.map((d) => d.code);

/**
 * The mode parameters of one logical unit: current and default values of
 * every implemented page and the mask of changeable bits. Saved values are
 * not supported (MODE SENSE PC=11b and MODE SELECT SP=1 report SAVING
 * PARAMETERS NOT SUPPORTED).
 */
export class ModePageStore implements ModeState {
  /** WP in the device-specific parameter (also set when the unit itself is read-only). */
  readonly readOnly: boolean;
  readonly #current = new Map<number, Uint8Array>();
  readonly #defaults = new Map<number, Uint8Array>();
  // Mirrors of the bits read on every command (hot path).
  #writeCacheEnabled = true;
  #descriptorSense = false;
  readonly #onChange: (() => void) | undefined;

  /** `onChange` runs after every change of the current values. */
  constructor(options: ModePageStoreOptions = {}, onChange?: () => void) {
    this.readOnly = options.readOnly ?? false;
    for (const d of definitions) {
      const defaults = d.defaults(options);
      this.#defaults.set(d.code, defaults);
      this.#current.set(d.code, defaults.slice());
    }
    this.#sync();
    this.#onChange = onChange;
  }

  get writeCacheEnabled(): boolean {
    return this.#writeCacheEnabled;
  }
  set writeCacheEnabled(on: boolean) {
    this.#setBit(0x08, 2, WCE, on);
  }

  get descriptorSense(): boolean {
    return this.#descriptorSense;
  }
  set descriptorSense(on: boolean) {
    this.#setBit(0x0a, 2, D_SENSE, on);
  }

  /** Whether `code` is an implemented page. */
  has(code: number): boolean {
    return byCode.has(code);
  }

  /** A copy of one page as MODE SENSE returns it for page control `pc`. */
  page(code: number, pc: PageControl): Uint8Array {
    const d = byCode.get(code);
    if (d === undefined) throw new RangeError(`mode page 0x${code.toString(16)} is not implemented`);
    if (pc === 'changeable') return d.changeable.slice();
    return (pc === 'default' ? this.#defaults : this.#current).get(code)!.slice();
  }

  /** The page's changeable-bit mask (do not modify). */
  changeableMask(code: number): Uint8Array | undefined {
    return byCode.get(code)?.changeable;
  }

  /**
   * Replace the current values of a page (already validated against the
   * changeable mask by MODE SELECT). Returns whether anything changed.
   */
  apply(code: number, bytes: Uint8Array): boolean {
    const current = this.#current.get(code);
    if (current === undefined || bytes.length !== current.length) {
      throw new RangeError(`mode page 0x${code.toString(16)} cannot take ${bytes.length} bytes`);
    }
    let changed = false;
    for (let i = 2; i < current.length; i++) if (current[i] !== bytes[i]) changed = true;
    current.set(bytes.subarray(2), 2);
    this.#sync();
    return changed;
  }

  #setBit(code: number, byte: number, mask: number, on: boolean): void {
    const p = this.#current.get(code)!;
    p[byte] = on ? p[byte]! | mask : p[byte]! & ~mask;
    this.#sync();
  }

  #sync(): void {
    const caching = this.#current.get(0x08);
    const control = this.#current.get(0x0a);
    this.#writeCacheEnabled = caching !== undefined && (caching[2]! & WCE) !== 0;
    this.#descriptorSense = control !== undefined && (control[2]! & D_SENSE) !== 0;
    this.#onChange?.();
  }
}
