/**
 * Human wording for "could not reach a server" errors. grpc-js reports a
 * refused or failed connection as UNAVAILABLE with details such as
 * "No connection established. Last error: Error: connect ECONNREFUSED
 * 127.0.0.1:7070. Resolution note: "; people want "connection refused".
 */

const REASONS: readonly [RegExp, string][] = [
  [/ECONNREFUSED/, 'connection refused'],
  [/ENOTFOUND|EAI_AGAIN|Name resolution failed|getaddrinfo/i, 'host not found'],
  [/ETIMEDOUT|timed? ?out|Deadline exceeded/i, 'connection timed out'],
  [/EHOSTUNREACH/, 'host unreachable'],
  [/ENETUNREACH/, 'network unreachable'],
  [/ECONNRESET|Connection dropped|socket hang up/i, 'connection reset'],
  [/EADDRNOTAVAIL/, 'address not available'],
  [/ENOENT/, 'no such socket'],
];

/** A short reason for a connection failure ("connection refused"), or the cleaned-up details when unknown. */
export function connectFailureReason(details: string): string {
  for (const [re, reason] of REASONS) if (re.test(details)) return reason;
  return details.replace(/\s*Resolution note:\s*$/, '').replace(/^No connection established\.\s*Last error:\s*(Error:\s*)?/, '').trim() || 'unavailable';
}

/**
 * True when gRPC details describe this client's failure to connect (rather
 * than an UNAVAILABLE the server sent, whose message may itself relay a
 * refused connection further down, such as an agent that cannot reach a
 * registry): the client-side wording starts the details.
 */
export function isConnectFailure(details: string): boolean {
  return /^(No connection established|Connection dropped|Name resolution failed|Socket closed|getaddrinfo|(connect|read|write) E[A-Z]+)/i.test(details.trim());
}
