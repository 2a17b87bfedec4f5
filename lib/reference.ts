/**
 * Image references: parsing, validation and the one canonical text form.
 *
 * Vocabulary (as in the OCI distribution spec and Docker's reference grammar):
 * - registry: `host[:port]` of the registry, e.g. `registry.example.com`,
 *   `127.0.0.1:5000`, `localhost`, `[::1]:5000`.
 * - repository: the name inside the registry, one or more path components
 *   joined by `/`, each `[a-z0-9]+` runs joined by `.`, `_`, `__` or `-`s
 *   (e.g. `busybox`, `team/web`, `my-app_v2`).
 * - tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}` (e.g. `latest`, `1.36.1`).
 * - digest: `sha256:` followed by 64 lowercase hex characters; other
 *   algorithms are refused.
 *
 * Text form: `[registry/]repository[:tag][@digest]`. The first path component
 * is a registry host when it contains `.` or `:`, is `[...]` (IPv6) or is
 * exactly `localhost`; otherwise the caller's default registry is used (Berth
 * has no implicit Docker Hub). Every image is therefore fully qualified after
 * parsing.
 *
 * All input is treated as hostile: the length is capped before any other work
 * and errors quote the (truncated) input and say what was expected.
 */
import { InvalidArgumentError } from './errors.js';

export interface ImageReference {
  /** `host[:port]` of the registry. */
  registry: string;
  /** Path inside the registry, e.g. `busybox` or `team/web`. */
  repository: string;
  tag?: string;
  /** `sha256:<64 lowercase hex>`. */
  digest?: string;
}

export interface ParseImageReferenceOptions {
  /** `host[:port]` used when the reference names no registry host. */
  defaultRegistry?: string;
  /** Field name to attach to errors (e.g. `spec.image`); defaults to `image`. */
  field?: string;
}

/** Longest `registry/repository` accepted (what most registries and clients enforce). */
export const MAX_IMAGE_NAME_LENGTH = 255;
/** Longest tag accepted. */
export const MAX_IMAGE_TAG_LENGTH = 128;
/** Longest whole reference accepted: name + ':' + tag + '@sha256:' + 64. */
export const MAX_IMAGE_REFERENCE_LENGTH = MAX_IMAGE_NAME_LENGTH + 1 + MAX_IMAGE_TAG_LENGTH + 1 + 7 + 64;

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const DOMAIN_COMPONENT = /^(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])$/;
const IPV6_BODY = /^[0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]+)?$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const SHA256_HEX = /^[a-f0-9]{64}$/;
const ALGORITHM = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*$/;

/** Quotes a value for an error message, shortening very long input. */
function quote(value: string): string {
  const shown = value.length > 80 ? `${value.slice(0, 77)}...` : value;
  return JSON.stringify(shown);
}

function fail(ref: string, problem: string, field: string): never {
  throw new InvalidArgumentError(`invalid image reference ${quote(ref)}: ${problem}`, { field });
}

/**
 * Checks a `host[:port]` registry. Returns a problem description, or undefined
 * when it is valid.
 */
export function registryProblem(registry: string): string | undefined {
  if (registry === '') return 'registry host is empty';
  let host = registry;
  let port: string | undefined;
  if (registry.startsWith('[')) {
    const close = registry.indexOf(']');
    if (close < 0) return `registry ${quote(registry)} has an unclosed "[" (expected "[ipv6]" or "[ipv6]:port")`;
    const body = registry.slice(1, close);
    if (body === '' || !IPV6_BODY.test(body) || !body.includes(':')) {
      return `registry ${quote(registry)} is not a valid bracketed IPv6 address`;
    }
    const rest = registry.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) return `registry ${quote(registry)} has unexpected text after "]" (expected ":port")`;
      port = rest.slice(1);
    }
    host = '';
  } else {
    const colon = registry.indexOf(':');
    if (colon >= 0) {
      host = registry.slice(0, colon);
      port = registry.slice(colon + 1);
    }
    if (host === '') return `registry ${quote(registry)} has no host name before the port`;
    for (const part of host.split('.')) {
      if (!DOMAIN_COMPONENT.test(part)) {
        return `registry host ${quote(host)} is not a valid host name (expected dot-separated labels of letters, digits and inner "-")`;
      }
    }
  }
  if (port !== undefined) {
    if (!/^[0-9]{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
      return `registry port ${quote(port)} is not valid (expected a number from 1 to 65535)`;
    }
  }
  return undefined;
}

/** True when the first path component of a name is a registry host. */
function looksLikeHost(component: string): boolean {
  return component.includes('.') || component.includes(':') || component.startsWith('[') || component === 'localhost';
}

/**
 * Parses and validates an image reference. Throws InvalidArgumentError (with
 * `field`, default `image`) naming the reference and what was expected.
 */
export function parseImageReference(ref: string, opts: ParseImageReferenceOptions = {}): ImageReference {
  const field = opts.field ?? 'image';
  if (typeof ref !== 'string') {
    throw new InvalidArgumentError(`invalid image reference: expected a string, got ${typeof ref}`, { field });
  }
  if (ref === '') throw new InvalidArgumentError('invalid image reference "": the reference is empty (expected [registry/]repository[:tag][@sha256:digest])', { field });
  if (ref.length > MAX_IMAGE_REFERENCE_LENGTH) {
    fail(ref, `the reference is ${ref.length} characters long (expected at most ${MAX_IMAGE_REFERENCE_LENGTH})`, field);
  }
  if (/\s/.test(ref)) fail(ref, 'the reference contains whitespace', field);
  if (/[\u0000-\u001f\u007f]/.test(ref)) fail(ref, 'the reference contains control characters', field);
  if (ref.includes('://')) fail(ref, 'a URL scheme is not allowed (expected [registry/]repository[:tag][@sha256:digest], e.g. "registry.example.com/web:1.0")', field);

  // Digest: everything after the first "@".
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    const problem = digestProblem(digest);
    if (problem !== undefined) fail(ref, problem, field);
  }

  // Tag: after the last ":" that follows the last "/".
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const lastColon = rest.lastIndexOf(':');
  if (lastColon > lastSlash) {
    // A "]" after the colon means it belongs to an IPv6 host with no path ("[::1]").
    tag = rest.slice(lastColon + 1);
    rest = rest.slice(0, lastColon);
    if (tag === '') fail(ref, 'the tag after ":" is empty (expected a tag such as "latest")', field);
    if (tag.length > MAX_IMAGE_TAG_LENGTH) {
      fail(ref, `tag is ${tag.length} characters long (expected at most ${MAX_IMAGE_TAG_LENGTH})`, field);
    }
    if (!TAG.test(tag)) {
      fail(ref, `tag ${quote(tag)} is not valid (expected letters, digits, "_", "." and "-", not starting with "." or "-")`, field);
    }
  }
  if (rest === '') fail(ref, 'the repository name is empty (expected [registry/]repository[:tag][@sha256:digest])', field);

  // Registry host: the first component when it looks like one.
  let registry: string;
  let repository: string;
  const firstSlash = rest.indexOf('/');
  const first = firstSlash >= 0 ? rest.slice(0, firstSlash) : rest;
  if (firstSlash >= 0 && looksLikeHost(first)) {
    registry = first;
    repository = rest.slice(firstSlash + 1);
    const problem = registryProblem(registry);
    if (problem !== undefined) fail(ref, problem, field);
  } else {
    if (looksLikeHost(first) && firstSlash < 0 && (first.includes(':') || first.startsWith('['))) {
      // e.g. "[::1]" — only reachable when there was no tag split.
      fail(ref, `${quote(first)} looks like a registry host but no repository follows it (expected host/repository)`, field);
    }
    if (opts.defaultRegistry === undefined || opts.defaultRegistry === '') {
      throw new InvalidArgumentError(`image ${quote(ref)} names no registry host and no default registry is configured`, { field });
    }
    const problem = registryProblem(opts.defaultRegistry);
    if (problem !== undefined) {
      throw new InvalidArgumentError(`invalid default registry ${quote(opts.defaultRegistry)}: ${problem}`, { field: 'defaultRegistry' });
    }
    registry = opts.defaultRegistry;
    repository = rest;
  }

  if (repository === '') fail(ref, 'the repository name after the registry host is empty', field);
  const problem = repositoryProblem(repository);
  if (problem !== undefined) fail(ref, problem, field);
  const nameLength = registry.length + 1 + repository.length;
  if (nameLength > MAX_IMAGE_NAME_LENGTH) {
    fail(ref, `registry and repository together are ${nameLength} characters long (expected at most ${MAX_IMAGE_NAME_LENGTH})`, field);
  }

  const out: ImageReference = { registry, repository };
  if (tag !== undefined) out.tag = tag;
  if (digest !== undefined) out.digest = digest;
  return out;
}

/** Checks a repository path; returns a problem or undefined. */
export function repositoryProblem(repository: string): string | undefined {
  const components = repository.split('/');
  for (const c of components) {
    if (c === '') {
      return `repository ${quote(repository)} has an empty path component (expected components separated by single "/")`;
    }
    if (!PATH_COMPONENT.test(c)) {
      if (c !== c.toLowerCase()) {
        return `repository ${quote(repository)} must be lowercase (expected [a-z0-9] separated by ".", "_", "__" or "-")`;
      }
      return `repository component ${quote(c)} is not valid (expected runs of [a-z0-9] separated by ".", "_", "__" or "-", starting and ending with a letter or digit)`;
    }
  }
  return undefined;
}

/** Checks a digest; returns a problem or undefined. */
export function digestProblem(digest: string): string | undefined {
  if (digest === '') return 'the digest after "@" is empty (expected sha256:<64 lowercase hex characters>)';
  const colon = digest.indexOf(':');
  if (colon < 0) return `digest ${quote(digest)} has no algorithm (expected sha256:<64 lowercase hex characters>)`;
  const algorithm = digest.slice(0, colon);
  const hex = digest.slice(colon + 1);
  if (algorithm !== 'sha256') {
    if (ALGORITHM.test(algorithm)) {
      return `digest algorithm ${quote(algorithm)} is not supported (expected sha256)`;
    }
    return `digest ${quote(digest)} has an invalid algorithm (expected sha256:<64 lowercase hex characters>)`;
  }
  if (!SHA256_HEX.test(hex)) {
    return `digest ${quote(digest)} is not valid (expected sha256: followed by exactly 64 lowercase hex characters, got ${hex.length} characters)`;
  }
  return undefined;
}

/** Formats a reference: `host/repo:tag`, `host/repo@sha256:..` or `host/repo:tag@sha256:..`. */
export function formatImageReference(r: ImageReference): string {
  let s = `${r.registry}/${r.repository}`;
  if (r.tag !== undefined && r.tag !== '') s += `:${r.tag}`;
  if (r.digest !== undefined && r.digest !== '') s += `@${r.digest}`;
  return s;
}

/**
 * Parses and formats a reference, adding the tag `latest` when it has neither
 * a tag nor a digest. The result is fully qualified.
 */
export function normalizeImageReference(ref: string, opts: ParseImageReferenceOptions = {}): string {
  const parsed = parseImageReference(ref, opts);
  if (parsed.tag === undefined && parsed.digest === undefined) parsed.tag = 'latest';
  return formatImageReference(parsed);
}
