import type { FormatStatus, OpcodeEntry } from '../core/command.js';

/** FORMAT UNIT state: whether one runs and how far it is (SPC-5 4.4.2.4.4 progress). */
export class FormatState implements FormatStatus {
  #active = false;
  #progress = 0;

  get active(): boolean {
    return this.#active;
  }

  /** 0..65535 of the way through the running format (0 when idle). */
  get progress(): number {
    return this.#progress;
  }
}

// biome-ignore lint/suspicious/noExplicitAny: a table mixes entries of different field types
export const formatCommands: OpcodeEntry<any>[] = [];
