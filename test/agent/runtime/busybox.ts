/**
 * Test fixtures for agent/runtime: a busybox root filesystem made from
 * Debian's static /bin/busybox (package busybox-static), bundles written
 * with the real bundle generator, and a Runtime over a temp root with
 * cleanup that removes every container (processes, cgroups, state) even
 * when a test failed.
 */
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile, chmod } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LinuxSys } from '../../../agent/sys/linux.js';
import { detectCgroups, Runtime, writeBundle, type ImageConfig, type RunOptions } from '../../../agent/runtime/index.js';

const BUSYBOX = '/bin/busybox';
let applets: string[] | undefined;

/** Creates a busybox rootfs at `dir` (bin/ with applet symlinks, etc/passwd, etc/group, tmp). */
export async function makeBusyboxRootfs(dir: string): Promise<void> {
  applets ??= execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' }).split('\n').filter((a) => a && a !== 'busybox');
  await mkdir(join(dir, 'bin'), { recursive: true });
  await mkdir(join(dir, 'etc'), { recursive: true });
  await mkdir(join(dir, 'tmp'), { recursive: true });
  await chmod(join(dir, 'tmp'), 0o1777);
  await copyFile(BUSYBOX, join(dir, 'bin', 'busybox'));
  await chmod(join(dir, 'bin', 'busybox'), 0o755);
  await Promise.all(applets.map((a) => symlink('busybox', join(dir, 'bin', a))));
  await writeFile(join(dir, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n');
  await writeFile(join(dir, 'etc', 'group'), 'root:x:0:\nnobody:x:65534:\n');
}

/** A temp dir with a runtime root and helpers to make bundles; call cleanup() in afterEach. */
export class RuntimeFixture {
  readonly sys = new LinuxSys();
  runtime!: Runtime;
  dir!: string;
  private bundles = 0;

  async setup(): Promise<this> {
    this.dir = await mkdtemp(join(tmpdir(), 'berth-rt-'));
    this.runtime = await this.newRuntime();
    return this;
  }

  get root(): string {
    return join(this.dir, 'root');
  }

  /** A second Runtime over the same root (what an agent restart gets). */
  async newRuntime(): Promise<Runtime> {
    return new Runtime({ sys: this.sys, cgroups: await detectCgroups(this.sys), root: this.root });
  }

  /** Writes a bundle with a fresh busybox rootfs; `prepare` may change the rootfs first. */
  async bundle(cmd: string[], options: RunOptions = {}, prepare?: (rootfs: string) => Promise<void>, image: ImageConfig = {}): Promise<string> {
    const dir = join(this.dir, `bundle-${++this.bundles}`);
    await mkdir(dir);
    await makeBusyboxRootfs(join(dir, 'rootfs'));
    if (prepare) await prepare(join(dir, 'rootfs'));
    await writeBundle(dir, 'rootfs', { Env: ['PATH=/bin'], ...image }, { command: cmd, dns: ['192.0.2.53'], ...options });
    return dir;
  }

  /** Output lines of a container (stdout and stderr). */
  async output(id: string): Promise<string[]> {
    const lines: string[] = [];
    for await (const e of this.runtime.logs(id)) lines.push(e.text);
    return lines;
  }

  /** Runs a container to its end and returns its exit and output. */
  async runToExit(id: string, cmd: string[], options: RunOptions = {}, prepare?: (rootfs: string) => Promise<void>) {
    const bundle = await this.bundle(cmd, options, prepare);
    await this.runtime.create(id, bundle, { start: true });
    const exit = await this.runtime.wait(id, { timeoutMs: 30_000 });
    return { exit, output: await this.output(id) };
  }

  async cleanup(): Promise<void> {
    if (!this.dir) return;
    const errors: string[] = [];
    for (const c of await this.runtime.list().catch(() => [])) {
      await this.runtime.delete(c.id, { force: true }).catch(async (e: Error) => {
        errors.push(`${c.id}: ${e.message}`);
        // Last resort: kill by pid so nothing outlives the test.
        for (const f of ['init.pid', 'shim.pid']) {
          const pid = Number((await readFile(join(c.stateDir, f), 'utf8').catch(() => '')).split(' ')[0]);
          if (pid > 1) {
            try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
          }
        }
      });
    }
    this.sys.close();
    await rm(this.dir, { recursive: true, force: true });
    if (errors.length > 0) throw new Error(`cleanup failed: ${errors.join('; ')}`);
  }
}
