export { FakeKernel } from './fake-kernel.js';
export type { FsOperation } from './fake-kernel.js';
