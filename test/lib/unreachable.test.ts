import assert from 'node:assert/strict';
import { connectFailureReason, isConnectFailure } from '../../lib/index.js';

describe('lib/unreachable', () => {
  it('words grpc-js connection failures the way people say them', () => {
    const refused = 'No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:7070. Resolution note: ';
    assert.equal(isConnectFailure(refused), true);
    assert.equal(connectFailureReason(refused), 'connection refused');
    assert.equal(connectFailureReason('Name resolution failed for target dns:nowhere.invalid:7070: getaddrinfo ENOTFOUND nowhere.invalid'), 'host not found');
    assert.equal(connectFailureReason('No connection established. Last error: Error: connect EHOSTUNREACH 10.0.0.9:7070'), 'host unreachable');
    assert.equal(connectFailureReason('Connection dropped'), 'connection reset');
  });

  it('keeps the details, without grpc-js boilerplate, when the cause is not known', () => {
    assert.equal(connectFailureReason('No connection established. Last error: Error: something odd. Resolution note: '), 'something odd.');
  });

  it('does not treat an UNAVAILABLE sent by the server as a connection failure', () => {
    assert.equal(isConnectFailure('failed to reach etcd: not the leader'), false);
    // A server relaying a refused connection further down (an agent that cannot reach a registry) is not this client's failure.
    assert.equal(isConnectFailure('failed to call RunContainer on node "n1" at "10.0.0.2:7071": failed to reach registry "127.0.0.1:5000" after 5 attempts: connect ECONNREFUSED 127.0.0.1:5000'), false);
    assert.equal(isConnectFailure('Connection dropped: Error: read ECONNRESET'), true);
    assert.equal(isConnectFailure('Name resolution failed for target dns:nowhere.invalid:7070'), true);
  });
});
