/**
 * A device without a kernel, for tests: openDevice() on a fake configfs/sysfs whose
 * rings are @tcmu/ring's kernel simulator, so a handler or backend answers real ring entries.
 * @module
 */
export { createHarness, rw10 } from './harness.js';
export type { Harness, HarnessOptions } from './harness.js';
