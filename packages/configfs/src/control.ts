import { InvalidOptionError } from './errors.js';
import { validateBackingFile, validateDevConfig, validateInteger } from './validate.js';

export type BackstorePlugin = 'user' | 'fileio';

/** What CONTROL_KEYS accepts for one `control` key: an integer range or any string. */
export type ControlKeySpec =
  | { readonly kind: 'int'; readonly min: number; readonly max: number }
  | { readonly kind: 'string' };

const I32_MAX = 2 ** 31 - 1;

// The kernel silently ignores unknown `control` keys (match_token falls through),
// so we only ever write keys we know: tcmu_set_configfs_dev_params / fd_set_configfs_dev_params.
export const CONTROL_KEYS: Readonly<Record<BackstorePlugin, Readonly<Record<string, ControlKeySpec>>>> = {
  user: {
    dev_config: { kind: 'string' },
    dev_size: { kind: 'int', min: 1, max: Number.MAX_SAFE_INTEGER },
    hw_block_size: { kind: 'int', min: 512, max: 65536 },
    hw_max_sectors: { kind: 'int', min: 1, max: I32_MAX },
    max_data_area_mb: { kind: 'int', min: 1, max: I32_MAX },
    data_pages_per_blk: { kind: 'int', min: 1, max: I32_MAX },
    cmd_ring_size_mb: { kind: 'int', min: 1, max: 8 },
    nl_reply_supported: { kind: 'int', min: -128, max: 127 },
  },
  fileio: {
    fd_dev_name: { kind: 'string' },
    fd_dev_size: { kind: 'int', min: 1, max: Number.MAX_SAFE_INTEGER },
    fd_buffered_io: { kind: 'int', min: 1, max: 1 },
  },
};

/** `control` keys and values, written as `k=v,k=v` by renderControl. */
export type ControlValues = Readonly<Record<string, string | number>>;

/** Validates every key and value, then renders `k=v,k=v` for one write to `control`. */
export function renderControl(plugin: BackstorePlugin, values: ControlValues): string {
  const specs = CONTROL_KEYS[plugin];
  const tokens: string[] = [];
  for (const [key, value] of Object.entries(values)) {
    const spec = specs[key];
    if (!spec) {
      throw new InvalidOptionError(
        `control.${key}`,
        `unknown ${plugin} control key (known: ${Object.keys(specs).join(', ')})`,
      );
    }
    if (spec.kind === 'int') {
      validateInteger(`control.${key}`, value, spec.min, spec.max);
    } else if (key === 'dev_config') {
      validateDevConfig(value);
    } else if (key === 'fd_dev_name') {
      validateBackingFile(value);
    }
    tokens.push(`${key}=${value}`);
  }
  return tokens.join(',');
}

/** Parses a rendered control string (saveconfig's `control` field) back into values. */
export function parseControl(plugin: BackstorePlugin, text: string): Record<string, string | number> {
  const values: Record<string, string | number> = {};
  for (const token of text.split(/[,\n]/)) {
    if (token.trim() === '') continue;
    const eq = token.indexOf('=');
    if (eq <= 0) throw new InvalidOptionError('control', `token "${token}" is not key=value`);
    const key = token.slice(0, eq).trim();
    const raw = token.slice(eq + 1).trim();
    const spec = CONTROL_KEYS[plugin][key];
    if (!spec) throw new InvalidOptionError(`control.${key}`, `unknown ${plugin} control key`);
    values[key] = spec.kind === 'int' ? Number(raw) : raw;
  }
  renderControl(plugin, values);
  return values;
}

// Attributes we let callers write (`attrib/<name>`), integers only. TCMU ones are
// written before `enable` so no netlink RECONFIG is sent; fileio ones after
// `enable`, because target_configure_device() resets block_size and friends.
export const WRITABLE_ATTRIBUTES: Readonly<
  Record<BackstorePlugin, Readonly<Record<string, readonly [number, number]>>>
> = {
  user: {
    cmd_time_out: [0, I32_MAX],
    qfull_time_out: [-1, I32_MAX],
    emulate_write_cache: [0, 1],
    tmr_notification: [0, 1],
    emulate_pr: [0, 1],
    enforce_pr_isids: [0, 1],
    force_pr_aptpl: [0, 1],
  },
  fileio: {
    block_size: [512, 65536],
    emulate_write_cache: [0, 1],
    emulate_fua_write: [0, 1],
    emulate_tpu: [0, 1],
    emulate_tpws: [0, 1],
    emulate_caw: [0, 1],
    emulate_3pc: [0, 1],
    emulate_pr: [0, 1],
    emulate_tas: [0, 1],
    emulate_ua_intlck_ctrl: [0, 2],
    enforce_pr_isids: [0, 1],
    force_pr_aptpl: [0, 1],
    is_nonrot: [0, 1],
    optimal_sectors: [1, I32_MAX],
    queue_depth: [1, I32_MAX],
    max_unmap_lba_count: [0, I32_MAX],
    max_unmap_block_desc_count: [0, I32_MAX],
    unmap_granularity: [0, I32_MAX],
    unmap_granularity_alignment: [0, I32_MAX],
    max_write_same_len: [0, I32_MAX],
    unmap_zeroes_data: [0, 1],
  },
};

export type Attributes = Readonly<Record<string, number>>;

export function validateAttributes(plugin: BackstorePlugin, attributes: Attributes | undefined): Attributes {
  const allowed = WRITABLE_ATTRIBUTES[plugin];
  for (const [name, value] of Object.entries(attributes ?? {})) {
    const range = allowed[name];
    if (!range) {
      throw new InvalidOptionError(
        `attributes.${name}`,
        `not a writable ${plugin} attribute (known: ${Object.keys(allowed).join(', ')})`,
      );
    }
    validateInteger(`attributes.${name}`, value, range[0], range[1]);
  }
  return attributes ?? {};
}

/** The `info` file of a backstore, typed. Fields the plugin does not print are absent. */
export interface BackstoreInfo {
  readonly status?: string;
  readonly maxQueueDepth?: number;
  readonly sectorSize?: number;
  readonly hwMaxSectors?: number;
  /** TCMU: dev_config (`undefined` when the kernel prints NULL). */
  readonly config?: string;
  readonly size?: number;
  readonly maxDataAreaMb?: number;
  readonly dataPagesPerBlk?: number;
  readonly cmdRingSizeMb?: number;
  /** fileio: backing file and mode (`O_DSYNC`, `Buffered-WCE`...). */
  readonly file?: string;
  readonly mode?: string;
  readonly fileioId?: number;
  readonly raw: string;
}

// Labels printed by transport_dump_dev_state, tcmu_show_configfs_dev_params and
// fd_show_configfs_dev_params. Values never contain two spaces, labels end in ": ".
const INFO_LABELS: ReadonlyArray<readonly [string, keyof BackstoreInfo, 'int' | 'string']> = [
  ['Status', 'status', 'string'],
  ['Max Queue Depth', 'maxQueueDepth', 'int'],
  ['SectorSize', 'sectorSize', 'int'],
  ['HwMaxSectors', 'hwMaxSectors', 'int'],
  ['Config', 'config', 'string'],
  ['Size', 'size', 'int'],
  ['MaxDataAreaMB', 'maxDataAreaMb', 'int'],
  ['DataPagesPerBlk', 'dataPagesPerBlk', 'int'],
  ['CmdRingSizeMB', 'cmdRingSizeMb', 'int'],
  ['TCM FILEIO ID', 'fileioId', 'int'],
  ['File', 'file', 'string'],
  ['Mode', 'mode', 'string'],
];

export function parseBackstoreInfo(raw: string): BackstoreInfo {
  const info: Record<string, unknown> = { raw };
  for (const [label, key, kind] of INFO_LABELS) {
    // A label starts the text or follows whitespace; its value is the next token.
    const match = new RegExp(`(?:^|\\s)${label}: (\\S+)`).exec(raw);
    if (!match) continue;
    const value = match[1]!;
    if (kind === 'int') {
      const n = Number(value);
      if (Number.isFinite(n)) info[key] = n;
    } else if (!(key === 'config' && value === 'NULL')) {
      info[key] = value;
    }
  }
  return info as unknown as BackstoreInfo;
}
