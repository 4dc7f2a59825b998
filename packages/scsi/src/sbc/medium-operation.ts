import type { LogicalUnitState } from '../core/command.js';
import { flushBackend } from '../core/io.js';
import { chunkBlocks } from './medium-access.js';

/**
 * An operation over the whole medium that other commands wait out (FORMAT
 * UNIT, SANITIZE): whether one runs, how far it is (SPC-5 4.4.2.4.4 progress
 * indication) and why the last one failed.
 */
export class MediumOperationState {
  #active = false;
  #progress = 0;
  #lastError: unknown;
  readonly #onChange: (() => void) | undefined;

  /** `onChange` runs when an operation begins, ends or fails. */
  constructor(onChange?: () => void) {
    this.#onChange = onChange;
  }

  get active(): boolean {
    return this.#active;
  }

  /** 0..65535 of the way through the running operation (0 when idle). */
  get progress(): number {
    return this.#progress;
  }

  /** The failure of the last operation, if it failed (a background one cannot report it otherwise). */
  get lastError(): unknown {
    return this.#lastError;
  }

  /** Record that `done` of `total` units of work are complete. */
  advance(done: number, total: number): void {
    if (this.#active && total > 0) this.#progress = Math.min(0xffff, Math.floor((done / total) * 0x10000));
  }

  /** Mark an operation as started; false if one is already running. */
  protected start(): boolean {
    if (this.#active) return false;
    this.#active = true;
    this.#progress = 0;
    this.#lastError = undefined;
    this.changed();
    return true;
  }

  /** Mark the running operation as over, with its failure if it failed. */
  protected finish(error?: unknown): void {
    this.#active = false;
    this.#progress = 0;
    this.#lastError = error;
    this.changed();
  }

  protected changed(): void {
    this.#onChange?.();
  }
}

/**
 * Visit the whole medium chunk by chunk, `passes` times, under an exclusive
 * lock over every block (in-flight commands finish first), reporting progress
 * to `state`; then flush, so the result is on the medium and not only in a cache.
 */
export const sweepMedium = async (
  unit: LogicalUnitState,
  state: MediumOperationState,
  visit: (lba: number, blocks: number, pass: number) => void | Promise<void>,
  options: { readonly passes?: number; readonly signal?: AbortSignal } = {},
): Promise<void> => {
  const total = unit.backend.blockCount;
  const passes = options.passes ?? 1;
  const release = await unit.locks.lock(0, total, 'exclusive');
  try {
    const step = chunkBlocks(unit.backend.blockSize);
    for (let pass = 0; pass < passes; pass++) {
      for (let at = 0; at < total; at += step) {
        const n = Math.min(step, total - at);
        await visit(at, n, pass);
        state.advance(pass * total + at + n, passes * total);
      }
    }
    await flushBackend(unit, options.signal);
  } finally {
    release();
  }
};
