import type { OpcodeEntry } from '../core/command.js';

// biome-ignore lint/suspicious/noExplicitAny: a table mixes entries of different field types
export const compareAndWriteCommands: OpcodeEntry<any>[] = [];
