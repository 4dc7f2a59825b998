// Kernel-test fixture: a process of ours that creates objects, reports them on
// stdout as one JSON line and then waits to be SIGKILLed (a simulated crash).
import { TargetManager } from '../index.js';

const [name, wwn, file] = process.argv.slice(2);
if (!name || !wwn || !file) {
  console.error('usage: crash-owner NAME WWN BACKING_FILE');
  process.exit(2);
}
const manager = new TargetManager();
const fileio = await manager.createFileioBackstore({ name: `${name}-f`, file, size: 4 * 1024 * 1024 });
const user = await manager.createUserBackstore({ name: `${name}-u`, size: 1024 * 1024, maxDataAreaMb: 4 });
const lun = await manager.createLoopbackLun({ backstore: fileio, wwn });
console.log(JSON.stringify({ pid: process.pid, fileio, user, lun }));
setInterval(() => undefined, 60_000);
