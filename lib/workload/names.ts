/**
 * Rules for names, label keys and values, environment variable names and port
 * names. Each function returns a problem text (what was expected and what was
 * given) or undefined when the value is valid.
 */

function q(value: string): string {
  return JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value);
}

const DNS_LABEL = /^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?$/;
const LABEL_NAME = /^[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** A DNS label (RFC 1123): 1-63 of [a-z0-9-], starting and ending with a letter or digit. */
export function dnsLabelProblem(name: string): string | undefined {
  if (name.length >= 1 && name.length <= 63 && DNS_LABEL.test(name)) return undefined;
  const why = name.length > 63 ? ` (it has ${name.length})` : '';
  return `expected a name of 1 to 63 lowercase letters, digits and "-", starting and ending with a letter or digit${why}, got ${q(name)}`;
}

/** A DNS subdomain: dot-separated DNS labels, at most 253 characters. */
export function dnsSubdomainProblem(name: string): string | undefined {
  if (name.length >= 1 && name.length <= 253 && name.split('.').every((part) => part.length <= 63 && DNS_LABEL.test(part))) {
    return undefined;
  }
  return `expected a DNS subdomain (dot-separated lowercase labels, at most 253 characters), got ${q(name)}`;
}

/**
 * A label key: an optional DNS-subdomain prefix and "/", then a name of 1-63
 * letters, digits, "-", "_" and ".", starting and ending with a letter or digit.
 */
export function labelKeyProblem(key: string): string | undefined {
  const slash = key.indexOf('/');
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (slash >= 0) {
    const prefix = key.slice(0, slash);
    if (dnsSubdomainProblem(prefix) !== undefined) {
      return `expected a label key whose prefix before "/" is a DNS subdomain such as "example.com", got ${q(key)}`;
    }
  }
  if (name.length >= 1 && name.length <= 63 && LABEL_NAME.test(name)) return undefined;
  return `expected a label key of [prefix/]name where name is 1 to 63 letters, digits, "-", "_" and ".", starting and ending with a letter or digit, got ${q(key)}`;
}

/** A label value: empty, or 1-63 letters, digits, "-", "_" and ".", starting and ending with a letter or digit. */
export function labelValueProblem(value: string): string | undefined {
  if (value === '' || (value.length <= 63 && LABEL_NAME.test(value))) return undefined;
  return `expected a label value of at most 63 letters, digits, "-", "_" and ".", starting and ending with a letter or digit (or empty), got ${q(value)}`;
}

/** An environment variable name: [A-Za-z_][A-Za-z0-9_]*, at most 256 characters. */
export function envNameProblem(name: string): string | undefined {
  if (name === '__proto__') return `expected an environment variable name other than the reserved "__proto__"`;
  if (name.length <= 256 && ENV_NAME.test(name)) return undefined;
  return `expected an environment variable name of letters, digits and "_", not starting with a digit, got ${q(name)}`;
}

/**
 * A port name (IANA service name rules): 1-15 of [a-z0-9-], at least one
 * letter, no leading, trailing or doubled "-".
 */
export function portNameProblem(name: string): string | undefined {
  if (
    name.length >= 1 &&
    name.length <= 15 &&
    /^[a-z0-9]+(?:-[a-z0-9]+)*$/.test(name) &&
    /[a-z]/.test(name)
  ) {
    return undefined;
  }
  return `expected a port name of 1 to 15 lowercase letters, digits and single "-" (with at least one letter, not starting or ending with "-"), got ${q(name)}`;
}
