import type { LogicalUnitState } from '../core/command.js';
import { ScsiError } from '../core/scsi-error.js';

/** Thrown by CopyManager.register for a designator another unit already holds. */
export class CopyManagerError extends ScsiError {
  static override readonly brand: string = '@tcmu/scsi.CopyManagerError';
  override readonly name = 'CopyManagerError';
}

const hex = (bytes: Uint8Array): string => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

const managers = new WeakMap<LogicalUnitState, CopyManager>();

/**
 * The logical units one EXTENDED COPY may reach, by their NAA designator
 * (config.naa, VPD 0x83). A unit not registered anywhere can still copy
 * within itself.
 */
export class CopyManager {
  readonly #units = new Map<string, LogicalUnitState>();

  /** The manager a unit is registered with, if any. */
  static of(unit: LogicalUnitState): CopyManager | undefined {
    return managers.get(unit);
  }

  /** Make `unit` reachable by copies issued to any unit of this manager; returns `unregister`. */
  register(unit: LogicalUnitState): () => void {
    const key = hex(unit.config.naa);
    const holder = this.#units.get(key);
    if (holder !== undefined && holder !== unit) {
      throw new CopyManagerError(`another unit is already registered with NAA designator ${key}`);
    }
    const other = managers.get(unit);
    if (other !== undefined && other !== this)
      throw new CopyManagerError('the unit is registered with another CopyManager');
    this.#units.set(key, unit);
    managers.set(unit, this);
    return () => this.unregister(unit);
  }

  unregister(unit: LogicalUnitState): void {
    const key = hex(unit.config.naa);
    if (this.#units.get(key) === unit) this.#units.delete(key);
    if (managers.get(unit) === this) managers.delete(unit);
  }

  /** Registered units. */
  get units(): readonly LogicalUnitState[] {
    return [...this.#units.values()];
  }

  /** The unit whose NAA designator equals `designator` exactly. */
  resolve(designator: Uint8Array): LogicalUnitState | undefined {
    return this.#units.get(hex(designator));
  }
}

/** Find the unit a designator names, from the point of view of `issuer`. */
export const resolveCopyTarget = (
  issuer: LogicalUnitState,
  designator: Uint8Array,
): LogicalUnitState | undefined => {
  const manager = CopyManager.of(issuer);
  if (manager !== undefined) return manager.resolve(designator);
  return hex(issuer.config.naa) === hex(designator) ? issuer : undefined;
};
