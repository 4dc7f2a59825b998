import type { BlockBackend } from '@tcmu/scsi';
import {
  type ChapCredentials,
  InvalidNameError,
  InvalidOptionError,
  validateChapCredentials,
  validateIqn,
  validatePortal,
} from '@tcmu/configfs';
import { InvalidDeviceOptionError } from './errors.js';
import { type DeviceLogger, type Handler, type HandlerMiddleware, silentLogger } from './handler.js';
import {
  type DeviceIdentity,
  defaultIqn,
  type IdentityOptions,
  loopbackWwn,
  resolveIdentity,
  validateName,
} from './identity.js';
import type { DevicePlatform, NodeKind, TargetSpec } from './platform.js';

export type FabricOptions =
  /** tcm_loop: the LUN becomes a local SCSI disk (/dev/sdX). WWNs default to ones derived from the name. */
  | { readonly type: 'loopback'; readonly wwn?: string; readonly nexusWwn?: string }
  /**
   * An LIO iSCSI target on `portal` (default 127.0.0.1:3260). Without `initiators`: demo mode,
   * any initiator, no CHAP. With them: only those initiators (ACLs), each with CHAP if given.
   * An `iqn` another device of this process already exports is joined: this device's LUN is
   * added to that target (the lowest free number unless `lun`), mapped for the initiators it
   * lists; the target's portal and access stay the first device's. It goes with its last LUN.
   */
  | {
      readonly type: 'iscsi';
      readonly portal?: string;
      readonly iqn?: string;
      readonly initiators?: readonly IscsiInitiator[];
    }
  /** No fabric: only the backstore; wire it yourself (backstorePath). */
  | { readonly type: 'none' };

/** An initiator allowed on an iSCSI target (an LIO node ACL). */
export interface IscsiInitiator {
  /** Its initiator name, e.g. iqn.1994-05.com.redhat:client. */
  readonly iqn: string;
  /** CHAP the initiator must pass; with mutualUserid/mutualPassword the target proves itself too. */
  readonly chap?: ChapCredentials;
}

/** Inquiry strings and cache behaviour of the default emulation. */
export interface UnitOptions {
  /** T10 vendor identification, up to 8 ASCII characters. */
  readonly vendor?: string;
  /** Product identification, up to 16 ASCII characters. */
  readonly product?: string;
  /** Product revision level, up to 4 ASCII characters. */
  readonly revision?: string;
  /** Initial WCE (write cache enabled) of the caching mode page. */
  readonly writeCache?: boolean;
  /**
   * Third-party copy (3PC): EXTENDED COPY and RECEIVE COPY RESULTS between the units this
   * process serves, as LIO offers them between its devices. Default true; false leaves both
   * commands out (REPORT SUPPORTED OPERATION CODES does not list them).
   */
  readonly thirdPartyCopy?: boolean;
}

export interface OpenDeviceOptions {
  /** Volume name: the backstore name, part of the UIO name, the node's file name. */
  readonly name: string;
  /** The storage; size and block size come from it. The default handler emulates SCSI over it. */
  readonly backend?: BlockBackend;
  /** A custom handler replacing the emulation (then `size` and `blockSize` are needed without a backend). */
  readonly handler?: Handler;
  /** Wraps the handler; the first element is the outermost. */
  readonly middleware?: readonly HandlerMiddleware[];
  /** Size in bytes (only without a backend; must then be a multiple of blockSize). */
  readonly size?: number;
  /** 512, 1024, 2048 or 4096 (only without a backend). */
  readonly blockSize?: number;
  /** The HBA index of `user_<hba>` (default: the lowest free one). */
  readonly hba?: number;
  /** LUN number (default 0 on a target of its own, the lowest free one on a shared Target). */
  readonly lun?: number;
  readonly identity?: IdentityOptions;
  /** Make `<nodeDir>/<name>` (like go-tcmu's /dev/<dir>/<name>); loopback fabric only. */
  readonly nodeDir?: string;
  /** A block node with the disk's major:minor (default) or a symlink to /dev/sdX. */
  readonly nodeKind?: NodeKind;
  /** Loopback by default; several fabrics export the same LUN on each. */
  readonly fabric?: FabricOptions | readonly FabricOptions[];
  /** Commands in flight at once (default 128): ring intake bound and kernel queue depth. */
  readonly queueDepth?: number;
  readonly logger?: DeviceLogger;
  /** Inquiry strings and write cache of the default emulation. */
  readonly unit?: UnitOptions;
  /** Largest command in blocks the kernel sends (default: 1 MiB worth). */
  readonly hwMaxSectors?: number;
  /** Size of the ring's data area in MiB (kernel default 1024 when absent). */
  readonly maxDataAreaMb?: number;
  /**
   * Serve plain READ/WRITE in the ring addon's native lane, straight from the
   * backend's file with preadv/pwritev on the ring's memory, whenever the
   * emulation would answer them GOOD (everything else still goes to it).
   * Needs a backend with `directFile` (FileBackend with io 'sync') and no
   * handler or middleware. Default false.
   */
  readonly nativeLane?: boolean;
  /**
   * Serve plain READ/WRITE of a `synchronous` backend (MemoryBackend, FileBackend
   * with io 'sync') in the ring's lane on the JS thread: the backend is called on
   * views of the ring's memory before any command object is made, whenever the
   * emulation would answer GOOD (everything else still goes to it, with the same
   * answers). Needs a synchronous backend and no handler, middleware or native
   * lane. Default: on when those hold; `true` where they do not is an error.
   */
  readonly jsLane?: boolean;
  /**
   * Adopt this name's disk when a process of ours left it behind (crashed, or
   * `detach()`ed for a restart) and it serves the same data: same size, block size,
   * serial and `source`. Commands the old process left in the ring are failed back
   * with BUSY for the initiator to retry, never replayed; `/dev/sdX` and a mounted
   * filesystem survive. A mismatch is refused with ReattachMismatchError. Default true
   * (off for devices on a Target).
   */
  readonly reattach?: boolean;
  /**
   * What the device serves (tcmufile: the image's real path), recorded with the
   * backstore so a restarted process adopts it only for the same data.
   */
  readonly source?: string;
  /**
   * Seconds the kernel holds a command for us before failing it with NOT READY,
   * LOGICAL UNIT COMMUNICATION FAILURE (attrib/cmd_time_out, fixed at creation: the
   * kernel refuses it once exported): the longest a restart may take without
   * initiators seeing errors. 0 waits forever. Default 30 (the kernel's).
   */
  readonly commandTimeoutS?: number;
  /** Side effects (configfs, ring, device nodes); default: the real system. For tests. */
  readonly platform?: DevicePlatform;
}

/** @internal openDevice's options after validation and defaults. */
export interface ResolvedOptions {
  readonly name: string;
  readonly blockSize: number;
  readonly blockCount: number;
  readonly identity: DeviceIdentity;
  readonly queueDepth: number;
  readonly logger: DeviceLogger;
  readonly middleware: readonly HandlerMiddleware[];
  readonly targets: readonly TargetSpec[];
  readonly lun: number | undefined;
  readonly hba: number | undefined;
  readonly nodeDir: string | undefined;
  readonly nodeKind: NodeKind;
  readonly hwMaxSectors: number;
  readonly maxDataAreaMb: number | undefined;
  /** I_T nexus id handed to the emulation (unit attentions are per nexus). */
  readonly nexus: string;
  readonly nativeLane: boolean;
  readonly jsLane: boolean;
  readonly reattach: boolean;
  readonly source: string | undefined;
  readonly commandTimeoutS: number;
}

export const DEFAULT_QUEUE_DEPTH = 128;
/** The kernel's own default (TCMU_TIME_OUT in target_core_user.c). */
export const DEFAULT_COMMAND_TIMEOUT_S = 30;
/** The ring's command ids are 16-bit and 0 is reserved. */
const MAX_QUEUE_DEPTH = 65535;
const BLOCK_SIZES = new Set([512, 1024, 2048, 4096]);
const DEFAULT_MAX_TRANSFER_BYTES = 1024 * 1024;
export const DEFAULT_ISCSI_PORTAL = '127.0.0.1:3260';

const isInt = (value: unknown, min: number, max: number): value is number =>
  typeof value === 'number' && Number.isSafeInteger(value) && value >= min && value <= max;

function checkInt(option: string, value: unknown, min: number, max: number): void {
  if (!isInt(value, min, max))
    throw new InvalidDeviceOptionError(option, `must be an integer in ${min}..${max}, got ${String(value)}`);
}

function resolveGeometry(options: OpenDeviceOptions): { blockSize: number; blockCount: number } {
  const { backend } = options;
  if (backend) {
    if (typeof backend.read !== 'function' || typeof backend.write !== 'function') {
      throw new InvalidDeviceOptionError('backend', 'must implement BlockBackend (read, write, flush)');
    }
    const { blockSize, blockCount } = backend;
    if (!BLOCK_SIZES.has(blockSize)) {
      throw new InvalidDeviceOptionError(
        'backend',
        `block size ${blockSize} is not one of 512, 1024, 2048, 4096`,
      );
    }
    checkInt('backend.blockCount', blockCount, 1, Number.MAX_SAFE_INTEGER);
    if (options.blockSize !== undefined && options.blockSize !== blockSize) {
      throw new InvalidDeviceOptionError(
        'blockSize',
        `is ${options.blockSize} but the backend's block size is ${blockSize}`,
      );
    }
    if (options.size !== undefined && options.size !== blockSize * blockCount) {
      throw new InvalidDeviceOptionError(
        'size',
        `is ${options.size} but the backend holds ${blockSize * blockCount} bytes`,
      );
    }
    return { blockSize, blockCount };
  }
  if (!options.handler) throw new InvalidDeviceOptionError('backend', 'a backend or a handler is required');
  const blockSize = options.blockSize;
  if (blockSize === undefined || !BLOCK_SIZES.has(blockSize)) {
    throw new InvalidDeviceOptionError(
      'blockSize',
      'must be 512, 1024, 2048 or 4096 when there is no backend',
    );
  }
  const size = options.size;
  checkInt('size', size, blockSize, Number.MAX_SAFE_INTEGER);
  if ((size as number) % blockSize !== 0) {
    throw new InvalidDeviceOptionError('size', `${size} is not a multiple of the block size ${blockSize}`);
  }
  return { blockSize, blockCount: (size as number) / blockSize };
}

function resolveTargets(name: string, fabric: OpenDeviceOptions['fabric']): TargetSpec[] {
  const list: readonly FabricOptions[] =
    fabric === undefined
      ? [{ type: 'loopback' }]
      : Array.isArray(fabric)
        ? fabric
        : [fabric as FabricOptions];
  const targets: TargetSpec[] = [];
  const seen = new Set<string>();
  for (const entry of list) {
    const type = (entry as { type?: unknown } | undefined)?.type;
    if (type === 'none') continue;
    if (type !== 'loopback' && type !== 'iscsi') {
      throw new InvalidDeviceOptionError(
        'fabric',
        `type must be 'loopback', 'iscsi' or 'none', got ${String(type)}`,
      );
    }
    if (seen.has(type)) throw new InvalidDeviceOptionError('fabric', `'${type}' is listed twice`);
    seen.add(type);
    if (entry.type === 'loopback') {
      targets.push({
        type: 'loopback',
        wwn: entry.wwn ?? loopbackWwn(name, 'target'),
        nexusWwn: entry.nexusWwn ?? loopbackWwn(name, 'initiator'),
      });
    } else if (entry.type === 'iscsi') {
      targets.push({
        type: 'iscsi',
        iqn:
          entry.iqn === undefined
            ? defaultIqn(name)
            : asDeviceOption(() => validateIqn('fabric.iqn', entry.iqn)),
        portal: entry.portal ?? DEFAULT_ISCSI_PORTAL,
        initiators: resolveInitiators(entry.initiators),
      });
      asDeviceOption(() => validatePortal(entry.portal ?? DEFAULT_ISCSI_PORTAL));
    }
  }
  return targets;
}

/** configfs's own validators, their errors told as the device option's. */
function asDeviceOption<T>(check: () => T): T {
  try {
    return check();
  } catch (error) {
    if (InvalidOptionError.isInstance(error)) throw new InvalidDeviceOptionError(error.option, error.reason);
    if (InvalidNameError.isInstance(error)) {
      throw new InvalidDeviceOptionError(error.kind, `${JSON.stringify(error.value)}: ${error.reason}`);
    }
    throw error;
  }
}

function resolveInitiators(initiators: unknown): readonly IscsiInitiator[] | undefined {
  if (initiators === undefined) return undefined;
  if (!Array.isArray(initiators) || initiators.length === 0) {
    throw new InvalidDeviceOptionError(
      'fabric.initiators',
      'must list at least one initiator (leave it out for demo mode)',
    );
  }
  const resolved = initiators.map((initiator: IscsiInitiator, i): IscsiInitiator => {
    const where = `fabric.initiators[${i}]`;
    if (typeof initiator !== 'object' || initiator === null) {
      throw new InvalidDeviceOptionError(where, 'must be an object { iqn, chap? }');
    }
    const iqn = asDeviceOption(() => validateIqn(`${where}.iqn`, initiator.iqn));
    if (initiator.chap === undefined) return { iqn };
    return { iqn, chap: asDeviceOption(() => validateChapCredentials(`${where}.chap`, initiator.chap!)) };
  });
  const names = resolved.map((initiator) => initiator.iqn);
  const twice = names.find((iqn, i) => names.indexOf(iqn) !== i);
  if (twice !== undefined)
    throw new InvalidDeviceOptionError('fabric.initiators', `${twice} is listed twice`);
  return resolved;
}

/** Validates everything before any side effect. */
export function resolveOptions(options: OpenDeviceOptions, shared?: { attached: boolean }): ResolvedOptions {
  if (typeof options !== 'object' || options === null)
    throw new InvalidDeviceOptionError('options', 'must be an object');
  const name = validateName(options.name);
  const { blockSize, blockCount } = resolveGeometry(options);
  if (options.handler !== undefined && typeof options.handler !== 'function') {
    throw new InvalidDeviceOptionError('handler', 'must be a function');
  }
  const middleware = options.middleware ?? [];
  if (!Array.isArray(middleware) || middleware.some((m) => typeof m !== 'function')) {
    throw new InvalidDeviceOptionError('middleware', 'must be an array of functions');
  }
  if (options.hba !== undefined) checkInt('hba', options.hba, 0, 0x7fffffff);
  if (options.lun !== undefined) checkInt('lun', options.lun, 0, 65535);
  const queueDepth = options.queueDepth ?? DEFAULT_QUEUE_DEPTH;
  checkInt('queueDepth', queueDepth, 1, MAX_QUEUE_DEPTH);
  const hwMaxSectors = options.hwMaxSectors ?? Math.max(1, DEFAULT_MAX_TRANSFER_BYTES / blockSize);
  checkInt('hwMaxSectors', hwMaxSectors, 1, 65535);
  if (options.maxDataAreaMb !== undefined) checkInt('maxDataAreaMb', options.maxDataAreaMb, 1, 1 << 20);
  const nodeKind = options.nodeKind ?? 'block';
  if (nodeKind !== 'block' && nodeKind !== 'symlink') {
    throw new InvalidDeviceOptionError('nodeKind', `must be 'block' or 'symlink', got ${String(nodeKind)}`);
  }
  const nodeDir = options.nodeDir;
  if (nodeDir !== undefined) {
    if (typeof nodeDir !== 'string' || !nodeDir.startsWith('/') || nodeDir.includes('\0')) {
      throw new InvalidDeviceOptionError('nodeDir', 'must be an absolute path');
    }
  }
  const targets = shared?.attached
    ? resolveTargets(name, options.fabric ?? []).filter((t) => t.type !== 'loopback')
    : resolveTargets(name, options.fabric);
  if (nodeDir !== undefined && !shared?.attached && !targets.some((t) => t.type === 'loopback')) {
    throw new InvalidDeviceOptionError(
      'nodeDir',
      'needs the loopback fabric (there is no local disk otherwise)',
    );
  }
  const nativeLane = options.nativeLane ?? false;
  if (typeof nativeLane !== 'boolean') throw new InvalidDeviceOptionError('nativeLane', 'must be a boolean');
  if (nativeLane) {
    if (options.handler !== undefined || middleware.length > 0) {
      throw new InvalidDeviceOptionError(
        'nativeLane',
        'commands it serves would bypass the handler and middleware',
      );
    }
    if (options.backend?.directFile === undefined) {
      throw new InvalidDeviceOptionError(
        'nativeLane',
        "needs a backend with directFile (FileBackend with io: 'sync', possibly through ReadOnlyBackend)",
      );
    }
  }
  const jsLaneOption = options.jsLane;
  if (jsLaneOption !== undefined && typeof jsLaneOption !== 'boolean') {
    throw new InvalidDeviceOptionError('jsLane', 'must be a boolean');
  }
  const jsLanePossible =
    !nativeLane &&
    options.handler === undefined &&
    middleware.length === 0 &&
    options.backend?.synchronous === true;
  if (jsLaneOption === true && !jsLanePossible) {
    throw new InvalidDeviceOptionError(
      'jsLane',
      'needs a synchronous backend (MemoryBackend, FileBackend with io: sync), no handler or middleware, and no native lane',
    );
  }
  const jsLane = jsLaneOption ?? jsLanePossible;
  const reattach = options.reattach ?? !shared?.attached;
  if (typeof reattach !== 'boolean') throw new InvalidDeviceOptionError('reattach', 'must be a boolean');
  if (options.source !== undefined && (typeof options.source !== 'string' || options.source.length > 4096)) {
    throw new InvalidDeviceOptionError('source', 'must be a string of at most 4096 characters');
  }
  const commandTimeoutS = options.commandTimeoutS ?? DEFAULT_COMMAND_TIMEOUT_S;
  checkInt('commandTimeoutS', commandTimeoutS, 0, 86_400);
  const unit = options.unit ?? {};
  for (const [key, max] of [
    ['vendor', 8],
    ['product', 16],
    ['revision', 4],
  ] as const) {
    const value = unit[key];
    if (
      value !== undefined &&
      (typeof value !== 'string' || value.length > max || !/^[\x20-\x7e]*$/.test(value))
    ) {
      throw new InvalidDeviceOptionError(`unit.${key}`, `must be at most ${max} printable ASCII characters`);
    }
  }
  for (const key of ['writeCache', 'thirdPartyCopy'] as const) {
    if (unit[key] !== undefined && typeof unit[key] !== 'boolean') {
      throw new InvalidDeviceOptionError(`unit.${key}`, 'must be a boolean');
    }
  }
  return {
    name,
    blockSize,
    blockCount,
    identity: resolveIdentity(name, options.identity),
    queueDepth,
    logger: options.logger ?? silentLogger,
    middleware,
    targets,
    lun: options.lun,
    hba: options.hba,
    nodeDir: nodeDir === undefined || nodeDir === '/' ? nodeDir : nodeDir.replace(/\/+$/, ''),
    nodeKind,
    hwMaxSectors,
    maxDataAreaMb: options.maxDataAreaMb,
    nexus: 'tcmu',
    nativeLane,
    jsLane,
    reattach,
    source: options.source,
    commandTimeoutS,
  };
}
