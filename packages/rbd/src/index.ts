/**
 * A Ceph RBD image as a @tcmu/scsi BlockBackend (docs/rbd.md): RbdBackend over librbd's
 * asynchronous C API, and the COMPARE AND WRITE that librbd makes atomic on the OSD.
 * @module
 */
export { RbdBackend, type RbdOpenOptions } from './backend.js';
export { installRbdCommands, rbdCompareAndWrite } from './commands.js';
export { RbdAddonLoadError, RbdClosedError, RbdError, RbdNativeError, RbdOptionError } from './errors.js';

export { librbdVersion } from './native.js';
