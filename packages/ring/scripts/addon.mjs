// Obtains the @tcmu/ring native addon (docs/install.md). Three entry points:
//
//   node scripts/addon.mjs install    the package's install script: a prebuild that loads here
//                                     (prebuilds/<platform>-<arch>/, shipped in the tarball), else an
//                                     up-to-date build/Release, else ONE source build
//   node scripts/addon.mjs build      the workspace's `pnpm build`: keeps build/Release, compiling
//                                     only when binding.gyp or src/native changed since the last build
//   node scripts/addon.mjs prebuild   prepack: prebuildify (N-API, stripped, libc-tagged) into prebuilds/
//
// The loader (src/native.ts) calls node-gyp-build(PACKAGE_ROOT), which takes build/Release first,
// then the best-matching prebuild. Source builds find Node headers on the machine
// (scripts/headers.mjs) and never download them. When nothing works the last line printed is
// the one that names the fix, and the exit status is 1.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findNodeHeaders } from './headers.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));
const binary = join(root, 'build', 'Release', 'tcmu_ring.node');
const stampFile = join(root, 'build', 'tcmu_ring.stamp');
const log = (line) => console.log(`@tcmu/ring: ${line}`);

function fail(line) {
  console.error(line.startsWith('@tcmu/ring:') ? line : `@tcmu/ring: ${line}`);
  process.exit(1);
}

function listFiles(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    return entry.isDirectory() ? listFiles(path) : [path];
  });
}

/** What a build/Release binary was compiled from: the sources, binding.gyp, node-addon-api. */
function sourceHash() {
  const hash = createHash('sha256');
  const files = [join(root, 'binding.gyp'), ...listFiles(join(root, 'src', 'native'))];
  for (const file of files.map((f) => relative(root, f)).sort()) {
    hash.update(`${file}\0`);
    hash.update(readFileSync(join(root, file)));
  }
  let addonApi = 'none';
  try {
    addonApi = JSON.parse(readFileSync(require.resolve('node-addon-api/package.json'), 'utf8')).version;
  } catch {}
  hash.update(`node-addon-api@${addonApi} ${process.platform}-${process.arch}`);
  return hash.digest('hex');
}

const upToDate = () =>
  existsSync(binary) && existsSync(stampFile) && readFileSync(stampFile, 'utf8').trim() === sourceHash();

/** undefined when the binary loads in this process, else the loader's message. */
function loadError(file) {
  try {
    require(file);
    return undefined;
  } catch (error) {
    return String(error?.message ?? error).split('\n')[0];
  }
}

function which(name, env = process.env) {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const path = join(dir, name);
    try {
      if (statSync(path).isFile()) return path;
    } catch {}
  }
  return undefined;
}

/** node-gyp as [command, ...args]: the package's own, npm's bundled one, or one on PATH. */
function nodeGyp(env = process.env) {
  try {
    return [process.execPath, require.resolve('node-gyp/bin/node-gyp.js')];
  } catch {}
  if (env.npm_config_node_gyp && existsSync(env.npm_config_node_gyp)) {
    return env.npm_config_node_gyp.endsWith('.js')
      ? [process.execPath, env.npm_config_node_gyp]
      : [env.npm_config_node_gyp];
  }
  const onPath = which('node-gyp', env);
  return onPath ? [onPath] : undefined;
}

/** The tools a source build needs that this machine lacks. */
function missingTools(env = process.env) {
  const found = (name) => (name.includes('/') ? existsSync(name) : which(name, env) !== undefined);
  const missing = [];
  // The Makefiles gyp writes compile and link with $(CXX), g++ by default.
  const cxx = env.CXX?.trim().split(/\s+/)[0] || 'g++';
  if (!found(cxx)) missing.push(cxx);
  if (!found('make')) missing.push('make');
  const python = env.npm_config_python || env.PYTHON;
  if (python ? !found(python) : !found('python3') && !found('python')) missing.push(python || 'python3');
  return missing;
}

/** Everything a source build needs, or exits with the one line that names what to install. */
function buildPlan(why) {
  const headers = findNodeHeaders();
  const missing = missingTools();
  const gyp = nodeGyp();
  if ('error' in headers) fail(`${why}; ${headers.error.replace(/^@tcmu\/ring: /, '')}`);
  if (missing.length > 0) {
    fail(
      `${why}, and a source build needs ${missing.join(', ')}: install them ` +
        '(Debian/Ubuntu: apt-get install g++ make python3)',
    );
  }
  if (!gyp) fail(`${why}, and node-gyp is not available: install through npm or pnpm, or npm i -g node-gyp`);
  return { headers, gyp };
}

function run(command, args, env = process.env) {
  const result = spawnSync(command, args, { cwd: root, env, stdio: 'inherit' });
  return result.status === 0;
}

/** ONE node-gyp rebuild (configure + compile) with local headers. */
function buildFromSource(why) {
  const { headers, gyp } = buildPlan(why);
  log(
    `${why}; building from source with the Node ${headers.version ?? ''} headers in ${headers.nodedir} (${headers.source})`,
  );
  const [command, ...args] = gyp;
  if (!run(command, [...args, 'rebuild', `--nodedir=${headers.nodedir}`])) {
    fail(
      `the source build failed (node-gyp output above); fix the compiler error or install the build tools ` +
        `(g++ make python3) and run: cd ${root} && node scripts/addon.mjs install`,
    );
  }
  const error = loadError(binary);
  if (error) fail(`the addon built but does not load: ${error}`);
  writeFileSync(stampFile, `${sourceHash()}\n`);
  log(`built ${relative(root, binary)}`);
}

/** The prebuild node-gyp-build would pick here (build/ ignored), or undefined. */
function matchingPrebuild() {
  process.env.PREBUILDS_ONLY = '1'; // read by node-gyp-build when it loads
  try {
    const path = require('node-gyp-build').path(root);
    return path.startsWith(join(root, 'prebuilds')) ? path : undefined;
  } catch {
    return undefined;
  } finally {
    delete process.env.PREBUILDS_ONLY;
  }
}

function install() {
  const fromSource = process.env.npm_config_build_from_source;
  if (
    fromSource === 'true' ||
    fromSource === '@tcmu/ring' ||
    process.env.TCMU_RING_BUILD_FROM_SOURCE === '1'
  ) {
    buildFromSource('building from source as asked (npm_config_build_from_source)');
    return;
  }
  if (existsSync(binary)) {
    if (upToDate() && !loadError(binary)) {
      log(`${relative(root, binary)} is up to date`);
      return;
    }
    buildFromSource(`${relative(root, binary)} is older than binding.gyp or src/native`);
    return;
  }
  const prebuild = matchingPrebuild();
  if (prebuild) {
    const error = loadError(prebuild);
    if (!error) {
      log(`using the prebuilt addon ${relative(root, prebuild)}`);
      return;
    }
    buildFromSource(`the prebuilt addon ${relative(root, prebuild)} does not load here (${error})`);
    return;
  }
  buildFromSource(`no prebuilt addon for ${process.platform}-${process.arch} in this package`);
}

function build() {
  if (upToDate() && !loadError(binary)) {
    log(`${relative(root, binary)} is up to date (no compile)`);
    return;
  }
  buildFromSource(
    existsSync(binary) ? `${relative(root, binary)} is out of date` : `${relative(root, binary)} is missing`,
  );
}

function prebuild() {
  const { headers } = buildPlan('cannot make the prebuild');
  let prebuildify;
  try {
    prebuildify = require.resolve('prebuildify/bin.js');
  } catch {
    fail('prebuildify is not installed (it is a devDependency of @tcmu/ring: run pnpm install)');
  }
  rmSync(join(root, 'prebuilds'), { recursive: true, force: true });
  log(
    `prebuildify for Node-API, ${process.platform}-${process.arch}, headers ${headers.nodedir} (${headers.source})`,
  );
  const env = { ...process.env, npm_config_nodedir: headers.nodedir };
  const args = [
    prebuildify,
    '--napi',
    '--strip',
    '--tag-libc',
    `--target=${process.versions.node}`,
    // prebuildify's header cache: unused with a nodedir, kept inside the package all the same.
    `--cache=${join(root, 'node_modules', '.cache', 'prebuildify')}`,
  ];
  if (!run(process.execPath, args, env)) fail('prebuildify failed (output above)');
  const made = listFiles(join(root, 'prebuilds')).filter((file) => file.endsWith('.node'));
  if (made.length === 0) fail('prebuildify made no prebuild');
  for (const file of made) {
    const error = loadError(file);
    if (error) fail(`the prebuild ${relative(root, file)} does not load: ${error}`);
    log(`made ${relative(root, file)}`);
  }
  // prebuildify moved build/Release/tcmu_ring.node into prebuilds/: put the same binary back so
  // the workspace keeps an up-to-date build (and `pnpm build` does not compile again).
  mkdirSync(dirname(binary), { recursive: true });
  copyFileSync(made[0], binary);
  writeFileSync(stampFile, `${sourceHash()}\n`);
}

const modes = { install, build, prebuild };
const mode = process.argv[2] ?? 'install';
if (!(mode in modes)) fail(`usage: node scripts/addon.mjs install|build|prebuild (got "${mode}")`);
modes[mode]();
