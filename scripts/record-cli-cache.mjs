// `node scripts/record-cli-cache.mjs DIST` (run by scripts/bundle-cli.mjs with
// BERTH_WRITE_CODE_CACHE=1): runs the bundled CLI's commands whose start
// matters most (`version`, `run --rm`) in this one process, so that V8's code
// cache it writes afterwards (cmd/cli-loader.cts) holds every function they
// compile, on the paths a real command takes: a call that succeeds (against a
// gRPC server started here that answers Version, node List, Run and Attach with fixed
// messages; it only drives the CLI's code, nothing is checked against it) and
// one that fails (an address nobody listens on).
import { PassThrough, Readable } from 'node:stream';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as grpc from '@grpc/grpc-js';

const dist = resolve(process.argv[2] ?? 'dist');
const load = (rel) => import(pathToFileURL(resolve(dist, rel)).href);
const { loadBundledCli } = (await load('cmd/cli-loader.cjs')).default;
const controller = await load('proto/gen/berth/v1/controller.js');
const streams = await load('proto/gen/berth/v1/streams.js');

const server = new grpc.Server();
server.addService(controller.SystemServiceService, {
  version: (_call, cb) => cb(null, { version: '0.0.0', apiVersion: 'berth/v1', controllerId: 'recorder', leader: true, leaderId: 'recorder' }),
});
server.addService(controller.NodeServiceService, {
  list: (_call, cb) => cb(null, { nodes: [] }),
});
server.addService(controller.ContainerServiceService, {
  run: (call, cb) => cb(null, { id: 'a'.repeat(64), name: 'recorder', node: 'recorder', workload: '', revision: 0, replica: 0, spec: call.request.spec, createdUnixMs: 0, desiredState: 0, updatedUnixMs: 0 }),
});
server.addService(streams.StreamServiceService, {
  attach: (call) => {
    call.once('data', () => {
      call.write({ output: { $case: 'ready', value: { tty: false } } });
      call.write({ output: { $case: 'stdout', value: Buffer.from('\n') } });
      call.write({ output: { $case: 'exit', value: { exitCode: 0, reason: 'Completed', message: '', removed: true } } });
      call.end();
    });
  },
});
const port = await new Promise((ok, fail) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? fail(err) : ok(p))));
const address = `127.0.0.1:${port}`;

const cli = loadBundledCli();
if (!cli) throw new Error(`no CLI bundle under ${dist} to record the code cache of`);
const runs = [
  [['version', '--controller', address], 0],
  [['run', '--rm', '--controller', address, 'busybox', 'true'], 0],
  [['version', '--controller', '127.0.0.1:1'], 1],
  [['run', '--rm', '--controller', '127.0.0.1:1', 'busybox', 'true'], 1],
];
try {
  for (const [argv, expected] of runs) {
    const stderr = new PassThrough();
    let text = '';
    stderr.on('data', (d) => { text += d; });
    const code = await cli.runCli(argv, { stdout: new PassThrough(), stderr, stdin: Readable.from([]), env: {} });
    if (code !== expected) throw new Error(`berth ${argv.join(' ')}: exit ${code}, expected ${expected}: ${text.trim()}`);
  }
  cli.done();
} finally {
  server.forceShutdown();
}
