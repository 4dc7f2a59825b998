// Obtains the @tcmu/rbd native addon (docs/rbd.md, "Install"), with the entry points of
// @tcmu/ring's scripts/addon.mjs:
//
//   node scripts/addon.mjs install    a prebuild that loads here, else an up-to-date build/Release,
//                                     else ONE source build
//   node scripts/addon.mjs build      `pnpm build`: compiles only when binding.gyp or src/native
//                                     changed since the last build
//   node scripts/addon.mjs prebuild   prepack: prebuildify (Node-API, stripped, libc-tagged)
//
// A source build needs librbd's and librados's headers (Debian/Ubuntu: librbd-dev) besides g++,
// make, python3 and Node's headers, which are looked for on the machine and never downloaded.
// Any binary, a prebuild too, links to librbd.so.1 and librados.so.2 (librbd1, librados2) and
// loads only where they are installed. When nothing works, the last line printed is the one that
// names the fix, and the exit status is 1.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { delimiter, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));
const binary = join(root, 'build', 'Release', 'tcmu_rbd.node');
const stamp = join(root, 'build', 'tcmu_rbd.stamp');
const log = (line) => console.log(`@tcmu/rbd: ${line}`);
const fail = (line) => {
  console.error(`@tcmu/rbd: ${line}`);
  process.exit(1);
};

const sources = () => [
  'binding.gyp',
  ...readdirSync(join(root, 'src', 'native'))
    .map((name) => `src/native/${name}`)
    .sort(),
];

/** What build/Release was compiled from: the sources, node-addon-api's version, the platform. */
function sourceHash() {
  const hash = createHash('sha256');
  for (const file of sources()) hash.update(`${file}\0`).update(readFileSync(join(root, file)));
  const addonApi = JSON.parse(readFileSync(require.resolve('node-addon-api/package.json'), 'utf8')).version;
  return hash.update(`node-addon-api@${addonApi} ${process.platform}-${process.arch}`).digest('hex');
}

const upToDate = () => existsSync(stamp) && readFileSync(stamp, 'utf8').trim() === sourceHash();

/** undefined when the binary loads here, else the fix its load error calls for. */
function loadProblem(file) {
  try {
    require(file);
    return undefined;
  } catch (error) {
    const message = String(error?.message ?? error).split('\n')[0];
    return /lib(rbd|rados)\.so/.test(message)
      ? `${message}: apt-get install librbd1 librados2 (the addon links to them)`
      : message;
  }
}

const onPath = (name) =>
  (process.env.PATH ?? '').split(delimiter).some((dir) => dir && existsSync(join(dir, name)));

/** A --nodedir with Node-API headers: npm_config_nodedir, beside node, libnode-dev, node-gyp's cache. */
function nodeDir() {
  const { env } = process;
  const cache = env.npm_config_devdir || join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'node-gyp');
  const candidates = [env.npm_config_nodedir, resolve(dirname(process.execPath), '..'), '/usr'];
  candidates.push(join(cache, process.versions.node));
  return candidates.find((dir) => dir && existsSync(join(dir, 'include', 'node', 'node_api.h')));
}

/** Checks everything a source build needs, or exits with the one line that names what is missing. */
function buildPlan(why) {
  const includeDirs = ['/usr/include', '/usr/local/include', ...(process.env.CPATH ?? '').split(delimiter)];
  const hasHeader = (file) => includeDirs.some((dir) => dir && existsSync(join(dir, file)));
  if (!hasHeader('rbd/librbd.h') || !hasHeader('rados/librados.h')) {
    fail(
      `${why}, and a source build needs librbd's headers (rbd/librbd.h, rados/librados.h): apt-get install librbd-dev`,
    );
  }
  const tools = [process.env.CXX?.trim().split(/\s+/)[0] || 'g++', 'make', 'python3'].filter(
    (t) => !onPath(t),
  );
  if (tools.length > 0)
    fail(`${why}, and a source build needs ${tools.join(', ')}: apt-get install g++ make python3`);
  const nodedir = nodeDir();
  if (!nodedir) {
    fail(
      `${why}, and no Node headers were found (include/node/node_api.h): apt-get install libnode-dev, or set npm_config_nodedir`,
    );
  }
  let gyp;
  try {
    gyp = require.resolve('node-gyp/bin/node-gyp.js');
  } catch {
    fail(`${why}, and node-gyp is not installed (a devDependency of @tcmu/rbd): run pnpm install`);
  }
  return { nodedir, gyp };
}

const run = (args, env = process.env) =>
  spawnSync(process.execPath, args, { cwd: root, env, stdio: 'inherit' }).status === 0;

function buildFromSource(why) {
  const { nodedir, gyp } = buildPlan(why);
  log(`${why}; building from source (Node headers in ${nodedir})`);
  if (!run([gyp, 'rebuild', `--nodedir=${nodedir}`])) {
    fail(
      `the source build failed (node-gyp output above); fix it and run: cd ${root} && node scripts/addon.mjs install`,
    );
  }
  const problem = loadProblem(binary);
  if (problem) fail(`the addon built but does not load: ${problem}`);
  writeFileSync(stamp, `${sourceHash()}\n`);
  log(`built ${relative(root, binary)}`);
}

const here = relative(root, binary);
const fresh = () => existsSync(binary) && upToDate() && !loadProblem(binary);

/** The prebuilds for this platform in the package (node-gyp-build chooses among them at run time). */
function prebuilds() {
  const dir = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  return existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => f.endsWith('.node'))
        .map((f) => join(dir, f))
    : [];
}

function install() {
  const fromSource = process.env.npm_config_build_from_source;
  if (fromSource === 'true' || fromSource === '@tcmu/rbd') {
    return buildFromSource('building from source as asked (npm_config_build_from_source)');
  }
  if (fresh()) return log(`${here} is up to date`);
  if (existsSync(binary)) return buildFromSource(`${here} is out of date`);
  const problems = [];
  for (const file of prebuilds()) {
    const problem = loadProblem(file);
    if (!problem) return log(`using the prebuilt addon ${relative(root, file)}`);
    problems.push(`${relative(root, file)}: ${problem}`);
  }
  return buildFromSource(
    problems.length > 0
      ? `the prebuilt addon does not load here (${problems.join('; ')})`
      : `no prebuilt addon for ${process.platform}-${process.arch} in this package`,
  );
}

function build() {
  if (fresh()) log(`${here} is up to date (no compile)`);
  else buildFromSource(`${here} is ${existsSync(binary) ? 'out of date' : 'missing'}`);
}

/** prebuildify into prebuilds/, checked by loading it; build/Release keeps the same binary. */
function prebuild() {
  const { nodedir } = buildPlan('cannot make the prebuild');
  rmSync(join(root, 'prebuilds'), { recursive: true, force: true });
  const args = [require.resolve('prebuildify/bin.js'), '--napi', '--strip', '--tag-libc'];
  args.push(
    `--target=${process.versions.node}`,
    `--cache=${join(root, 'node_modules', '.cache', 'prebuildify')}`,
  );
  if (!run(args, { ...process.env, npm_config_nodedir: nodedir })) fail('prebuildify failed (output above)');
  const [made] = prebuilds();
  if (!made) fail('prebuildify made no prebuild');
  const problem = loadProblem(made);
  if (problem) fail(`the prebuild does not load: ${problem}`);
  log(`made ${relative(root, made)} (needs librbd1 and librados2 where it runs)`);
  // prebuildify moved build/Release/tcmu_rbd.node: put it back, so `pnpm build` stays a no-op.
  mkdirSync(dirname(binary), { recursive: true });
  copyFileSync(made, binary);
  writeFileSync(stamp, `${sourceHash()}\n`);
}

const modes = { install, build, prebuild };
const mode = process.argv[2] ?? 'install';
if (!(mode in modes)) fail(`usage: node scripts/addon.mjs install|build|prebuild (got "${mode}")`);
modes[mode]();
