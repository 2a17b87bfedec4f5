/**
 * Output formatting shared by the verbs: aligned tables (kubectl/docker
 * style), ages ("5s", "3m", "2h", "4d"), binary sizes ("64Mi", "7.8Gi"), CPU
 * ("500m", "2"), label lists, and JSON/YAML for scripts.
 */
import { UsageError } from './context.js';

export const OUTPUT_FORMATS = ['table', 'wide', 'json', 'yaml'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export function parseOutputFormat(raw: string | undefined, allowed: readonly OutputFormat[] = OUTPUT_FORMATS): OutputFormat {
  const v = (raw ?? 'table').trim().toLowerCase();
  if (!(allowed as readonly string[]).includes(v)) {
    throw new UsageError(`-o, --output: expected one of ${allowed.join(', ')}, got "${raw}"`);
  }
  return v as OutputFormat;
}

/** Left-aligned columns separated by three spaces; no trailing spaces. */
export function formatTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('   ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

/** Elapsed time in the largest whole unit: "0s", "45s", "3m", "2h", "4d", "2y". */
export function formatAge(fromUnixMs: number, nowMs = Date.now()): string {
  if (!fromUnixMs) return '<unknown>';
  const s = Math.max(0, Math.floor((nowMs - fromUnixMs) / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h`;
  const d = Math.floor(h / 24);
  if (d < 365 * 2) return `${d}d`;
  return `${Math.floor(d / 365)}y`;
}

const BINARY_UNITS = ['Ki', 'Mi', 'Gi', 'Ti', 'Pi', 'Ei'] as const;

/** Bytes in binary units: 512 -> "512", 65536 -> "64Ki", 8.4e9 -> "7.8Gi". One decimal below 100, none above. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 1024) return String(Math.max(0, Math.round(bytes || 0)));
  let v = bytes;
  let unit = '';
  for (const u of BINARY_UNITS) {
    if (v < 1024) break;
    v /= 1024;
    unit = u;
  }
  const text = v >= 100 ? String(Math.round(v)) : (Math.round(v * 10) / 10).toFixed(1).replace(/\.0$/, '');
  return `${text}${unit}`;
}

/** CPU millicores: 2000 -> "2", 500 -> "500m", 1500 -> "1500m", 0 -> "-". */
export function formatCpu(millis: number): string {
  if (!millis) return '-';
  return millis % 1000 === 0 ? String(millis / 1000) : `${millis}m`;
}

/** "a=1,b=2" sorted by key, or "<none>". */
export function formatLabels(labels: Record<string, string> | undefined): string {
  const entries = Object.entries(labels ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return entries.length === 0 ? '<none>' : entries.map(([k, v]) => `${k}=${v}`).join(',');
}

/** JSON for scripts: two-space indent, trailing newline. */
export function formatJson(value: unknown): string {
  return JSON.stringify(value, null, 2) + '\n';
}

/** YAML for people and scripts; the yaml library is loaded only here. */
export async function formatYaml(value: unknown): Promise<string> {
  const { stringify } = await import('yaml');
  return stringify(value);
}

/** Parses repeated "-l k=v,k2=v2" selectors into one map. */
export function parseSelector(values: readonly string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of values ?? []) {
    for (const part of raw.split(',').map((s) => s.trim()).filter(Boolean)) {
      const i = part.indexOf('=');
      if (i <= 0) throw new UsageError(`-l, --selector: expected key=value pairs separated by commas, got "${part}"`);
      out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
    }
  }
  return out;
}
