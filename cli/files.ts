/** Reading workload files named on the command line ("-" is stdin). */
import { readFile } from 'node:fs/promises';
import { InvalidArgumentError } from '../lib/errors.js';
import type { CliIO } from './context.js';

export interface InputFile {
  /** The name shown in messages: the path, or "<stdin>". */
  source: string;
  text: string;
}

async function readStdin(stdin: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stdin) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

/** Maximum size of one workload file; the controller rejects bigger requests anyway. */
export const MAX_FILE_BYTES = 4 * 1024 * 1024;

export async function readInputFiles(paths: readonly string[], io: CliIO): Promise<InputFile[]> {
  const out: InputFile[] = [];
  let usedStdin = false;
  for (const path of paths) {
    if (path === '-') {
      if (usedStdin) throw new InvalidArgumentError('-f -: standard input can be read only once', { field: 'filename' });
      usedStdin = true;
      out.push({ source: '<stdin>', text: await readStdin(io.stdin) });
      continue;
    }
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory, expected a file' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
      throw new InvalidArgumentError(`failed to read "${path}": ${why}`, { field: 'filename', cause: err });
    }
    out.push({ source: path, text });
  }
  for (const f of out) {
    if (Buffer.byteLength(f.text) > MAX_FILE_BYTES) {
      throw new InvalidArgumentError(`failed to read "${f.source}": larger than ${MAX_FILE_BYTES / 1024 / 1024} MiB`, { field: 'filename' });
    }
  }
  return out;
}
