import type { RingCommand } from '@tcmu/ring';
import type { DeviceCommand } from './handler.js';

/** Which way data flows for a CDB, from the opcode table ('unknown' when it is not in it). */
export type Direction = 'none' | 'in' | 'out' | 'bidi' | 'unknown';

const EMPTY = new Uint8Array(0);

/**
 * A ring command seen through the handler API. The ring hands over one main
 * buffer whose direction depends on the opcode, so the opcode table decides
 * what is Data-Out and what is Data-In. Views and the AbortSignal are made
 * lazily: most commands never ask for them.
 */
export class IncomingCommand implements DeviceCommand {
  readonly id: number;
  readonly cdb: Uint8Array;
  readonly opcode: number;
  readonly dataInLength: number;
  readonly nexus: string;
  readonly device: string;
  readonly receivedAt: number;
  readonly direction: Direction;
  readonly ring: RingCommand;
  /** @internal bound of a command that arrived after close()'s drain deadline */
  deadline: ReturnType<typeof setTimeout> | undefined;
  #dataOut: Uint8Array | undefined;
  #abort: AbortController | undefined;
  #abortReason: unknown;

  constructor(ring: RingCommand, direction: Direction, device: string, nexus: string) {
    this.ring = ring;
    this.id = ring.id;
    this.cdb = ring.cdb;
    this.opcode = ring.cdb[0] ?? 0;
    this.direction = direction;
    this.device = device;
    this.nexus = nexus;
    this.receivedAt = performance.now();
    this.dataInLength = carriesDataIn(direction) ? ring.dataInLength : 0;
  }

  get dataOut(): Uint8Array {
    if (this.#dataOut === undefined) {
      this.#dataOut =
        carriesDataOut(this.direction) && this.ring.dataOutLength > 0 ? this.ring.dataOut() : EMPTY;
    }
    return this.#dataOut;
  }

  /** The Data-Out length without touching the ring's buffer. */
  get dataOutLength(): number {
    return carriesDataOut(this.direction) ? this.ring.dataOutLength : 0;
  }

  /**
   * One controller per command, made on first use; the device aborts it on a
   * kernel TMR naming the command or at the drain deadline of close().
   */
  get signal(): AbortSignal {
    if (!this.#abort) {
      this.#abort = new AbortController();
      if (this.#abortReason !== undefined) this.#abort.abort(this.#abortReason);
    }
    return this.#abort.signal;
  }

  /** Aborted (TMR or close() deadline): polled without building the signal. */
  get aborted(): boolean {
    return this.#abort ? this.#abort.signal.aborted : this.#abortReason !== undefined;
  }

  /** @internal */
  abort(reason: unknown): void {
    if (this.#abort) {
      if (!this.#abort.signal.aborted) this.#abort.abort(reason);
    } else if (this.#abortReason === undefined) {
      this.#abortReason = reason;
    }
  }
}

/** Unknown opcodes keep the buffer both ways: the handler that knows the opcode decides. */
export const carriesDataIn = (direction: Direction): boolean =>
  direction === 'in' || direction === 'bidi' || direction === 'unknown';

export const carriesDataOut = (direction: Direction): boolean =>
  direction === 'out' || direction === 'bidi' || direction === 'unknown';
