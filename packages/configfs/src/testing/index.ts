export { FakeKernel } from './fake-kernel.js';
