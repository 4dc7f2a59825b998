// Kernel-test fixture: one of several processes sharing configfs.
//   race-owner worker ID ROUNDS NAMES  create a user backstore under a random name of NAMES
//                                      (comma-separated, shared with the other workers), check
//                                      that it stays, remove it; ROUNDS times
//   race-owner crasher NAME            create one, print its JSON, wait to be SIGKILLed
//   race-owner janitor                 run cleanup() until stdin closes
// Workers and the janitor print one JSON line when they end.
import { AlreadyExistsError, InUseError, TargetManager } from '../index.js';

const [mode, ...args] = process.argv.slice(2);
const manager = new TargetManager();
const target = '/sys/kernel/config/target';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const exists = (path: string) =>
  import('node:fs/promises').then((fs) =>
    fs.access(path).then(
      () => true,
      () => false,
    ),
  );

if (mode === 'worker') {
  const [id, rounds, names] = [args[0]!, Number(args[1]), args[2]!.split(',')];
  let created = 0;
  let collisions = 0;
  const violations: string[] = [];
  for (let round = 0; round < rounds; round++) {
    const name = names[Math.floor(Math.random() * names.length)]!;
    let backstore: Awaited<ReturnType<TargetManager['createUserBackstore']>>;
    try {
      backstore = await manager.createUserBackstore({ name, size: 1024 * 1024, maxDataAreaMb: 1 });
    } catch (error) {
      // Taken by another worker right now: the expected answer, never a removal of theirs.
      if (error instanceof AlreadyExistsError || error instanceof InUseError) {
        collisions++;
        continue;
      }
      throw error;
    }
    created++;
    const rel = backstore.path.slice(target.length + 1);
    for (const check of ['after create', 'after a pause']) {
      if (check === 'after a pause') await sleep(Math.random() * 20);
      if (!(await exists(backstore.path))) violations.push(`${id}: ${rel} vanished ${check}`);
      const marker = await manager.owners.read(rel);
      if (marker?.pid !== process.pid)
        violations.push(`${id}: marker of ${rel} is ${JSON.stringify(marker)} ${check}`);
    }
    await manager.removeBackstore(backstore);
  }
  console.log(JSON.stringify({ id, created, collisions, violations }));
} else if (mode === 'crasher') {
  const backstore = await manager.createUserBackstore({
    name: args[0]!,
    size: 1024 * 1024,
    maxDataAreaMb: 1,
  });
  console.log(JSON.stringify({ pid: process.pid, backstore }));
  setInterval(() => undefined, 60_000);
} else if (mode === 'janitor') {
  let passes = 0;
  const removed: string[] = [];
  let open = true;
  process.stdin.on('end', () => {
    open = false;
  });
  process.stdin.resume();
  while (open) {
    const report = await manager.cleanup();
    removed.push(...report.removed);
    passes++;
    await sleep(5);
  }
  console.log(JSON.stringify({ passes, removed }));
} else {
  console.error('usage: race-owner worker ID ROUNDS NAMES | crasher NAME | janitor');
  process.exit(2);
}
