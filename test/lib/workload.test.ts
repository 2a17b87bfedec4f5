import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import {
  canonicalWorkload,
  canonicalWorkloadSpec,
  suggest,
  validateWorkloadFile,
  ValidationError,
  WORKLOAD_LIMITS,
  workloadSpecFingerprint,
  workloadSpecsEqual,
  type ValidatedWorkload,
  type WorkloadProblem,
} from '../../lib/index.js';
import { WorkloadSpec } from '../../proto/gen/berth/v1/types.js';

const REG = '127.0.0.1:5000';

/** A one-document file with the given lines under `spec:` (each indented by two spaces). */
function withSpec(...specLines: string[]): string {
  return ['apiVersion: berth/v1', 'kind: Workload', 'metadata:', '  name: web', 'spec:', ...specLines.map((l) => `  ${l}`)].join('\n') + '\n';
}

function validate(text: string, opts: { source?: string; defaultRegistry?: string } = { defaultRegistry: REG }): ValidatedWorkload[] {
  return validateWorkloadFile(text, opts);
}

/** The problems of a file that must be refused. */
function problemsOf(text: string, opts: { source?: string; defaultRegistry?: string } = { defaultRegistry: REG }): WorkloadProblem[] {
  try {
    validateWorkloadFile(text, opts);
  } catch (err) {
    assert.ok(err instanceof ValidationError, `expected ValidationError, got ${String(err)}`);
    return err.problems as WorkloadProblem[];
  }
  assert.fail('expected the file to be refused');
}

/** Asserts that the file is refused with exactly one problem at `path` whose message is `message`. */
function assertOneProblem(text: string, path: string, message: string | RegExp): WorkloadProblem {
  const problems = problemsOf(text);
  assert.equal(problems.length, 1, `expected one problem, got:\n${problems.map((p) => `${p.path}: ${p.message}`).join('\n')}`);
  const [p] = problems;
  assert.ok(p);
  assert.equal(p.path, path);
  if (typeof message === 'string') assert.equal(p.message, message);
  else assert.match(p.message, message);
  return p;
}

const FULL = `# two workloads and an empty document
apiVersion: berth/v1
kind: Workload
metadata: { name: web, labels: { app: web, example.com/tier: front } }
spec:
  replicas: 3
  image: web:latest
  command: [httpd, -f, -p, "8080"]
  args: []
  env: { GREETING: hello, EMPTY: "" }
  resources: { cpu: 500m, memory: 64Mi, pids: 256 }
  ports:
    - { name: http, container: 8080 }
    - { name: dns, container: 53, publish: 5353, protocol: udp }
  restart: { policy: always, backoffCapSeconds: 300 }
  health: { http: { port: 8080, path: /healthz }, intervalSeconds: 5, failureThreshold: 3 }
  placement: { nodeSelector: { zone: a }, spread: true, maxPerNode: 0 }
  update: { maxSurge: 1, maxUnavailable: 0 }
---
---
apiVersion: berth/v1
kind: Workload
metadata:
  name: worker
spec:
  image: registry.example.com:8443/team/worker@sha256:${'ab'.repeat(32)}
  replicas: 0
  health:
    exec: [cat, /tmp/ready]
    timeoutSeconds: 4
  restart:
    policy: on-failure
`;

describe('lib/workload', () => {
  describe('validateWorkloadFile', () => {
    it('returns every document validated and defaulted when a multi-document file is valid', () => {
      const out = validate(FULL);
      assert.equal(out.length, 2);
      assert.deepEqual(out[0], {
        document: 0,
        metadata: { name: 'web', labels: { app: 'web', 'example.com/tier': 'front' }, uid: '', createdUnixMs: 0, updatedUnixMs: 0 },
        spec: {
          replicas: 3,
          image: `${REG}/web:latest`,
          command: ['httpd', '-f', '-p', '8080'],
          args: [],
          env: { GREETING: 'hello', EMPTY: '' },
          resources: { cpuMillis: 500, memoryBytes: 64 * 1024 * 1024, pids: 256 },
          ports: [
            { name: 'http', container: 8080, publish: 0, protocol: 'tcp' },
            { name: 'dns', container: 53, publish: 5353, protocol: 'udp' },
          ],
          restart: { policy: 'always', backoffCapSeconds: 300 },
          health: {
            http: { port: 8080, path: '/healthz' },
            exec: [],
            intervalSeconds: 5,
            timeoutSeconds: 2,
            failureThreshold: 3,
            startPeriodSeconds: 0,
          },
          placement: { nodeSelector: { zone: 'a' }, spread: true, maxPerNode: 0 },
          update: { maxSurge: 1, maxUnavailable: 0 },
        },
      });
      assert.deepEqual(out[1], {
        document: 2,
        metadata: { name: 'worker', labels: {}, uid: '', createdUnixMs: 0, updatedUnixMs: 0 },
        spec: {
          replicas: 0,
          image: `registry.example.com:8443/team/worker@sha256:${'ab'.repeat(32)}`,
          command: [],
          args: [],
          env: {},
          resources: { cpuMillis: 0, memoryBytes: 0, pids: 0 },
          ports: [],
          restart: { policy: 'on-failure', backoffCapSeconds: 300 },
          health: { exec: ['cat', '/tmp/ready'], intervalSeconds: 10, timeoutSeconds: 4, failureThreshold: 3, startPeriodSeconds: 0 },
          placement: { nodeSelector: {}, spread: true, maxPerNode: 0 },
          update: { maxSurge: 1, maxUnavailable: 0 },
        },
      });
    });

    it('fills every default and leaves health out when only the image is given', () => {
      const [w] = validate(withSpec('image: busybox'));
      assert.equal(w?.spec.health, undefined);
      assert.deepEqual(w?.spec, {
        replicas: 1,
        image: `${REG}/busybox:latest`,
        command: [],
        args: [],
        env: {},
        resources: { cpuMillis: 0, memoryBytes: 0, pids: 0 },
        ports: [],
        restart: { policy: 'always', backoffCapSeconds: 300 },
        placement: { nodeSelector: {}, spread: true, maxPerNode: 0 },
        update: { maxSurge: 1, maxUnavailable: 0 },
      });
    });

    it('treats a field written as null or left empty as not set when it is optional', () => {
      const [w] = validate(withSpec('image: busybox', 'replicas:', 'env: null', 'ports: ~', 'resources:'));
      assert.equal(w?.spec.replicas, 1);
      assert.deepEqual(w?.spec.env, {});
      assert.deepEqual(w?.spec.ports, []);
    });

    it('defaults a tcp health check and keeps a tcp port when tcp is given', () => {
      const [w] = validate(withSpec('image: busybox', 'health: { tcp: { port: 6379 }, startPeriodSeconds: 30 }'));
      assert.deepEqual(w?.spec.health, { tcp: { port: 6379 }, exec: [], intervalSeconds: 10, timeoutSeconds: 2, failureThreshold: 3, startPeriodSeconds: 30 });
    });

    it('defaults the http path to "/" when a health check gives only a port', () => {
      const [w] = validate(withSpec('image: busybox', 'health: { http: { port: 80 } }'));
      assert.deepEqual(w?.spec.health?.http, { port: 80, path: '/' });
    });

    it('accepts the boundaries of every range when they are exactly at the limit', () => {
      const [w] = validate(
        withSpec(
          'image: busybox',
          'replicas: 10000',
          'ports: [ { container: 1, publish: 65535 }, { container: 65535, publish: 1 } ]',
          'restart: { backoffCapSeconds: 86400 }',
          'update: { maxSurge: 0, maxUnavailable: 10000 }',
          'placement: { maxPerNode: 10000, spread: false }',
        ),
      );
      assert.equal(w?.spec.replicas, 10000);
      assert.equal(w?.spec.update?.maxSurge, 0);
      assert.equal(w?.spec.placement?.spread, false);
      assert.deepEqual(w?.spec.ports.map((p) => p.name), ['', '']);
    });

    it('allows the same container port for tcp and udp when the protocols differ', () => {
      const [w] = validate(withSpec('image: busybox', 'ports: [ { container: 53 }, { container: 53, protocol: udp } ]'));
      assert.equal(w?.spec.ports.length, 2);
    });

    it('keeps the image as written when it names a host and no default registry is configured', () => {
      const [w] = validate(withSpec('image: localhost:5000/busybox:1.36'), {});
      assert.equal(w?.spec.image, 'localhost:5000/busybox:1.36');
    });
  });

  describe('validateWorkloadFile rejections', () => {
    const cases: Array<{ it: string; spec: string[]; path: string; message: string | RegExp }> = [
      { it: 'replicas below 0', spec: ['image: busybox', 'replicas: -2'], path: 'spec.replicas', message: 'expected a whole number from 0 to 10000, got "-2" (line 7)' },
      { it: 'replicas above 10000', spec: ['image: busybox', 'replicas: 10001'], path: 'spec.replicas', message: 'expected a whole number from 0 to 10000, got "10001" (line 7)' },
      { it: 'fractional replicas', spec: ['image: busybox', 'replicas: 1.5'], path: 'spec.replicas', message: 'expected a whole number from 0 to 10000, got "1.5" (line 7)' },
      { it: 'quoted replicas', spec: ['image: busybox', 'replicas: "3"'], path: 'spec.replicas', message: 'expected a whole number from 0 to 10000, got the string "3" (remove the quotes) (line 7)' },
      { it: 'replicas as a list', spec: ['image: busybox', 'replicas: [3]'], path: 'spec.replicas', message: 'expected a whole number from 0 to 10000, got a list (line 7)' },
      { it: 'a missing image', spec: ['replicas: 1'], path: 'spec.image', message: /^required field is missing \(expected an image reference such as "web:1\.0"/ },
      { it: 'an image with uppercase', spec: ['image: Busybox'], path: 'spec.image', message: /^invalid image reference "Busybox": repository "Busybox" must be lowercase/ },
      { it: 'an image with a sha512 digest', spec: [`image: "busybox@sha512:${'a'.repeat(128)}"`], path: 'spec.image', message: /digest algorithm "sha512" is not supported \(expected sha256\)/ },
      { it: 'an image as a number', spec: ['image: 42'], path: 'spec.image', message: 'expected an image reference such as "web:1.0", got the number 42 (put it in quotes, "42", to use it as text) (line 6)' },
      { it: 'a command with a number', spec: ['image: busybox', 'command: [sleep, 10]'], path: 'spec.command[1]', message: 'expected a string, got the number 10 (put it in quotes, "10", to use it as text) (line 7)' },
      { it: 'a command as a string', spec: ['image: busybox', 'command: "sleep 10"'], path: 'spec.command', message: 'expected a list of strings, got the string "sleep 10" (line 7)' },
      { it: 'a command with an empty program', spec: ['image: busybox', 'command: ["", x]'], path: 'spec.command[0]', message: 'expected the program to run, got an empty string (line 7)' },
      { it: 'args with a boolean', spec: ['image: busybox', 'args: [true]'], path: 'spec.args[0]', message: 'expected a string, got the boolean true (put it in quotes, "true", to use it as text) (line 7)' },
      { it: 'an env value that is a number', spec: ['image: busybox', 'env: { PORT: 8080 }'], path: 'spec.env.PORT', message: 'expected a string, got the number 8080 (put it in quotes, "8080", to use it as text) (line 7)' },
      { it: 'an env value left empty', spec: ['image: busybox', 'env:', '  OK:'], path: 'spec.env.OK', message: /^expected a string, got nothing \(write "" for an empty string\)/ },
      { it: 'an env name starting with a digit', spec: ['image: busybox', 'env: { 1A: x }'], path: 'spec.env["1A"]', message: 'expected an environment variable name of letters, digits and "_", not starting with a digit, got "1A" (line 7)' },
      { it: 'an env name with a dash', spec: ['image: busybox', 'env: { MY-VAR: x }'], path: 'spec.env.MY-VAR', message: /^expected an environment variable name of letters, digits and "_"/ },
      { it: 'an env name "__proto__"', spec: ['image: busybox', 'env: { __proto__: x }'], path: 'spec.env.__proto__', message: /reserved "__proto__"/ },
      { it: 'an env value with a NUL', spec: ['image: busybox', 'env: { A: "x\\0y" }'], path: 'spec.env.A', message: 'expected a string without NUL characters (line 7)' },
      { it: 'env as a list', spec: ['image: busybox', 'env: [A=1]'], path: 'spec.env', message: 'expected a mapping of environment variable names to string values, got a list (line 7)' },
      { it: 'a bad cpu', spec: ['image: busybox', 'resources: { cpu: abc }'], path: 'spec.resources.cpu', message: 'expected a CPU amount in cores or millicores such as 2, "0.5" or "500m", got "abc" (line 7)' },
      { it: 'a memory size with an unknown unit', spec: ['image: busybox', 'resources: { memory: 12XB }'], path: 'spec.resources.memory', message: /\(unknown unit "XB"\), got "12XB" \(line 7\)$/ },
      { it: 'a negative memory size', spec: ['image: busybox', 'resources: { memory: -1 }'], path: 'spec.resources.memory', message: /\(not negative\), got "-1" \(line 7\)$/ },
      { it: 'a fraction of a byte', spec: ['image: busybox', 'resources: { memory: 0.5 }'], path: 'spec.resources.memory', message: /\(the result must be a whole number of bytes\), got "0\.5"/ },
      { it: 'memory as a mapping', spec: ['image: busybox', 'resources: { memory: { a: 1 } }'], path: 'spec.resources.memory', message: /got a mapping \(line 7\)$/ },
      { it: 'fractional pids', spec: ['image: busybox', 'resources: { pids: 2.5 }'], path: 'spec.resources.pids', message: /^expected a whole number of processes from 0 to 4194304, got "2\.5"/ },
      { it: 'a port of 0', spec: ['image: busybox', 'ports: [ { container: 0 } ]'], path: 'spec.ports[0].container', message: 'expected a port number from 1 to 65535, got "0" (line 7)' },
      { it: 'a port above 65535', spec: ['image: busybox', 'ports:', '  - container: 80', '  - container: 65536'], path: 'spec.ports[1].container', message: 'expected a port number from 1 to 65535, got "65536" (line 9)' },
      { it: 'a published port above 65535', spec: ['image: busybox', 'ports: [ { container: 80, publish: 70000 } ]'], path: 'spec.ports[0].publish', message: 'expected a host port number from 1 to 65535, got "70000" (line 7)' },
      { it: 'a port without container', spec: ['image: busybox', 'ports: [ { name: http } ]'], path: 'spec.ports[0].container', message: /^required field is missing \(expected the port the container listens on, from 1 to 65535\)/ },
      { it: 'a port given as a number', spec: ['image: busybox', 'ports: [ 80 ]'], path: 'spec.ports[0]', message: /^expected a mapping with container and optional name, publish and protocol, got the number 80/ },
      { it: 'a bad protocol', spec: ['image: busybox', 'ports: [ { container: 80, protocol: TCP } ]'], path: 'spec.ports[0].protocol', message: 'expected one of "tcp", "udp", got "TCP" (did you mean "tcp"?) (line 7)' },
      { it: 'a bad port name', spec: ['image: busybox', 'ports: [ { container: 80, name: Http_1 } ]'], path: 'spec.ports[0].name', message: /^expected a port name of 1 to 15 lowercase letters/ },
      { it: 'a duplicate port name', spec: ['image: busybox', 'ports: [ { container: 80, name: web }, { container: 81, name: web } ]'], path: 'spec.ports[1].name', message: 'duplicate port name "web" (also used by spec.ports[0]) (line 7)' },
      { it: 'a duplicate container port', spec: ['image: busybox', 'ports: [ { container: 80 }, { container: 80, protocol: tcp } ]'], path: 'spec.ports[1].container', message: 'duplicate container port 80/tcp (also used by spec.ports[0]) (line 7)' },
      { it: 'a duplicate published port', spec: ['image: busybox', 'ports: [ { container: 80, publish: 8080 }, { container: 81, publish: 8080 } ]'], path: 'spec.ports[1].publish', message: 'duplicate published port 8080/tcp (also used by spec.ports[0]) (line 7)' },
      { it: 'a bad restart policy', spec: ['image: busybox', 'restart: { policy: OnFailure }'], path: 'spec.restart.policy', message: 'expected one of "always", "on-failure", "never", got "OnFailure" (did you mean "on-failure"?) (line 7)' },
      { it: 'a zero backoff cap', spec: ['image: busybox', 'restart: { backoffCapSeconds: 0 }'], path: 'spec.restart.backoffCapSeconds', message: 'expected a whole number of seconds from 1 to 86400, got "0" (line 7)' },
      { it: 'health without a check', spec: ['image: busybox', 'health: { intervalSeconds: 5 }'], path: 'spec.health', message: 'expected exactly one check: http, tcp or exec, got none (line 7)' },
      { it: 'health with two checks', spec: ['image: busybox', 'health: { tcp: { port: 80 }, exec: ["true"] }'], path: 'spec.health', message: 'expected exactly one check: http, tcp or exec, got tcp and exec (line 7)' },
      { it: 'health with an empty exec', spec: ['image: busybox', 'health: { exec: [] }'], path: 'spec.health.exec', message: /^expected a command to run such as \["cat", "\/tmp\/ready"\], got an empty command/ },
      { it: 'an http check without a port', spec: ['image: busybox', 'health: { http: { path: /x } }'], path: 'spec.health.http.port', message: /^required field is missing \(expected a port number from 1 to 65535\)/ },
      { it: 'an http path without a slash', spec: ['image: busybox', 'health: { http: { port: 80, path: healthz } }'], path: 'spec.health.http.path', message: 'expected a URL path starting with "/" and without spaces or control characters, got "healthz" (line 7)' },
      { it: 'a zero interval', spec: ['image: busybox', 'health: { tcp: { port: 80 }, intervalSeconds: 0 }'], path: 'spec.health.intervalSeconds', message: 'expected a whole number of seconds from 1 to 3600, got "0" (line 7)' },
      { it: 'a zero failure threshold', spec: ['image: busybox', 'health: { tcp: { port: 80 }, failureThreshold: 0 }'], path: 'spec.health.failureThreshold', message: 'expected a whole number from 1 to 100, got "0" (line 7)' },
      { it: 'spread as a string', spec: ['image: busybox', 'placement: { spread: "yes" }'], path: 'spec.placement.spread', message: 'expected true or false, got the string "yes" (line 7)' },
      { it: 'a node selector value that is a number', spec: ['image: busybox', 'placement: { nodeSelector: { rack: 3 } }'], path: 'spec.placement.nodeSelector.rack', message: /^expected a string, got the number 3/ },
      { it: 'a negative maxPerNode', spec: ['image: busybox', 'placement: { maxPerNode: -1 }'], path: 'spec.placement.maxPerNode', message: 'expected a whole number from 0 to 10000, got "-1" (line 7)' },
      { it: 'maxSurge and maxUnavailable both 0', spec: ['image: busybox', 'update: { maxSurge: 0, maxUnavailable: 0 }'], path: 'spec.update', message: 'expected maxSurge or maxUnavailable to be at least 1, got both 0 (an update could never make progress) (line 7)' },
      { it: 'a percentage maxSurge', spec: ['image: busybox', 'update: { maxSurge: 25% }'], path: 'spec.update.maxSurge', message: 'expected a whole number from 0 to 10000, got the string "25%" (line 7)' },
      { it: 'a misspelled spec field', spec: ['image: busybox', 'replcias: 3'], path: 'spec.replcias', message: 'unknown field "replcias" (did you mean "replicas"?) (line 7)' },
      { it: 'a snake_case field', spec: ['image: busybox', 'restart: { backoff_cap_seconds: 3 }'], path: 'spec.restart.backoff_cap_seconds', message: 'unknown field "backoff_cap_seconds" (did you mean "backoffCapSeconds"?) (line 7)' },
      { it: 'an unknown field with no close match', spec: ['image: busybox', 'sidecars: []'], path: 'spec.sidecars', message: 'unknown field "sidecars" (expected one of: replicas, image, command, args, env, resources, ports, restart, health, placement, update, volumes, autoscale, network, drainSeconds) (line 7)' },
      { it: 'a spec that is a list', spec: [], path: 'spec', message: /^required field is missing/ },
      { it: 'an alias', spec: ['image: &img busybox', 'args: [*img]'], path: 'spec.args[0]', message: 'aliases such as "*name" are not supported (write the value out in full) (line 7)' },
    ];
    for (const c of cases) {
      it(`names ${c.path} and what was expected when the file has ${c.it}`, () => {
        assertOneProblem(withSpec(...c.spec), c.path, c.message);
      });
    }

    it('names the metadata field when the workload name is not a DNS label', () => {
      for (const name of ['Web', 'web_1', '-web', 'web-', 'a'.repeat(64), '""']) {
        const text = `apiVersion: berth/v1\nkind: Workload\nmetadata: { name: ${name} }\nspec: { image: busybox }\n`;
        const p = assertOneProblem(text, 'metadata.name', /^expected a name of 1 to 63 lowercase letters, digits and "-", starting and ending with a letter or digit/);
        assert.equal(p.line, 3);
      }
    });

    it('names the label when a label key or value breaks the rules', () => {
      const text = (labels: string): string => `apiVersion: berth/v1\nkind: Workload\nmetadata: { name: web, labels: ${labels} }\nspec: { image: busybox }\n`;
      assertOneProblem(text('{ "-x": a }'), 'metadata.labels["-x"]', /^expected a label key of \[prefix\/\]name/);
      assertOneProblem(text('{ "Bad_Prefix/x": a }'), 'metadata.labels["Bad_Prefix/x"]', /^expected a label key whose prefix before "\/" is a DNS subdomain/);
      assertOneProblem(text(`{ ${'k'.repeat(64)}: a }`), `metadata.labels.${'k'.repeat(64)}`, /^expected a label key/);
      assertOneProblem(text('{ app: "a b" }'), 'metadata.labels.app', /^expected a label value of at most 63 letters/);
      assertOneProblem(text(`{ app: ${'v'.repeat(64)} }`), 'metadata.labels.app', /^expected a label value/);
      assertOneProblem(text('{ version: 2 }'), 'metadata.labels.version', 'expected a string, got the number 2 (put it in quotes, "2", to use it as text) (line 3)');
      assertOneProblem(text('{ 80: http }'), 'metadata.labels["80"]', /^expected keys to be strings, got the number 80/);
      assert.equal(validate(text('{ app.kubernetes.io/name: web, empty: "" }'))[0]?.metadata.labels['app.kubernetes.io/name'], 'web');
    });

    it('says which apiVersion and kind are supported when others are given', () => {
      const problems = problemsOf('apiVersion: berth/v2\nkind: Deployment\nmetadata: { name: web }\nspec: { image: busybox }\n');
      assert.deepEqual(
        problems.map((p) => [p.path, p.message]),
        [
          ['apiVersion', 'expected "berth/v1" (the only supported version), got "berth/v2" (line 1)'],
          ['kind', 'expected "Workload" (the only supported kind), got "Deployment" (line 2)'],
        ],
      );
    });

    it('reports missing top-level fields and unknown ones when a document is incomplete', () => {
      const problems = problemsOf('kind: Workload\nmetdata: { name: web }\n');
      assert.deepEqual(
        problems.map((p) => [p.path, p.message.replace(/ \(line \d+\)$/, '')]),
        [
          ['metdata', 'unknown field "metdata" (did you mean "metadata"?)'],
          ['apiVersion', 'required field is missing (expected "berth/v1")'],
          ['metadata', 'required field is missing (expected a mapping with name and optional labels)'],
          ['spec', 'required field is missing (expected a mapping with at least image)'],
        ],
      );
    });

    it('names the document itself when a document is not a mapping', () => {
      assertOneProblem('- a\n- b\n', '(document)', 'expected a mapping with apiVersion, kind, metadata, spec, got a list (line 1)');
    });

    it('collects every problem of every document when several are wrong', () => {
      const text = [
        'apiVersion: berth/v1',
        'kind: Workload',
        'metadata: { name: web }',
        'spec: { image: busybox, replicas: -1, env: { A: 1 } }',
        '---',
        'apiVersion: berth/v1',
        'kind: Workload',
        'metadata: { name: api }',
        'spec: { image: busybox, ports: [ { container: 0 } ], update: { maxSurge: 0, maxUnavailable: 0 } }',
        '',
      ].join('\n');
      const problems = problemsOf(text);
      assert.deepEqual(
        problems.map((p) => [p.document, p.path, p.line]),
        [
          [0, 'spec.replicas', 4],
          [0, 'spec.env.A', 4],
          [1, 'spec.ports[0].container', 9],
          [1, 'spec.update', 9],
        ],
      );
    });

    it('refuses the whole file when one document of several is wrong', () => {
      const text = `${withSpec('image: busybox')}---\n${withSpec('image: busybox', 'replicas: x').replace('name: web', 'name: api')}`;
      const problems = problemsOf(text);
      assert.equal(problems.length, 1);
      assert.equal(problems[0]?.document, 1);
    });

    it('names both documents when two workloads have the same name', () => {
      const text = `${withSpec('image: busybox')}---\n${withSpec('image: other')}`;
      const p = assertOneProblem(text, 'metadata.name', 'duplicate workload name "web" (also in document 1) (line 11)');
      assert.equal(p.document, 1);
    });

    it('gives the line and column when the YAML does not parse', () => {
      const p = assertOneProblem('apiVersion: berth/v1\nkind: Workload\nmetadata: { name: web\nspec: {}\n', '(yaml)', /^invalid YAML at line \d+, column \d+: /);
      assert.ok(p.line !== undefined && p.line >= 3, `line ${String(p.line)}`);
      assert.ok(p.column !== undefined);
    });

    it('reports a duplicate key as a YAML problem with its line when a key is repeated', () => {
      const p = assertOneProblem(withSpec('image: busybox', 'image: other'), '(yaml)', /^invalid YAML at line 7, column 3: Map keys must be unique/);
      assert.equal(p.line, 7);
    });

    it('refuses tags it does not know when a value has a custom tag', () => {
      assertOneProblem(withSpec('image: !shell busybox'), '(yaml)', /^invalid YAML at line 6, column \d+: Unresolved tag: !shell/);
    });

    it('reads YAML 1.2 only when a value looks like a YAML 1.1 boolean', () => {
      // "yes" is a string in YAML 1.2, so spread: yes is not a boolean.
      assertOneProblem(withSpec('image: busybox', 'placement: { spread: yes }'), 'spec.placement.spread', 'expected true or false, got the string "yes" (line 7)');
    });

    it('refuses an image without a host when no default registry is configured', () => {
      const problems = problemsOf(withSpec('image: busybox'), {});
      assert.equal(problems.length, 1);
      assert.equal(problems[0]?.path, 'spec.image');
      assert.equal(problems[0]?.message, 'image "busybox" names no registry host and no default registry is configured (line 6)');
    });

    it('puts the source name and document in the error message when validation fails', () => {
      const text = `${withSpec('image: busybox')}---\n${withSpec('image: busybox', 'replicas: -2').replace('name: web', 'name: api')}`;
      assert.throws(
        () => validateWorkloadFile(text, { source: 'web.yaml', defaultRegistry: REG }),
        (err: unknown) => {
          assert.ok(err instanceof ValidationError);
          assert.equal(err.message, 'web.yaml: document 2: spec.replicas: expected a whole number from 0 to 10000, got "-2" (line 14)');
          assert.equal(err.field, 'spec.replicas');
          return true;
        },
      );
    });

    it('refuses a file with no workloads when it is empty or has only empty documents', () => {
      for (const text of ['', '\n', '# nothing here\n', '---\n', '---\n---\n# c\n']) {
        assertOneProblem(text, '(file)', 'the file has no workloads (expected at least one document with apiVersion: berth/v1 and kind: Workload)');
      }
    });

    it('skips empty documents and numbers the rest by their place in the file', () => {
      const text = `---\n---\n${withSpec('image: busybox')}---\n# only a comment\n---\n${withSpec('image: busybox').replace('name: web', 'name: api')}`;
      // documents: 0 empty, 1 web, 2 comment only, 3 api
      assert.deepEqual(validate(text).map((w) => [w.document, w.metadata.name]), [[1, 'web'], [3, 'api']]);
    });

    it('refuses a file larger than the cap before parsing it', () => {
      const text = withSpec('image: busybox') + `# ${'x'.repeat(WORKLOAD_LIMITS.maxFileBytes)}\n`;
      assertOneProblem(text, '(file)', /^the file is \d+ bytes \(expected at most 1048576 bytes\)$/);
    });

    it('refuses a file with more documents than the cap', () => {
      const text = Array.from({ length: WORKLOAD_LIMITS.maxDocuments + 1 }, (_, i) => withSpec('image: busybox').replace('name: web', `name: w${i}`)).join('---\n');
      assertOneProblem(text, '(file)', 'the file has 1001 or more documents (expected at most 1000)');
    });

    it('accepts a file with exactly the most documents allowed', () => {
      const text = Array.from({ length: WORKLOAD_LIMITS.maxDocuments }, (_, i) => withSpec('image: busybox').replace('name: web', `name: w${i}`)).join('---\n');
      assert.equal(validate(text).length, WORKLOAD_LIMITS.maxDocuments);
    });

    it('refuses deeply nested YAML without building it when nesting is hostile', () => {
      for (const text of ['- '.repeat(5000) + 'x\n', '['.repeat(5000) + ']'.repeat(5000) + '\n', '{a: '.repeat(5000) + '1' + '}'.repeat(5000) + '\n']) {
        assertOneProblem(text, '(file)', /^mappings and lists are nested more than 64 levels deep \(line 1\)$/);
      }
      const later = withSpec('image: busybox') + 'extra:\n  - ' + '['.repeat(100) + ']'.repeat(100) + '\n';
      const p = assertOneProblem(later, '(file)', /^mappings and lists are nested more than 64 levels deep \(line 8\)$/);
      assert.equal(p.line, 8);
    });

    it('accepts nesting up to the limit when a file is deep but not hostile', () => {
      const deep = '['.repeat(60) + ']'.repeat(60);
      assertOneProblem(withSpec('image: busybox', `args: ${deep}`), 'spec.args[0]', /^expected a string, got a list/);
    });

    it('caps the number of problems reported when a file has very many', () => {
      const keys = Array.from({ length: 500 }, (_, i) => `  unknownField${i}: 1`);
      const problems = problemsOf(withSpec('image: busybox', ...keys.map((k) => k.trim())));
      assert.equal(problems.length, 101);
      assert.deepEqual(problems[100], { path: '(file)', message: '400 more problems not shown (fix the ones above first)' });
    });

    it('throws only ValidationError with a path and message when the input is mangled at random', () => {
      let seed = 20261127;
      const random = (): number => {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        return seed / 0x7fffffff;
      };
      const alphabet = ' \n-:[]{}",\'#&*!|>?%@`0123456789abcxyz.~\t\\\u0000é';
      let refused = 0;
      for (let i = 0; i < 600; i++) {
        let text = FULL;
        const edits = 1 + Math.floor(random() * 4);
        for (let j = 0; j < edits; j++) {
          const pos = Math.floor(random() * text.length);
          const ch = alphabet[Math.floor(random() * alphabet.length)] ?? ' ';
          const op = random();
          text = op < 0.33 ? text.slice(0, pos) + text.slice(pos + 1) : op < 0.66 ? text.slice(0, pos) + ch + text.slice(pos) : text.slice(0, pos) + ch + text.slice(pos + 1);
        }
        try {
          validateWorkloadFile(text, { defaultRegistry: REG });
        } catch (err) {
          assert.ok(err instanceof ValidationError, `input ${JSON.stringify(text)} threw ${String(err)}`);
          for (const p of err.problems) assert.ok(p.path !== '' && p.message !== '', JSON.stringify(p));
          refused++;
        }
      }
      assert.ok(refused > 200, `only ${refused} of 600 mangled files were refused`);
    });

    it('refuses non-string input when called from untyped code', () => {
      assertOneProblem(42 as unknown as string, '(file)', 'expected the file contents as text, got number');
    });
  });

  describe('suggest', () => {
    it('suggests the nearest field name when a word is misspelled, swapped or differently cased', () => {
      const fields = ['replicas', 'image', 'command', 'args', 'env', 'ports'];
      assert.equal(suggest('replcias', fields), 'replicas');
      assert.equal(suggest('Replicas', fields), 'replicas');
      assert.equal(suggest('imgae', fields), 'image');
      assert.equal(suggest('port', fields), 'ports');
      assert.equal(suggest('volumes', fields), undefined);
      assert.equal(suggest('x', fields), undefined);
    });
  });

  describe('canonical form', () => {
    const base = withSpec(
      'image: web:1.0',
      'replicas: 2',
      'env: { A: "1", B: "2" }',
      'resources: { cpu: 500m, memory: 64Mi }',
      'ports: [ { name: http, container: 8080 } ]',
      'placement: { nodeSelector: { zone: a, rack: r1 } }',
    );
    const specOf = (text: string): WorkloadSpec => {
      const [w] = validate(text);
      assert.ok(w);
      return w.spec;
    };

    it('is equal when the same spec is written differently', () => {
      const same = [
        // block style, reordered keys and maps, explicit defaults, other quantity spellings
        [
          'apiVersion: berth/v1',
          'kind: Workload',
          'metadata:',
          '  name: web',
          'spec:',
          '  placement:',
          '    nodeSelector:',
          '      rack: r1',
          '      zone: a',
          '    spread: true',
          '    maxPerNode: 0',
          '  env:',
          '    B: "2"',
          '    A: "1"',
          '  ports:',
          '    - container: 8080',
          '      name: http',
          '      protocol: tcp',
          '  resources:',
          '    memory: 67108864',
          '    cpu: 0.5',
          '    pids: 0',
          `  image: ${REG}/web:1.0`,
          '  replicas: 2',
          '  restart: { policy: always, backoffCapSeconds: 300 }',
          '  update: { maxSurge: 1, maxUnavailable: 0 }',
          '  command: []',
          '',
        ].join('\n'),
      ];
      const a = specOf(base);
      for (const text of same) {
        const b = specOf(text);
        assert.equal(canonicalWorkloadSpec(a), canonicalWorkloadSpec(b));
        assert.ok(workloadSpecsEqual(a, b));
        assert.equal(workloadSpecFingerprint(a), workloadSpecFingerprint(b));
      }
    });

    it('is equal after a protobuf round trip when maps come back in another order', () => {
      const a = specOf(base);
      const decoded = WorkloadSpec.decode(WorkloadSpec.encode(a).finish());
      assert.ok(workloadSpecsEqual(a, decoded));
      assert.ok(workloadSpecsEqual(a, { ...a, env: { B: '2', A: '1' } }));
      // Absent sub-messages read as their defaults.
      const bare: WorkloadSpec = { replicas: 1, image: 'r.io/x:1', command: [], args: [], env: {}, ports: [] };
      const zeroed: WorkloadSpec = { ...bare, resources: { cpuMillis: 0, memoryBytes: 0, pids: 0 }, update: { maxSurge: 0, maxUnavailable: 0 } };
      assert.ok(workloadSpecsEqual(bare, zeroed));
    });

    it('differs when any field changes', () => {
      const a = specOf(base);
      const changes: Array<[string, string]> = [
        ['replicas: 2', 'replicas: 3'],
        ['image: web:1.0', 'image: web:1.1'],
        ['env: { A: "1", B: "2" }', 'env: { A: "1", B: "3" }'],
        ['env: { A: "1", B: "2" }', 'env: { A: "1" }'],
        ['cpu: 500m', 'cpu: 501m'],
        ['memory: 64Mi', 'memory: 65Mi'],
        ['container: 8080', 'container: 8081'],
        ['name: http, container', 'name: web, container'],
        ['{ name: http, container: 8080 }', '{ name: http, container: 8080, protocol: udp }'],
        ['{ name: http, container: 8080 }', '{ name: http, container: 8080, publish: 80 }'],
        ['rack: r1', 'rack: r2'],
      ];
      for (const [from, to] of changes) {
        assert.ok(base.includes(from), from);
        const b = specOf(base.replace(from, to));
        assert.ok(!workloadSpecsEqual(a, b), `expected a difference after ${from} -> ${to}`);
        assert.notEqual(workloadSpecFingerprint(a), workloadSpecFingerprint(b));
      }
      const extra = [
        'command: [sh]',
        'args: [x]',
        'resources: { cpu: 500m, memory: 64Mi, pids: 1 }',
        'restart: { policy: never }',
        'restart: { backoffCapSeconds: 10 }',
        'health: { tcp: { port: 80 } }',
        'placement: { nodeSelector: { zone: a, rack: r1 }, spread: false }',
        'placement: { nodeSelector: { zone: a, rack: r1 }, maxPerNode: 1 }',
        'update: { maxSurge: 2 }',
        'update: { maxUnavailable: 1 }',
      ];
      for (const line of extra) {
        const key = line.split(':')[0] ?? '';
        const lines = base.split('\n').filter((l) => !l.trimStart().startsWith(`${key}:`));
        const b = specOf(`${lines.join('\n').trimEnd()}\n  ${line}\n`);
        assert.ok(!workloadSpecsEqual(a, b), `expected a difference with ${line}`);
      }
    });

    it('tells health checks apart when only the check kind differs', () => {
      const tcp = specOf(withSpec('image: x', 'health: { tcp: { port: 80 } }'));
      const http = specOf(withSpec('image: x', 'health: { http: { port: 80 } }'));
      const none = specOf(withSpec('image: x'));
      assert.ok(!workloadSpecsEqual(tcp, http));
      assert.ok(!workloadSpecsEqual(tcp, none));
    });

    it('includes name and sorted labels in the whole-workload form', () => {
      const [a] = validate(base.replace('name: web', 'name: web\n  labels: { x: "1", y: "2" }'));
      const [b] = validate(base.replace('name: web', 'name: web\n  labels: { y: "2", x: "1" }'));
      const [c] = validate(base.replace('name: web', 'name: web\n  labels: { y: "2" }'));
      assert.ok(a && b && c);
      assert.equal(canonicalWorkload(a), canonicalWorkload(b));
      assert.notEqual(canonicalWorkload(a), canonicalWorkload(c));
      assert.notEqual(canonicalWorkload(a), canonicalWorkload({ ...a, metadata: { ...a.metadata, name: 'other' } }));
      assert.equal(canonicalWorkload({ ...a, metadata: { ...a.metadata, uid: 'u', createdUnixMs: 5 } }), canonicalWorkload(a));
    });
  });
});

describe('lib/workload documentation and examples', () => {
  const root = new URL('../../../', import.meta.url);

  it('accepts every YAML example in docs/workload-file.md', async () => {
    const text = await readFile(new URL('docs/workload-file.md', root), 'utf8');
    const blocks = [...text.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1] ?? '');
    assert.ok(blocks.length >= 3, `found ${blocks.length} yaml blocks`);
    let workloads = 0;
    for (const block of blocks) {
      // Fragments (no apiVersion) are shown inside a spec; wrap them.
      const file = block.includes('apiVersion:') ? block : `apiVersion: berth/v1\nkind: Workload\nmetadata: { name: x }\nspec:\n  image: x\n${block.replace(/^/gm, '  ')}`;
      workloads += validateWorkloadFile(file, { defaultRegistry: REG, source: 'docs/workload-file.md' }).length;
    }
    assert.ok(workloads >= 4);
  });

  it('accepts every file in examples/ when it is a workload file', async () => {
    const dir = new URL('examples/', root);
    const names = (await readdir(dir)).filter((n) => n.endsWith('.yaml') || n.endsWith('.yml'));
    for (const name of names) {
      const text = await readFile(new URL(name, dir), 'utf8');
      if (!text.includes('kind: Workload')) continue;
      assert.ok(validateWorkloadFile(text, { defaultRegistry: REG, source: name }).length >= 1);
    }
  });
});
