/**
 * Signals as people write them: a name with or without "SIG" in any case
 * ("KILL", "sighup", "SIGUSR1") or a number from 1 to 64 ("9"). One reading
 * for the CLI (a usage error), the controller (InvalidArgumentError on the
 * request field) and the agent (the number it delivers).
 */
import { constants as osConstants } from 'node:os';

/** The highest signal number Linux delivers (SIGRTMAX). */
export const MAX_SIGNAL = 64;

export type ParsedSignal =
  /** `spec` is the canonical spelling: "SIGKILL" for a name, the digits for a number. */
  | { spec: string; number: number }
  /** What is wrong and what was expected, without the field name (the caller adds it). */
  | { problem: string };

/** Reads a signal name or number; never throws. Surrounding white space is ignored. */
export function parseSignal(raw: string): ParsedSignal {
  const s = raw.trim();
  if (/^\d+$/.test(s)) {
    const n = Number(s);
    if (n >= 1 && n <= MAX_SIGNAL) return { spec: String(n), number: n };
    return { problem: `expected a signal number from 1 to ${MAX_SIGNAL}, got "${s.slice(0, 32)}"` };
  }
  const upper = s.toUpperCase();
  const name = upper.startsWith('SIG') ? upper : `SIG${upper}`;
  const n = s !== '' && Object.hasOwn(osConstants.signals, name) ? (osConstants.signals as Record<string, number>)[name] : undefined;
  if (n === undefined) {
    return { problem: `unknown signal "${raw.slice(0, 32)}"; expected a name such as KILL, TERM, HUP, INT, USR1 (with or without SIG) or a number from 1 to ${MAX_SIGNAL}` };
  }
  return { spec: name, number: n };
}
