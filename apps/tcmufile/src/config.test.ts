import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './config.js';
import { ExitCode } from './errors.js';
import type { SecretSource } from './iscsi-access.js';

const client = 'iqn.1994-05.com.redhat:client';

function io(files: Record<string, string>, secretFiles: Record<string, [string, number]> = {}) {
  const secrets: SecretSource = {
    env: {},
    readFile: async (path) => {
      const file = secretFiles[path];
      if (!file) throw new Error(`ENOENT: ${path}`);
      return { text: file[0], mode: file[1] };
    },
  };
  return {
    secrets,
    readFile: async (path: string) => {
      if (!(path in files)) throw new Error(`ENOENT: no such file, open '${path}'`);
      return files[path]!;
    },
  };
}

const load = (document: unknown, secretFiles?: Record<string, [string, number]>) =>
  loadConfig(
    '/etc/tcmufile/disks.json',
    io({ '/etc/tcmufile/disks.json': JSON.stringify(document) }, secretFiles),
  );

async function problemsOf(
  document: unknown,
  secretFiles?: Record<string, [string, number]>,
): Promise<readonly string[]> {
  const error = await load(document, secretFiles).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(ConfigError);
  expect((error as ConfigError).exitCode).toBe(ExitCode.usage);
  return (error as ConfigError).problems;
}

describe('loadConfig', () => {
  it('applies defaults, resolves paths against the file, reads CHAP files', async () => {
    const disks = await load(
      {
        dir: '/run/disks',
        disks: [
          { name: 'a', image: 'a.img', size: '1G' },
          {
            name: 'b',
            image: '/srv/b.img',
            size: 4096,
            blockSize: 4096,
            readOnly: true,
            lun: 3,
            io: 'sync',
            queueDepth: 16,
            commandTimeout: 0,
            thirdPartyCopy: false,
            iscsi: {
              portal: '192.0.2.1:3261',
              iqn: 'iqn.2003-01.org.example:b',
              initiators: [client],
              chapFile: 'chap.json',
            },
          },
        ],
      },
      { '/etc/tcmufile/chap.json': ['{"userid":"u","password":"p"}', 0o100600] },
    );
    expect(disks.map(({ key: _key, ...rest }) => rest)).toEqual([
      {
        name: 'a',
        image: '/etc/tcmufile/a.img',
        size: 1 << 30,
        blockSize: 512,
        readOnly: false,
        dir: '/run/disks',
        lun: undefined,
        io: 'native',
        queueDepth: undefined,
        commandTimeoutS: undefined,
        thirdPartyCopy: true,
        iscsi: undefined,
      },
      {
        name: 'b',
        image: '/srv/b.img',
        size: 4096,
        blockSize: 4096,
        readOnly: true,
        dir: '/run/disks',
        lun: 3,
        io: 'sync',
        queueDepth: 16,
        commandTimeoutS: 0,
        thirdPartyCopy: false,
        iscsi: {
          portal: { host: '192.0.2.1', port: 3261 },
          iqn: 'iqn.2003-01.org.example:b',
          initiators: [{ iqn: client, chap: { userid: 'u', password: 'p' } }],
        },
      },
    ]);
    expect(disks[0]!.key).toMatch(/^[0-9a-f]{64}$/);
    expect(disks[0]!.key).not.toBe(disks[1]!.key);
  });

  it('keys a disk by its whole spec, CHAP secret included', async () => {
    const document = (password: string) =>
      [
        {
          disks: [
            {
              name: 'a',
              image: 'a.img',
              iscsi: { portal: '127.0.0.1', initiators: [client], chapFile: 'c' },
            },
          ],
        },
        { '/etc/tcmufile/c': [`{"userid":"u","password":"${password}"}`, 0o100600] as [string, number] },
      ] as const;
    const [one] = await load(...document('p1'));
    const [again] = await load(...document('p1'));
    const [changed] = await load(...document('p2'));
    expect(again!.key).toBe(one!.key);
    expect(changed!.key).not.toBe(one!.key);
  });

  it('names every schema problem by its JSON path', async () => {
    expect(
      await problemsOf({
        disks: [
          { name: 'a', image: 'a.img', blockSize: 1024 },
          { image: 'b.img', colour: 'red' },
          { name: 'bad/name', image: 'c.img', size: 100, iscsi: { iqn: 'IQN.x' } },
        ],
        extra: 1,
      }),
    ).toEqual([
      '(top level): unknown property "extra"',
      'disks[0].blockSize: must be one of 512, 4096',
      'disks[1].name: is required',
      'disks[1]: unknown property "colour"',
      'disks[2].name: must match pattern "^[A-Za-z0-9][A-Za-z0-9._-]*$"',
      'disks[2].size: must be >= 512',
      'disks[2].iscsi.portal: is required',
      'disks[2].iscsi.iqn: must match pattern "^iqn\\.[0-9]{4}-[0-9]{2}\\.[a-z0-9.-]+(:[^\\sA-Z]*)?$"',
    ]);
    expect(await problemsOf({})).toEqual(['disks: is required']);
  });

  it('names every problem the schema cannot see, and creates nothing', async () => {
    expect(
      await problemsOf(
        {
          disks: [
            { name: 'a', image: 'a.img', size: '1X' },
            { name: 'a', image: '/etc/tcmufile/a.img', size: 1000 },
            { name: 'c', image: 'c.img', iscsi: { portal: '192.0.2.1' } },
            { name: 'd', image: 'd.img', iscsi: { portal: '127.0.0.1:99999' } },
            { name: 'e', image: 'e.img', iscsi: { portal: '127.0.0.1', chapFile: 'open.json' } },
            {
              name: 'f',
              image: 'f.img',
              iscsi: { portal: '[::1]', initiators: [client], chapFile: 'none.json' },
            },
          ],
        },
        { '/etc/tcmufile/open.json': ['{"userid":"u","password":"p"}', 0o100644] },
      ),
    ).toEqual([
      "disks[0].size: size '1X' is not a size",
      'disks[1].name: "a" is disks[0]\'s name too',
      'disks[1].image: "/etc/tcmufile/a.img" is disks[0]\'s image too',
      'disks[1].size: size 1000 bytes is not a multiple of the 512-byte block size',
      'disks[2].iscsi.initiators: missing: demo mode on 192.0.2.1 lets any initiator on the network in; list the initiators, or set "insecureDemoMode": true',
      'disks[3].iscsi.portal: "127.0.0.1:99999" is not HOST[:PORT] with a port 1..65535',
      'disks[4].iscsi.chapFile: needs "initiators": LIO checks CHAP per initiator ACL',
      'disks[4].iscsi.chapFile: the CHAP file /etc/tcmufile/open.json can be read by others (mode 644); chmod 600 /etc/tcmufile/open.json',
      'disks[5].iscsi.chapFile: cannot read the CHAP file /etc/tcmufile/none.json: ENOENT: /etc/tcmufile/none.json; give a readable file (see docs/iscsi.md)',
    ]);
  });

  it('lets disks share an iSCSI target by its iqn, with one portal and access list and distinct LUNs', async () => {
    const iqn = 'iqn.2003-01.org.example:shared';
    const iscsi = { portal: '127.0.0.1', iqn, initiators: [client] };
    const disks = await load({
      disks: [
        { name: 'a', image: 'a.img', lun: 0, iscsi },
        { name: 'b', image: 'b.img', lun: 1, iscsi: { ...iscsi, initiators: [client] } },
        { name: 'c', image: 'c.img', iscsi },
      ],
    });
    expect(disks.map((d) => [d.iscsi?.iqn, d.lun])).toEqual([
      [iqn, 0],
      [iqn, 1],
      [iqn, undefined],
    ]);
    expect(
      await problemsOf({
        disks: [
          { name: 'a', image: 'a.img', lun: 0, iscsi },
          { name: 'b', image: 'b.img', lun: 0, iscsi },
          { name: 'c', image: 'c.img', iscsi: { ...iscsi, portal: '127.0.0.1:3261' } },
          { name: 'd', image: 'd.img', lun: 0, iscsi: { ...iscsi, iqn: 'iqn.2003-01.org.example:other' } },
        ],
      }),
    ).toEqual([
      `disks[1].lun: LUN 0 of ${iqn} is disks[0]'s too`,
      `disks[2].iscsi: shares target ${iqn} with disks[0], so its portal, initiators, chapFile and insecureDemoMode must be the same`,
    ]);
  });

  it('allows demo mode off loopback when asked', async () => {
    const [disk] = await load({
      disks: [{ name: 'a', image: 'a', iscsi: { portal: '192.0.2.1', insecureDemoMode: true } }],
    });
    expect(disk!.iscsi).toEqual({
      portal: { host: '192.0.2.1', port: 3260 },
      iqn: undefined,
      initiators: undefined,
    });
  });

  it('reads FILE.toml as TOML, against the same schema', async () => {
    const toml = [
      'dir = "/run/disks"',
      '[[disks]]',
      'name = "a"',
      'image = "a.img"',
      'size = "1M"',
      '[[disks]]',
      'name = "b"',
      'image = "/srv/b.img"',
      'readOnly = true',
      '[disks.iscsi]',
      'portal = "127.0.0.1:3260"',
      `initiators = ["${client}"]`,
    ].join('\n');
    const disks = await loadConfig('/etc/tcmufile/disks.toml', io({ '/etc/tcmufile/disks.toml': toml }));
    expect(disks.map((d) => [d.name, d.image, d.size, d.readOnly, d.dir])).toEqual([
      ['a', '/etc/tcmufile/a.img', 1 << 20, false, '/run/disks'],
      ['b', '/srv/b.img', undefined, true, '/run/disks'],
    ]);
    expect(disks[1]!.iscsi).toMatchObject({
      portal: { host: '127.0.0.1', port: 3260 },
      initiators: [{ iqn: client }],
    });
    const bad = await loadConfig('/x.toml', io({ '/x.toml': '[[disks]]\nname = "a"\ncolour = 1' })).catch(
      (e: unknown) => e,
    );
    expect((bad as ConfigError).problems).toEqual([
      'disks[0].image: is required',
      'disks[0]: unknown property "colour"',
    ]);
    const broken = await loadConfig('/y.toml', io({ '/y.toml': 'disks = [' })).catch((e: unknown) => e);
    expect((broken as ConfigError).problems[0]).toMatch(/^is not TOML: /);
  });

  it('tells a missing file (66) and a file that is not JSON (64) in one line', async () => {
    const missing = await loadConfig('/nope.json', io({})).catch((e: unknown) => e);
    expect(missing).toMatchObject({
      exitCode: ExitCode.noImage,
      message: expect.stringMatching(/^\/nope.json: cannot be read/),
    });
    const broken = await loadConfig('/b.json', io({ '/b.json': '{"disks": [' })).catch((e: unknown) => e);
    expect(broken).toMatchObject({
      exitCode: ExitCode.usage,
      message: expect.stringMatching(/^\/b.json: is not JSON/),
    });
  });

  it('lists several problems on lines of their own under the file name', async () => {
    const error = (await load({ disks: [{}] }).catch((e: unknown) => e)) as ConfigError;
    expect(error.message).toBe(
      '/etc/tcmufile/disks.json: 2 problems:\n  disks[0].name: is required\n  disks[0].image: is required',
    );
  });
});
