import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startRegistryWithImages, type RegistryWithImages } from '../../harness/index.js';
import { AgentStack, newId } from './stack.js';
import { Api, runRequest } from './grpc.js';
import { cleanupAgentContainers } from './cleanup.js';

describe('cleanupAgentContainers', function () {
  this.timeout(120_000);
  let reg: RegistryWithImages;
  let mine: AgentStack;
  let other: AgentStack;

  before(async () => {
    reg = await startRegistryWithImages(['busybox']);
  });
  after(async () => {
    await reg?.stop();
  });
  afterEach(async () => {
    await mine?.destroy();
    await other?.destroy();
  });

  it('removes the containers and mounts of one agent and leaves another agent sharing the runtime root alone', async () => {
    mine = await new AgentStack().start();
    other = await new AgentStack().start();
    const busybox = reg.images['busybox']!.reference;
    const a = newId();
    const b = newId();
    await new Api(mine.api).run(runRequest(a, busybox, { command: ['sleep', '1000'] }));
    await new Api(other.api).run(runRequest(b, busybox, { command: ['sleep', '1000'] }));
    // The agent stops; its container keeps running, as designed.
    mine.manager.close();
    // Both stacks have their own runtime roots here, so point the other one's at mine to share it.
    await cleanupAgentContainers(mine.root, join(mine.runtimeRoot, '..'));
    await cleanupAgentContainers(mine.root, join(other.runtimeRoot, '..'));
    assert.deepEqual(await mine.runtime.list(), []);
    assert.equal(readFileSync('/proc/self/mounts', 'utf8').includes(a), false);
    assert.deepEqual((await other.runtime.list()).map((c) => c.id), [`${b}.0`]);
    assert.ok(readFileSync('/proc/self/mounts', 'utf8').includes(b));
  });
});
