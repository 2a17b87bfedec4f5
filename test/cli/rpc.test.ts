import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { Call, Metadata, credentials, makeClient, type ServiceError } from '../../cli/rpc.js';
import { ErrorCode, fromGrpcError } from '../../lib/errors.js';
import { connectFailureReason, isConnectFailure } from '../../lib/unreachable.js';
import {
  ContainerServiceService, SystemServiceService, type ContainerLogsRequest, type VersionResponse,
} from '../../proto/gen/berth/v1/controller.js';
import type { CopyToContainerRequest, CopyToContainerResponse } from '../../proto/gen/berth/v1/containers.js';
import { StreamServiceService, type StreamInput, type StreamOutput } from '../../proto/gen/berth/v1/streams.js';
import type { LogLine } from '../../proto/gen/berth/v1/types.js';
import { freePort } from '../harness/index.js';

/**
 * cli/rpc.ts against a real grpc-js server (the library the controller
 * serves with): every call kind, statuses, deadlines, cancellation, flow
 * control and limits.
 */
describe('cli rpc client', () => {
  let server: grpc.Server;
  let address: string;
  let versionCalls: { metadata: grpc.Metadata }[] = [];
  let cancelledOnServer = 0;
  const clients: { close(): void }[] = [];

  const line = (i: number, size = 16): LogLine => ({ unixMs: i, stream: 'stdout', data: Buffer.alloc(size, i % 256), source: `n${i}` });

  before(async () => {
    server = new grpc.Server();
    server.addService(SystemServiceService, {
      version: (call: grpc.ServerUnaryCall<object, VersionResponse>, cb: grpc.sendUnaryData<VersionResponse>) => {
        versionCalls.push({ metadata: call.metadata });
        const mode = call.metadata.get('x-mode')[0];
        if (mode === 'error') cb({ code: grpc.status.NOT_FOUND, details: 'container "wéb, 100%" not found' });
        else if (mode === 'hang') call.on('cancelled', () => cancelledOnServer++);
        else cb(null, { version: '9.9.9', apiVersion: 'berth/v1', controllerId: 'c1', leader: true, leaderId: 'c1' });
      },
    });
    server.addService(ContainerServiceService, {
      logs: (call: grpc.ServerWritableStream<ContainerLogsRequest, LogLine>) => {
        const { container, tail } = call.request;
        call.on('cancelled', () => cancelledOnServer++);
        if (container === 'forever') {
          const timer = setInterval(() => call.write(line(1)), 5);
          call.on('cancelled', () => clearInterval(timer));
          return;
        }
        if (container === 'big') {
          call.write(line(1, 5 * 1024 * 1024));
          call.end();
          return;
        }
        void (async () => {
          for (let i = 0; i < tail; i++) {
            if (!call.write(line(i, 1024))) await new Promise((r) => call.once('drain', r));
          }
          if (container === 'fail') call.emit('error', { code: grpc.status.INTERNAL, details: 'the agent went away' });
          else call.end();
        })();
      },
      copyTo: (call: grpc.ServerReadableStream<CopyToContainerRequest, CopyToContainerResponse>, cb: grpc.sendUnaryData<CopyToContainerResponse>) => {
        let bytes = 0;
        let entries = 0;
        let header = '';
        call.on('data', (m: CopyToContainerRequest) => {
          if (m.part?.$case === 'header') header = `${m.part.value.container}:${m.part.value.path}`;
          if (m.part?.$case === 'data') {
            bytes += m.part.value.length;
            entries++;
          }
        });
        call.on('end', () => (header === 'c1:/data' ? cb(null, { entries, bytes }) : cb({ code: grpc.status.INVALID_ARGUMENT, details: `bad header "${header}"` })));
      },
    });
    server.addService(StreamServiceService, {
      attach: (call: grpc.ServerDuplexStream<StreamInput, StreamOutput>) => {
        let echoed = 0;
        call.on('data', (m: StreamInput) => {
          const i = m.input;
          if (i?.$case === 'attach') call.write({ output: { $case: 'ready', value: { tty: false } } } as StreamOutput);
          if (i?.$case === 'stdin') {
            echoed += i.value.length;
            call.write({ output: { $case: 'stdout', value: Buffer.from(i.value.toString().toUpperCase()) } });
          }
        });
        call.on('end', () => {
          call.write({ output: { $case: 'exit', value: { exitCode: echoed, reason: 'Completed', message: '' } } });
          call.end();
        });
      },
    });
    const port = await freePort();
    address = `127.0.0.1:${port}`;
    await new Promise<void>((resolve, reject) => server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  });

  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
    versionCalls = [];
  });

  after(() => {
    server.forceShutdown();
  });

  const system = (addr = address): ReturnType<typeof makeClient<typeof SystemServiceService>> => {
    const c = makeClient(SystemServiceService, addr, credentials.createInsecure());
    clients.push(c);
    return c;
  };
  const containers = (options = {}): ReturnType<typeof makeClient<typeof ContainerServiceService>> => {
    const c = makeClient(ContainerServiceService, address, credentials.createInsecure(), options);
    clients.push(c);
    return c;
  };
  const unary = <R>(start: (cb: (err: ServiceError | null, res: R) => void) => unknown): Promise<R> =>
    new Promise((resolve, reject) => start((err, res) => (err ? reject(err) : resolve(res))));
  const versionWith = (mode: string, deadline = Date.now() + 10_000): Promise<VersionResponse> => {
    const md = new Metadata();
    md.set('x-mode', mode);
    return unary((cb) => system().version({}, md, { deadline }, cb));
  };

  it('makes a unary call, sending the metadata and decoding the answer', async () => {
    const md = new Metadata();
    md.set('x-mode', 'ok');
    md.set('x-trace-bin', Buffer.from([0, 1, 2, 255]));
    const v = await unary<VersionResponse>((cb) => system().version({}, md, { deadline: Date.now() + 10_000 }, cb));
    assert.deepEqual(v, { version: '9.9.9', apiVersion: 'berth/v1', controllerId: 'c1', leader: true, leaderId: 'c1' });
    assert.equal(versionCalls.length, 1);
    assert.deepEqual(versionCalls[0]?.metadata.get('x-trace-bin'), [Buffer.from([0, 1, 2, 255])]);
    assert.equal(versionCalls[0]?.metadata.get('user-agent')[0]?.toString().startsWith('berth-cli'), true);
  });

  it('reports a status from the server with its code and details, as fromGrpcError reads them', async () => {
    const err = await versionWith('error').then(() => undefined, (e: ServiceError) => e);
    assert.ok(err);
    assert.equal(err.code, grpc.status.NOT_FOUND);
    assert.equal(err.details, 'container "wéb, 100%" not found');
    const berth = fromGrpcError(err);
    assert.equal(berth.code, ErrorCode.NotFound);
    assert.equal(berth.message, 'container "wéb, 100%" not found');
  });

  it('ends a call at its deadline with DEADLINE_EXCEEDED, and the server sees it cancelled', async () => {
    const err = await versionWith('hang', Date.now() + 300).then(() => undefined, (e: ServiceError) => e);
    assert.equal(err?.code, grpc.status.DEADLINE_EXCEEDED);
    await waitUntil(() => cancelledOnServer > 0);
  });

  it('reports a controller that is not listening as UNAVAILABLE with a connection-refused reason', async () => {
    const port = await freePort();
    const err = await unary((cb) => system(`127.0.0.1:${port}`).version({}, new Metadata(), { deadline: Date.now() + 5000 }, cb)).then(() => undefined, (e: ServiceError) => e);
    assert.equal(err?.code, grpc.status.UNAVAILABLE);
    assert.ok(isConnectFailure(err.details), err.details);
    assert.equal(connectFailureReason(err.details), 'connection refused');
  });

  it('reads a server stream in order with backpressure, then ends', async () => {
    const call = containers().logs({ container: 'c1', follow: false, tail: 3000, sinceUnixMs: 0 }, new Metadata(), {});
    let n = 0;
    for await (const l of call as AsyncIterable<LogLine>) {
      assert.equal(l.unixMs, n);
      assert.equal(l.data.length, 1024);
      n++;
      // A slow reader: the server must wait for it (HTTP/2 flow control), not lose lines.
      if (n % 500 === 0) await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(n, 3000);
  });

  it('delivers the messages sent before a stream fails, then the error', async () => {
    const call = containers().logs({ container: 'fail', follow: false, tail: 10, sinceUnixMs: 0 }, new Metadata(), {});
    const got: number[] = [];
    const err = await new Promise<ServiceError>((resolve, reject) => {
      call.on('data', (l: LogLine) => got.push(l.unixMs));
      call.on('error', resolve);
      call.on('end', () => reject(new Error('ended without the error')));
    });
    assert.equal(got.length, 10);
    assert.equal(err.code, grpc.status.INTERNAL);
    assert.equal(err.details, 'the agent went away');
  });

  it('cancels a stream: the caller gets CANCELLED and the server sees the cancellation', async () => {
    const before = cancelledOnServer;
    const call = containers().logs({ container: 'forever', follow: true, tail: 0, sinceUnixMs: 0 }, new Metadata(), {});
    const err = await new Promise<ServiceError>((resolve) => {
      let seen = 0;
      call.on('data', () => {
        if (++seen === 3) call.cancel();
      });
      call.on('error', resolve);
    });
    assert.equal(err.code, grpc.status.CANCELLED);
    await waitUntil(() => cancelledOnServer > before);
  });

  it('refuses a message over the receive limit (4 MiB by default) and takes it with a higher limit', async () => {
    const read = (options: object): Promise<number> => new Promise((resolve, reject) => {
      const call = containers(options).logs({ container: 'big', follow: false, tail: 0, sinceUnixMs: 0 }, new Metadata(), {});
      let bytes = 0;
      call.on('data', (l: LogLine) => { bytes += l.data.length; });
      call.on('error', reject);
      call.on('end', () => resolve(bytes));
    });
    const err = await read({}).then(() => undefined, (e: ServiceError) => e);
    assert.equal(err?.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.match(err.details, /larger than max/);
    assert.equal(await read({ 'grpc.max_receive_message_length': 64 * 1024 * 1024 }), 5 * 1024 * 1024);
  });

  it('streams 16 MiB to the server with flow control and gets its one answer', async () => {
    const chunk = Buffer.alloc(64 * 1024, 7);
    const res = await new Promise<CopyToContainerResponse>((resolve, reject) => {
      const call = containers().copyTo(new Metadata(), {}, (err, r) => (err ? reject(err) : resolve(r)));
      void (async () => {
        const write = async (m: CopyToContainerRequest): Promise<void> => {
          if (!call.write(m)) await new Promise<void>((r) => call.once('drain', () => r()));
        };
        await write({ part: { $case: 'header', value: { container: 'c1', path: '/data' } } });
        for (let i = 0; i < 256; i++) await write({ part: { $case: 'data', value: chunk } });
        call.end();
      })();
    });
    assert.deepEqual(res, { entries: 256, bytes: 16 * 1024 * 1024 });
    const err = await new Promise<ServiceError | null>((resolve) => {
      const call = containers().copyTo(new Metadata(), {}, (e) => resolve(e));
      call.end({ part: { $case: 'header', value: { container: 'c2', path: '/x' } } });
    });
    assert.equal(err?.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(err.details, 'bad header "c2:/x"');
  });

  it('runs a bidirectional stream: replies as it writes, the server ends after the client half-closes', async () => {
    const client = makeClient(StreamServiceService, address, credentials.createInsecure());
    clients.push(client);
    const call = client.attach();
    const out: string[] = [];
    let exit = -1;
    const ended = new Promise<void>((resolve, reject) => {
      call.on('data', (m: StreamOutput) => {
        if (m.output?.$case === 'ready') {
          call.write({ input: { $case: 'stdin', value: Buffer.from('hello ') } });
          call.write({ input: { $case: 'stdin', value: Buffer.from('world') } });
          call.end();
        }
        if (m.output?.$case === 'stdout') out.push(m.output.value.toString());
        if (m.output?.$case === 'exit') exit = m.output.value.exitCode;
      });
      call.on('error', reject);
      call.on('end', resolve);
    });
    call.write({ input: { $case: 'attach', value: { container: 'c1', stdin: true, start: true } } });
    await ended;
    assert.deepEqual(out, ['HELLO ', 'WORLD']);
    assert.equal(exit, 11);
    assert.ok(call instanceof Call);
  });

  it('answers UNIMPLEMENTED for a method the server does not have', async () => {
    const err = await unary((cb) => containers().inspect({ containers: ['x'] }, new Metadata(), { deadline: Date.now() + 5000 }, cb)).then(() => undefined, (e: ServiceError) => e);
    assert.equal(err?.code, grpc.status.UNIMPLEMENTED);
  });

  it('shares one connection between clients; closing one leaves the other working', async () => {
    const a = system();
    const b = system();
    const call = (c: typeof a): Promise<VersionResponse> => unary((cb) => c.version({}, new Metadata(), { deadline: Date.now() + 5000 }, cb));
    await Promise.all([call(a), call(b)]);
    a.close();
    assert.equal((await call(b)).version, '9.9.9');
    assert.throws(() => a.version({}, new Metadata(), {}, () => undefined), /closed/);
  });
});

async function waitUntil(check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
