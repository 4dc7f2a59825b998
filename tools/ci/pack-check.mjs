#!/usr/bin/env node
// The packages as users get them (docs/install.md, "CI"). After `pnpm build`:
//   - `pnpm pack` of every publishable package (@tcmu/ring's prepack makes its prebuild), and the
//     packed manifests: no workspace: ranges, no internal export condition, LICENSE inside;
//   - publint (strict, every level) and @arethetypeswrong/cli on each tarball: 0 problems;
//   - `npm install` of the tarballs into a scratch project on a PATH without cc/gcc/g++/make, so
//     @tcmu/ring must take its prebuild; then the README's @tcmu/scsi example (ESM and CJS), an
//     import and a require of every export of every package (no device needed), the addon loaded
//     from the prebuild, `tcmufile --help` from the installed bin and through npx, and
//     `npm i -g` of the tarballs into a scratch prefix.
// Each check prints `ok - ...` or `not ok - ...`; the last line is `pack-check: N passed, N failed`.
//
//   node tools/ci/pack-check.mjs <work dir>     (the scratch project stays in <work dir>/consumer)
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { codeBlock } from './readme.mjs';
import { cleanEnv, createChecks, pathWithoutCompiler, publishablePackages, repo, run } from './lib.mjs';

const ADDON_PROBE_ESM = `import { dirname } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import * as ring from '@tcmu/ring';

ring.closeFd(ring.memfdCreate('pack-check'));
const root = dirname(fileURLToPath(import.meta.resolve('@tcmu/ring/package.json')));
const path = createRequire(\`\${root}/package.json\`)('node-gyp-build').path(root);
if (!path.includes('/prebuilds/')) throw new Error(\`loaded \${path}, not a prebuild\`);
console.log(\`\${path.slice(root.length + 1)}, Node \${process.version}\`);
`;
const ADDON_PROBE_CJS = `const { dirname } = require('node:path');
const ring = require('@tcmu/ring');

ring.closeFd(ring.memfdCreate('pack-check'));
const root = dirname(require.resolve('@tcmu/ring/package.json'));
const path = require(require.resolve('node-gyp-build', { paths: [root] })).path(root);
if (!path.includes('/prebuilds/')) throw new Error(\`loaded \${path}, not a prebuild\`);
console.log(\`\${path.slice(root.length + 1)}, Node \${process.version}\`);
`;

const work = resolve(process.argv[2] ?? join(tmpdir(), `pack-check-${process.pid}`));
const tarballs = join(work, 'tarballs');
const consumer = join(work, 'consumer');
const globalPrefix = join(work, 'global');
rmSync(work, { recursive: true, force: true });
mkdirSync(tarballs, { recursive: true });
const bin = (name) => join(repo, 'node_modules', '.bin', name);
const { check, finish } = createChecks('pack-check');

const packages = publishablePackages();
const packed = new Map(); // name -> tarball
const tarList = (file) => run('tar', ['-tzf', file]).stdout.split('\n').filter(Boolean);

for (const { dir, manifest } of packages) {
  const { name, version } = manifest;
  check(`pnpm pack ${name}`, () => {
    run('pnpm', ['pack', '--pack-destination', tarballs], { cwd: dir, env: cleanEnv() });
    const file = join(tarballs, `${name.replace(/^@/, '').replace('/', '-')}-${version}.tgz`);
    if (!existsSync(file)) throw new Error(`no ${file}`);
    packed.set(name, file);
    return `${tarList(file).length} files`;
  });
  const file = packed.get(name);
  if (!file) continue;
  check(`packed manifest of ${name}`, () => {
    const text = run('tar', ['-xzOf', file, 'package/package.json']).stdout;
    const packedManifest = JSON.parse(text);
    const problems = [];
    const resolution = ['exports', 'main', 'module', 'types', 'typesVersions', 'bin'].map(
      (f) => packedManifest[f],
    );
    if (JSON.stringify(resolution).includes('@tcmu/source') || JSON.stringify(resolution).includes('src/')) {
      problems.push('the internal @tcmu/source condition (or a src/ path) is published');
    }
    if (text.includes('workspace:')) problems.push('a workspace: range is published');
    if (packedManifest.license !== 'MIT') problems.push(`license ${packedManifest.license}`);
    if (!tarList(file).includes('package/LICENSE')) problems.push('no LICENSE in the tarball');
    if (packedManifest.sideEffects === undefined) problems.push('no sideEffects');
    if (!packedManifest.exports?.['./package.json']) problems.push('./package.json not exported');
    for (const field of ['repository', 'homepage', 'bugs', 'keywords']) {
      if (!packedManifest[field]) problems.push(`no ${field}`);
    }
    if (problems.length) throw new Error(problems.join('; '));
  });
  check(`publint ${name} (strict, suggestions too)`, () => {
    const { stdout } = run(bin('publint'), ['run', file, '--strict', '--level', 'suggestion']);
    if (!stdout.includes('All good!')) throw new Error(stdout.trim());
  });
  check(`attw ${name}`, () => {
    const { stdout, status } = run(bin('attw'), ['--format', 'json', file], { allowFailure: true });
    const problems = JSON.parse(stdout).analysis?.problems ?? [];
    if (problems.length || status !== 0) {
      throw new Error(
        `${problems.length} problem(s): ${problems.map((p) => `${p.kind} ${p.entrypoint ?? ''}`).join(', ')}`,
      );
    }
    return '0 problems';
  });
}

const ring = packed.get('@tcmu/ring');
check('@tcmu/ring tarball carries a linux-x64 prebuild', () => {
  const prebuilds = tarList(ring).filter((f) => /^package\/prebuilds\/linux-x64\/.*\.node$/.test(f));
  if (prebuilds.length === 0) throw new Error('no package/prebuilds/linux-x64/*.node');
  return prebuilds.map((f) => f.replace('package/', '')).join(', ');
});

// A user's machine without a compiler: only programs that are not compilers, no nodedir.
const noCompilerPath = pathWithoutCompiler(join(work, 'bin-without-compiler'));
const userEnv = cleanEnv({ PATH: noCompilerPath, npm_config_audit: 'false', npm_config_fund: 'false' });
check('the scratch PATH has no cc, gcc, g++, c++ nor make', () => {
  const { stdout } = run('sh', ['-c', 'command -v cc gcc g++ c++ make || true'], { env: userEnv });
  if (stdout.trim()) throw new Error(`found ${stdout.trim().replaceAll('\n', ', ')}`);
  return noCompilerPath;
});

mkdirSync(consumer, { recursive: true });
writeFileSync(
  join(consumer, 'package.json'),
  `${JSON.stringify({ name: 'consumer', private: true }, null, 2)}\n`,
);
const all = [...packed.values()];
let installLog = '';
const installed = check('npm install of every tarball, no compiler on PATH', () => {
  const result = run('npm', ['install', '--foreground-scripts', ...all], { cwd: consumer, env: userEnv });
  installLog = result.output;
  writeFileSync(join(work, 'npm-install.log'), installLog);
  return `${all.length} tarballs`;
});
const node = (args, options = {}) => run('node', args, { cwd: consumer, env: userEnv, ...options });

if (installed) {
  check('@tcmu/ring install took the prebuild (no build/ made)', () => {
    const line = installLog.split('\n').find((l) => l.includes('@tcmu/ring: using the prebuilt addon'));
    if (!line)
      throw new Error(
        `no "using the prebuilt addon" line in the install output:\n${installLog.slice(-1500)}`,
      );
    if (existsSync(join(consumer, 'node_modules/@tcmu/ring/build')))
      throw new Error('node_modules/@tcmu/ring/build exists');
    return line.trim();
  });
  check('installed @tcmu/* packages are the packed ones', () => {
    for (const { manifest } of packages) {
      const file = join(consumer, 'node_modules', manifest.name, 'package.json');
      const version = JSON.parse(readFileSync(file, 'utf8')).version;
      if (version !== manifest.version) throw new Error(`${manifest.name} ${version}`);
    }
  });

  // The README's @tcmu/scsi example, as written (ESM) and as a CommonJS user writes it.
  const example = codeBlock('Use the SCSI layer without a kernel', { language: ['ts', 'js'] });
  const cjs = `(async () => {\n${example.replace(
    /^import\s*\{([^}]*)\}\s*from\s*('[^']+'|"[^"]+");?$/gm,
    (_, names, from) => `const {${names}} = require(${from});`,
  )}\n})().catch((error) => {\n  console.error(error);\n  process.exit(1);\n});\n`;
  writeFileSync(join(consumer, 'readme-example.mjs'), `${example}\n`);
  writeFileSync(join(consumer, 'readme-example.cjs'), cjs);
  for (const file of ['readme-example.mjs', 'readme-example.cjs']) {
    check(`README @tcmu/scsi example (${file.endsWith('.mjs') ? 'ESM' : 'CJS'})`, () => {
      const { stdout } = node([file]);
      if (!/^0 Uint8Array\(36\)/.test(stdout.trim()))
        throw new Error(`printed: ${stdout.trim().slice(0, 200)}`);
      return stdout.trim().split('\n')[0].slice(0, 40);
    });
  }

  // Every export of every package loads on a machine without TCMU (no device is opened).
  const specifiers = packages.flatMap(({ manifest }) =>
    Object.keys(manifest.publishConfig?.exports ?? manifest.exports ?? { '.': '' })
      .filter((sub) => sub !== './package.json')
      .map((sub) => (sub === '.' ? manifest.name : `${manifest.name}/${sub.slice(2)}`)),
  );
  for (const specifier of specifiers) {
    check(`import('${specifier}')`, () => {
      const { stdout } = node([
        '--input-type=module',
        '-e',
        `const m = await import(${JSON.stringify(specifier)}); console.log(Object.keys(m).length);`,
      ]);
      if (!(Number(stdout) > 0)) throw new Error('no exports');
      return `${stdout.trim()} exports`;
    });
    check(`require('${specifier}')`, () => {
      const { stdout } = node([
        '-e',
        `console.log(Object.keys(require(${JSON.stringify(specifier)})).length)`,
      ]);
      if (!(Number(stdout) > 0)) throw new Error('no exports');
      return `${stdout.trim()} exports`;
    });
  }
  // Each class has an ESM and a CJS copy, and @tcmu/scsi/node bundles its own copy of the
  // core: the brands make instanceof and isInstance agree across all of them.
  check('errors are recognised across the ESM and CJS copies (instanceof, isInstance)', () => {
    const { stdout } = node([
      '--input-type=module',
      '-e',
      [
        "import { createRequire } from 'node:module';",
        'const require = createRequire(process.cwd() + "/");',
        "const cores = [await import('@tcmu/scsi'), require('@tcmu/scsi')];",
        "const nodes = [await import('@tcmu/scsi/node'), require('@tcmu/scsi/node')];",
        'const ok = (value, what) => { if (!value) throw new Error(what); };',
        'let pairs = 0;',
        'for (const a of cores) for (const b of cores) {',
        "  const error = new a.BackendIoError('x', 1);",
        "  ok(error instanceof b.BackendIoError && b.BackendIoError.isInstance(error), 'BackendIoError');",
        "  ok(!(error instanceof b.ScsiCheckCondition), 'BackendIoError is no ScsiCheckCondition');",
        '  pairs++;',
        '}',
        'for (const n of nodes) for (const m of nodes) for (const a of cores) {',
        "  const error = new n.FileBackendError('LOCKED', 'x');",
        "  ok(error instanceof m.FileBackendError && error instanceof a.ScsiError, 'FileBackendError');",
        '  pairs++;',
        '}',
        'console.log(pairs);',
      ].join('\n'),
    ]);
    if (stdout.trim() !== '12') throw new Error(stdout);
    return '12 pairs of copies';
  });
  check("require('<package>/package.json') for every package", () => {
    for (const { manifest } of packages)
      node(['-e', `require(${JSON.stringify(`${manifest.name}/package.json`)})`]);
  });
  // Loads the addon (memfdCreate + closeFd need no device) and says which binary node-gyp-build took.
  writeFileSync(join(consumer, 'addon-probe.mjs'), ADDON_PROBE_ESM);
  writeFileSync(join(consumer, 'addon-probe.cjs'), ADDON_PROBE_CJS);
  for (const file of ['addon-probe.mjs', 'addon-probe.cjs']) {
    check(`@tcmu/ring addon loads from the prebuild (${file.endsWith('.mjs') ? 'ESM' : 'CJS'})`, () =>
      node([file]).stdout.trim(),
    );
  }

  check('tcmufile --help (node_modules/.bin)', () => {
    const { stdout } = run(join(consumer, 'node_modules/.bin/tcmufile'), ['--help'], {
      cwd: consumer,
      env: userEnv,
    });
    if (!/tcmufile/.test(stdout) || !/serve/.test(stdout)) throw new Error(stdout.slice(0, 300));
    return stdout.trim().split('\n')[0];
  });
  check('npx tcmufile --help', () => {
    const { stdout } = run('npx', ['--no', '--', 'tcmufile', '--help'], { cwd: consumer, env: userEnv });
    if (!/serve/.test(stdout)) throw new Error(stdout.slice(0, 300));
  });
}

check('npm i -g of the tarballs (scratch prefix), then tcmufile --help from its bin', () => {
  run('npm', ['install', '--global', '--prefix', globalPrefix, '--foreground-scripts', ...all], {
    cwd: work,
    env: userEnv,
  });
  const { stdout } = run(join(globalPrefix, 'bin', 'tcmufile'), ['--help'], { cwd: work, env: userEnv });
  if (!/serve/.test(stdout)) throw new Error(stdout.slice(0, 300));
});

finish();
