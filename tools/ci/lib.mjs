// Shared by the CI checks in this folder: counted checks and the "N passed, N failed" line
// .ci/totals.mjs adds up, a runner for commands, the publishable packages, and a PATH without a
// compiler.
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Counted checks: `ok - name` or `not ok - name: why`, and the closing totals line. */
export function createChecks(label) {
  let passed = 0;
  let failed = 0;
  return {
    check(name, fn) {
      try {
        const detail = fn();
        console.log(`ok - ${name}${typeof detail === 'string' && detail ? ` (${detail})` : ''}`);
        passed++;
        return true;
      } catch (error) {
        console.log(
          `not ok - ${name}: ${String(error?.message ?? error)
            .trim()
            .replaceAll('\n', '\n    ')}`,
        );
        failed++;
        return false;
      }
    },
    /** Counts tests another runner reported (e.g. vitest's summary). */
    add(morePassed, moreFailed) {
      passed += morePassed;
      failed += moreFailed;
    },
    finish() {
      console.log(`${label}: ${passed} passed, ${failed} failed`);
      process.exit(failed > 0 || passed === 0 ? 1 : 0);
    },
  };
}

/** Runs a command; returns its output, or throws with the tail of it. */
export function run(command, args, { cwd = repo, env = process.env, allowFailure = false, input } = {}) {
  const result = spawnSync(command, args, {
    cwd,
    env,
    input,
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
  });
  const output = `${result.stdout ?? ''}${result.stderr ?? ''}`;
  if (!allowFailure && result.status !== 0) {
    const tail = output.trim().split('\n').slice(-15).join('\n');
    throw new Error(
      `${command} ${args.join(' ')} exited ${result.status ?? result.signal ?? result.error?.message}\n${tail}`,
    );
  }
  return { status: result.status, stdout: result.stdout ?? '', stderr: result.stderr ?? '', output };
}

/** The workspace packages that are not private, as { dir, manifest }. */
export function publishablePackages() {
  const packages = [];
  for (const group of ['packages', 'apps']) {
    for (const name of readdirSync(join(repo, group)).sort()) {
      const file = join(repo, group, name, 'package.json');
      if (!existsSync(file)) continue;
      const manifest = JSON.parse(readFileSync(file, 'utf8'));
      if (!manifest.private) packages.push({ dir: join(repo, group, name), manifest });
    }
  }
  return packages;
}

/** Compilers and build drivers a "no compiler" PATH must not offer. */
const COMPILER =
  /^(cc|c\+\+|c89|c99|gcc|g\+\+|cpp|clang|clang\+\+|make|gmake|cmake|ninja|ld)(-[\d.]+)?$|-(gcc|g\+\+|cc|c\+\+|cpp|ld)(-[\d.]+)?$/;

/**
 * A directory of links to every program on PATH except compilers and make: a PATH on which a
 * source build cannot run, with everything else (node, npm, sh, tar, python3...) as it was.
 */
export function pathWithoutCompiler(dir, path = process.env.PATH ?? '') {
  mkdirSync(dir, { recursive: true });
  const seen = new Set(readdirSync(dir));
  for (const bin of path.split(delimiter)) {
    if (!bin || !existsSync(bin) || bin === dir) continue;
    for (const name of readdirSync(bin)) {
      if (seen.has(name) || COMPILER.test(name)) continue;
      const target = join(bin, name);
      try {
        if (!statSync(target).isFile()) continue;
      } catch {
        continue;
      }
      symlinkSync(target, join(dir, name));
      seen.add(name);
    }
  }
  return dir;
}

// An empty npm user config for user-like runs: this machine's ~/.npmrc may hold settings a new
// user does not have (a nodedir=/usr, which npm hands to install scripts as npm_config_nodedir).
const emptyUserConfig = join(tmpdir(), `tcmu-ci-empty-npmrc-${process.pid}`);
writeFileSync(emptyUserConfig, '');
process.on('exit', () => rmSync(emptyUserConfig, { force: true }));

/**
 * process.env without what must not leak into a user-like run (a compiler, a nodedir, npm's
 * and pnpm's script variables), with an empty npm user config.
 */
export function cleanEnv(overrides = {}) {
  const env = { ...process.env };
  for (const name of Object.keys(env)) {
    if (/^(npm_config_|npm_package_|npm_lifecycle_|pnpm_config_)/i.test(name)) delete env[name];
  }
  for (const name of ['CC', 'CXX', 'LINK', 'MAKE', 'INIT_CWD', 'PNPM_SCRIPT_SRC_DIR']) delete env[name];
  return { ...env, npm_config_userconfig: emptyUserConfig, ...overrides };
}
