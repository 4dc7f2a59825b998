import type { ModeState } from '../core/command.js';

export interface ModePageStoreOptions {
  readonly writeCacheEnabled?: boolean;
  readonly descriptorSense?: boolean;
  readonly readOnly?: boolean;
}

/** The unit's mode parameters (current values). */
export class ModePageStore implements ModeState {
  writeCacheEnabled: boolean;
  descriptorSense: boolean;
  readonly readOnly: boolean;

  constructor(options: ModePageStoreOptions = {}) {
    this.writeCacheEnabled = options.writeCacheEnabled ?? true;
    this.descriptorSense = options.descriptorSense ?? false;
    this.readOnly = options.readOnly ?? false;
  }
}
