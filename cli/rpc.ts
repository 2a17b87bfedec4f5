/**
 * The CLI's gRPC client: gRPC over HTTP/2 (node:http2) for the service
 * definitions ts-proto generates (proto/gen: `XServiceService`, each method
 * with its path, stream kinds and (de)serializers).
 *
 * Why not @grpc/grpc-js, which the controller and agent use: a CLI command is
 * one short process with one server, and grpc-js's channel machinery
 * (resolvers, load balancing, subchannel pools, retries) and its
 * dependencies were about a third of the CLI bundle and a good part of every
 * command's start-up (docs/benchmarks.md, issue 6). This module is what the
 * CLI needs and no more: one HTTP/2 connection per controller address,
 * shared by the clients of one process; unary, server-, client- and
 * bidirectional-streaming calls with deadlines, cancellation, flow control
 * and size limits; statuses and errors shaped like grpc-js's (`code`,
 * `details`, `metadata`), so lib/errors.ts fromGrpcError and lib/unreachable.ts
 * read both alike. No compression (not offered to the server), no retries,
 * no TLS yet (the controller listens on loopback without it; mTLS will add
 * credentials here).
 *
 * Clients are made with `makeClient(gen.XServiceService, address, creds, options)`
 * and have the method shapes of grpc-js generic clients, so the generated
 * client interfaces (`gen.XServiceClient`) type them:
 *   unary             method(req, metadata, options, callback) -> call (cancel())
 *   server streaming  method(req, metadata, options) -> Readable of messages
 *   client streaming  method(metadata, options, callback) -> Writable of messages
 *   bidi streaming    method(metadata?, options?) -> Duplex of messages
 * Streams end with 'end' on status OK and 'error' (a ServiceError) otherwise;
 * calls with a callback report errors only there. `close()` releases the
 * client's share of the connection; the connection closes (gracefully) when
 * no client holds it.
 */
import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import { Duplex } from 'node:stream';

/** One method of a generated service definition (the fields of grpc-js's MethodDefinition used here). */
export interface MethodDefinition<Req = unknown, Res = unknown> {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestSerialize(value: Req): Buffer;
  responseDeserialize(bytes: Buffer): Res;
}

export type ServiceDefinition = Record<string, MethodDefinition>;

/** Channel credentials; only plaintext (the controller's loopback listener) for now. */
export interface Credentials {
  readonly secure: false;
}

export const credentials = {
  createInsecure: (): Credentials => ({ secure: false }),
};

/** Client options understood here (grpc-js names; others are ignored). */
export interface ClientOptions {
  /** Largest message accepted from the server in bytes; -1 for no limit (default 4 MiB, as grpc-js). */
  'grpc.max_receive_message_length'?: number;
  /** Largest message sent in bytes; -1 for no limit (the default). */
  'grpc.max_send_message_length'?: number;
  [other: string]: unknown;
}

export interface CallOptions {
  /** Absolute deadline (ms since the epoch, or a Date); none when omitted. */
  deadline?: number | Date;
}

/** Request metadata (headers); keys are lowercased, `-bin` keys carry bytes. */
export class Metadata {
  private readonly map = new Map<string, (string | Buffer)[]>();

  set(key: string, value: string | Buffer): void {
    this.map.set(key.toLowerCase(), [value]);
  }

  add(key: string, value: string | Buffer): void {
    const k = key.toLowerCase();
    this.map.set(k, [...(this.map.get(k) ?? []), value]);
  }

  get(key: string): (string | Buffer)[] {
    return this.map.get(key.toLowerCase()) ?? [];
  }

  getMap(): Record<string, string | Buffer> {
    const out: Record<string, string | Buffer> = {};
    for (const [k, v] of this.map) if (v[0] !== undefined) out[k] = v[0];
    return out;
  }

  /** HTTP/2 headers for these entries (`-bin` values base64, as the gRPC spec says). */
  toHeaders(): OutgoingHttpHeaders {
    const out: OutgoingHttpHeaders = {};
    for (const [k, values] of this.map) {
      out[k] = values.map((v) => (k.endsWith('-bin') ? Buffer.from(v).toString('base64') : v.toString()));
    }
    return out;
  }

  static fromHeaders(h: IncomingHttpHeaders | undefined): Metadata {
    const m = new Metadata();
    for (const [k, v] of Object.entries(h ?? {})) {
      if (k.startsWith(':') || v === undefined) continue;
      for (const one of Array.isArray(v) ? v : [v]) m.add(k, k.endsWith('-bin') ? Buffer.from(one, 'base64') : one);
    }
    return m;
  }
}

/** gRPC status codes (the numbers on the wire). */
export const Status = {
  OK: 0, CANCELLED: 1, UNKNOWN: 2, DEADLINE_EXCEEDED: 4, RESOURCE_EXHAUSTED: 8, UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14,
  UNAUTHENTICATED: 16, PERMISSION_DENIED: 7,
} as const;

const STATUS_NAMES = ['OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED'];

/** A failed call, shaped like grpc-js's ServiceError. */
export interface ServiceError extends Error {
  code: number;
  details: string;
  metadata: Metadata;
}

export function serviceError(code: number, details: string, metadata = new Metadata()): ServiceError {
  return Object.assign(new Error(`${code} ${STATUS_NAMES[code] ?? 'UNKNOWN'}: ${details}`), { code, details, metadata });
}

/** grpc-message is percent-encoded (gRPC over HTTP/2 spec); a malformed one is shown as sent. */
function decodeGrpcMessage(raw: string | string[] | undefined): string {
  const text = Array.isArray(raw) ? raw.join(',') : raw ?? '';
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** The status for an HTTP status other than 200 (the gRPC spec's mapping). */
function httpStatusToGrpc(status: number): number {
  switch (status) {
    case 400: return Status.INTERNAL;
    case 401: return Status.UNAUTHENTICATED;
    case 403: return Status.PERMISSION_DENIED;
    case 404: return Status.UNIMPLEMENTED;
    case 429: case 502: case 503: case 504: return Status.UNAVAILABLE;
    default: return Status.UNKNOWN;
  }
}

/** One HTTP/2 connection per address, shared by this process's clients; closed when the last one lets go. */
interface Connection {
  session: ClientHttp2Session;
  refs: number;
  /** Why the connection failed, for the calls that were waiting on it. */
  failure?: Error;
}

const connections = new Map<string, Connection>();

function acquire(address: string): Connection {
  const existing = connections.get(address);
  if (existing && !existing.session.closed && !existing.session.destroyed && existing.failure === undefined) {
    existing.refs++;
    return existing;
  }
  const session = connect(`http://${address}`, { settings: { enablePush: false } });
  const conn: Connection = { session, refs: 1 };
  session.on('error', (err: Error) => {
    conn.failure = err;
  });
  session.on('close', () => {
    if (connections.get(address) === conn) connections.delete(address);
  });
  connections.set(address, conn);
  return conn;
}

function release(address: string, conn: Connection): void {
  conn.refs--;
  if (conn.refs > 0) return;
  if (connections.get(address) === conn) connections.delete(address);
  if (!conn.session.closed && !conn.session.destroyed) conn.session.close();
}

/** The 5-byte gRPC message prefix (uncompressed) and the message. */
function frame(message: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  message.copy(out, 5);
  return out;
}

interface CallSetup {
  address: string;
  conn: Connection;
  method: MethodDefinition;
  metadata: Metadata | undefined;
  options: CallOptions | undefined;
  maxReceive: number;
  maxSend: number;
  /** Unary and client-streaming calls: one response, reported here (never as 'error'). */
  callback?: (err: ServiceError | null, res?: unknown) => void;
}

/**
 * One call: a Duplex in object mode. Writing sends a request message; the
 * readable side yields response messages. Ends with 'end' on status OK; a
 * non-OK status destroys it with a ServiceError (streams) or goes to the
 * callback (unary and client streaming).
 */
export class Call extends Duplex {
  private readonly stream: ClientHttp2Stream;
  private readonly setup: CallSetup;
  /** Received bytes not yet parsed into messages: chunks, joined only once a whole message is there. */
  private chunks: Buffer[] = [];
  private buffered = 0;
  private headers: IncomingHttpHeaders | undefined;
  private trailers: IncomingHttpHeaders | undefined;
  private finished = false;
  private readonly timer: NodeJS.Timeout | undefined;
  private response: unknown;
  private responses = 0;
  private streamError: Error | undefined;

  constructor(setup: CallSetup) {
    super({ objectMode: true, allowHalfOpen: true });
    this.setup = setup;
    const { method, metadata, options, address } = setup;
    const headers: OutgoingHttpHeaders = {
      ...(metadata?.toHeaders() ?? {}),
      ':method': 'POST',
      ':path': method.path,
      ':authority': address,
      'content-type': 'application/grpc',
      te: 'trailers',
      'user-agent': 'berth-cli',
    };
    const deadline = options?.deadline instanceof Date ? options.deadline.getTime() : options?.deadline;
    if (deadline !== undefined && Number.isFinite(deadline)) {
      const ms = Math.max(1, Math.ceil(deadline - Date.now()));
      headers['grpc-timeout'] = `${Math.min(ms, 99_999_999)}m`;
      this.timer = setTimeout(() => this.fail(serviceError(Status.DEADLINE_EXCEEDED, 'Deadline exceeded'), true), ms);
    }
    this.stream = setup.conn.session.request(headers, { endStream: false });
    this.stream.on('response', (h) => {
      this.headers = h;
    });
    this.stream.on('trailers', (t) => {
      this.trailers = t;
    });
    this.stream.on('data', (chunk: Buffer) => this.onData(chunk));
    this.stream.on('end', () => this.onEnd());
    this.stream.on('close', () => this.onClose());
    this.stream.on('error', (err: Error) => {
      // Reported by onClose, with the stream's reset code or the connection's failure.
      this.streamError = err;
    });
  }

  /** Sends the one request message of a unary or server-streaming call and half-closes, in one write. */
  sendOnly(message: unknown): void {
    let bytes: Buffer;
    try {
      bytes = this.setup.method.requestSerialize(message);
    } catch (err) {
      this.fail(serviceError(Status.INTERNAL, `Request message serialization failure: ${err instanceof Error ? err.message : String(err)}`), true);
      return;
    }
    this.stream.end(frame(bytes));
    super.end();
  }

  /** Ends the call from this side: the server sees it cancelled; the caller gets CANCELLED. */
  cancel(): void {
    this.fail(serviceError(Status.CANCELLED, 'Cancelled on client'), true);
  }

  private onData(chunk: Buffer): void {
    if (this.finished) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    while (this.buffered >= 5) {
      if ((this.chunks[0] as Buffer).length < 5) this.chunks = [Buffer.concat(this.chunks)];
      const head = this.chunks[0] as Buffer;
      const compressed = head[0] !== 0;
      const length = head.readUInt32BE(1);
      const max = this.setup.maxReceive;
      if (max >= 0 && length > max) {
        this.fail(serviceError(Status.RESOURCE_EXHAUSTED, `Received message larger than max (${length} vs. ${max})`), true);
        return;
      }
      if (this.buffered < 5 + length) return;
      const all = this.chunks.length === 1 ? head : Buffer.concat(this.chunks, this.buffered);
      const body = all.subarray(5, 5 + length);
      const rest = all.subarray(5 + length);
      this.chunks = rest.length > 0 ? [rest] : [];
      this.buffered = rest.length;
      if (compressed) {
        this.fail(serviceError(Status.INTERNAL, 'Received a compressed message, which this client did not ask for'), true);
        return;
      }
      let message: unknown;
      try {
        message = this.setup.method.responseDeserialize(Buffer.from(body));
      } catch (err) {
        this.fail(serviceError(Status.INTERNAL, `Failed to parse server response: ${err instanceof Error ? err.message : String(err)}`), true);
        return;
      }
      if (this.setup.callback) {
        this.response = message;
        this.responses++;
      } else if (!this.push(message)) {
        this.stream.pause();
      }
    }
  }

  override _read(): void {
    if (!this.finished) this.stream.resume();
  }

  override _write(message: unknown, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    if (this.finished || this.stream.destroyed) {
      done();
      return;
    }
    let bytes: Buffer;
    try {
      bytes = this.setup.method.requestSerialize(message);
    } catch (err) {
      done(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    const max = this.setup.maxSend;
    if (max >= 0 && bytes.length > max) {
      this.fail(serviceError(Status.RESOURCE_EXHAUSTED, `Sent message larger than max (${bytes.length} vs. ${max})`), true);
      done();
      return;
    }
    // Done once HTTP/2 took it: the writable side's buffer is the flow control.
    this.stream.write(frame(bytes), () => done());
  }

  override _final(done: (err?: Error | null) => void): void {
    if (!this.finished && !this.stream.destroyed && !this.stream.writableEnded) this.stream.end();
    done();
  }

  /** The status from the trailers, or from the headers of a trailers-only response. */
  private status(): { code: number; details: string; metadata: Metadata } | undefined {
    const src = this.trailers?.['grpc-status'] !== undefined ? this.trailers : this.headers?.['grpc-status'] !== undefined ? this.headers : undefined;
    if (src) {
      const code = Number(src['grpc-status']);
      return { code: Number.isInteger(code) ? code : Status.UNKNOWN, details: decodeGrpcMessage(src['grpc-message']), metadata: Metadata.fromHeaders(src) };
    }
    const http = Number(this.headers?.[':status'] ?? 0);
    if (http !== 0 && http !== 200) return { code: httpStatusToGrpc(http), details: `Received HTTP status code ${http}`, metadata: new Metadata() };
    return undefined;
  }

  private onEnd(): void {
    const st = this.status();
    if (!st) return; // reported by onClose
    if (st.code !== Status.OK) {
      this.fail(serviceError(st.code, st.details, st.metadata), false);
      return;
    }
    if (this.setup.callback && this.responses !== 1) {
      this.fail(serviceError(Status.UNIMPLEMENTED, this.responses === 0 ? 'No message received' : 'Too many responses received'), false);
      return;
    }
    this.succeed();
  }

  private onClose(): void {
    if (this.finished) return;
    const st = this.status();
    if (st) {
      if (st.code === Status.OK) this.succeed();
      else this.fail(serviceError(st.code, st.details, st.metadata), false);
      return;
    }
    // A failed connection cancels its pending streams with the connection's error as the cause.
    const streamCause = (this.streamError as (Error & { cause?: unknown }) | undefined)?.cause;
    const failure = this.setup.conn.failure ?? (streamCause instanceof Error ? streamCause : undefined) ?? (this.headers === undefined ? this.streamError : undefined);
    if (failure || this.headers === undefined) {
      const why = failure ? `Error: ${failure.message}` : `the stream was closed with code ${this.stream.rstCode ?? 'unknown'}`;
      this.fail(serviceError(Status.UNAVAILABLE, this.headers === undefined ? `No connection established. Last error: ${why}` : `Connection dropped: ${why}`), false);
      return;
    }
    const code = this.stream.rstCode;
    const mapped = code === constants.NGHTTP2_REFUSED_STREAM ? Status.UNAVAILABLE : code === constants.NGHTTP2_CANCEL ? Status.CANCELLED : Status.INTERNAL;
    this.fail(serviceError(mapped, `Received RST_STREAM with code ${code ?? 'unknown'}`), false);
  }

  private done(): void {
    this.finished = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private succeed(): void {
    if (this.finished) return;
    this.done();
    if (this.setup.callback) this.setup.callback(null, this.response);
    else this.push(null);
  }

  private fail(err: ServiceError, reset: boolean): void {
    if (this.finished) return;
    this.done();
    if (reset && !this.stream.destroyed) this.stream.close(constants.NGHTTP2_CANCEL);
    if (this.setup.callback) {
      this.setup.callback(err);
      this.destroy();
    } else {
      this.destroy(err);
    }
  }
}

type Callback = (err: ServiceError | null, res?: unknown) => void;

/** Reads the optional (metadata, options, callback) arguments the way grpc-js does. */
function callArgs(args: unknown[]): { metadata?: Metadata; options?: CallOptions; callback?: Callback } {
  const out: { metadata?: Metadata; options?: CallOptions; callback?: Callback } = {};
  for (const a of args) {
    if (typeof a === 'function') out.callback = a as Callback;
    else if (a instanceof Metadata) out.metadata = a;
    else if (a !== undefined && a !== null && typeof a === 'object') out.options = a as CallOptions;
  }
  return out;
}

type Unary<Q, R> = (req: Q, metadata: Metadata, options: CallOptions, callback: (err: ServiceError | null, res: R) => void) => Call;
type ServerStreaming<Q> = (req: Q, metadata?: Metadata, options?: CallOptions) => Call;
type ClientStreaming<R> = (metadata: Metadata, options: CallOptions, callback: (err: ServiceError | null, res: R) => void) => Call;
type Bidi = (metadata?: Metadata, options?: CallOptions) => Call;

/** The method a client has for one method definition, by its stream kinds. */
export type ClientMethod<M> = M extends { requestStream: infer QS; responseStream: infer RS; requestSerialize(value: infer Q): Buffer; responseDeserialize(bytes: Buffer): infer R }
  ? QS extends true ? (RS extends true ? Bidi : ClientStreaming<R>) : (RS extends true ? ServerStreaming<Q> : Unary<Q, R>)
  : never;

/** A client for service definition S: one method per entry, and close(). */
export type RpcClient<S> = { [K in keyof S]: ClientMethod<S[K]> } & { close(): void };

/**
 * A client for one service at `address` ("HOST:PORT"), with a method per
 * entry of the definition (see the module comment).
 */
export function makeClient<S extends ServiceDefinition>(service: S, address: string, _creds: Credentials, options: ClientOptions = {}): RpcClient<S> {
  let conn: Connection | undefined;
  let closed = false;
  const maxReceive = typeof options['grpc.max_receive_message_length'] === 'number' ? options['grpc.max_receive_message_length'] : 4 * 1024 * 1024;
  const maxSend = typeof options['grpc.max_send_message_length'] === 'number' ? options['grpc.max_send_message_length'] : -1;
  const start = (method: MethodDefinition, args: unknown[], request: { value: unknown } | undefined): Call => {
    if (closed) throw new Error('the client was closed');
    conn ??= acquire(address);
    const { metadata, options: callOptions, callback } = callArgs(args);
    const call = new Call({ address, conn, method, metadata, options: callOptions, maxReceive, maxSend, ...(callback ? { callback } : {}) });
    if (request) call.sendOnly(request.value);
    return call;
  };
  const client: Record<string, unknown> = {
    close(): void {
      if (closed) return;
      closed = true;
      if (conn) release(address, conn);
    },
  };
  for (const [name, method] of Object.entries(service)) {
    client[name] = method.requestStream
      ? (...args: unknown[]) => start(method, args, undefined)
      : (req: unknown, ...args: unknown[]) => start(method, args, { value: req });
  }
  return client as RpcClient<S>;
}
