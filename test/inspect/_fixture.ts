// Shared by the inspect tests: a real two-model score run over the fixture shards, the CLI as a subprocess,
// DuckDB as an independent reader, and the source texts read without rho's readers.
import { spawnSync, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { join } from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { score, tmp, modelPath, shardPath, RHO, ROOT } from '../helpers.js';

export const SHARDS = ['clean.jsonl', 'mixed.jsonl.zst', 'noisy.jsonl.gz'];

/** Score the fixture shards with ref=llama and base=gpt2, C=64, S=32 (so most documents span windows). */
export async function scoredDir(shards = SHARDS, out = tmp('rho-inspect-'), format: 'parquet' | 'arrow' = 'parquet'): Promise<string> {
  await score({
    format,
    models: [{ name: 'ref', path: modelPath('llama') }, { name: 'base', path: modelPath('gpt2') }],
    inputs: shards.map(shardPath),
    output: out,
    context: 64,
    stride: 32,
  });
  return out;
}

export function rho(args: string[], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [RHO, ...args], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 64 << 20 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

let conn: DuckDBConnection | null = null;
/** Rows of a DuckDB query as JSON-like objects (BIGINT as string, lists as arrays). */
export async function duck(sql: string): Promise<Record<string, unknown>[]> {
  if (!conn) conn = await (await DuckDBInstance.create(':memory:')).connect();
  const r = await conn.runAndReadAll(sql);
  return r.getRowObjectsJson() as Record<string, unknown>[];
}

/** id -> text of every fixture document, parsed here (plain JSON lines; gunzip; the zstd CLI). */
export function sourceTexts(): Map<string, string> {
  const out = new Map<string, string>();
  for (const name of SHARDS) {
    const p = shardPath(name);
    const raw = name.endsWith('.gz') ? gunzipSync(readFileSync(p)) : name.endsWith('.zst') ? execFileSync('zstd', ['-dcq', p], { maxBuffer: 64 << 20 }) : readFileSync(p);
    for (const line of raw.toString('utf8').split('\n')) {
      if (!line.trim()) continue;
      const rec = JSON.parse(line) as { id: string; text: string };
      out.set(rec.id, rec.text);
    }
  }
  return out;
}

/** Code-point offsets -> UTF-16 indices, written independently of inspect/segments.ts. */
export function utf16Index(text: string): number[] {
  const idx = [0];
  for (const ch of Array.from(text)) idx.push(idx[idx.length - 1] + ch.length);
  return idx;
}

/** docs/inspect.md, with its tagged code blocks (```sql recipe=NAME). */
export function recipes(): Map<string, string> {
  const md = readFileSync(join(ROOT, 'docs', 'inspect.md'), 'utf8');
  const out = new Map<string, string>();
  for (const m of md.matchAll(/```(\w+) recipe=([\w-]+)\n([\s\S]*?)```/g)) out.set(m[2], m[3]);
  return out;
}

/** The colour scales as documented in docs/inspect.md (bounds and xterm-256 colours), restated here. */
export const DOC_LOSS = { bounds: [0.5, 1, 2, 3, 4, 6, 8], colours: [230, 229, 228, 222, 215, 209, 203, 160] };
export const DOC_EXCESS = { bounds: [-2, -1, -0.25, 0.25, 1, 2], colours: [25, 74, 153, 255, 217, 203, 160] };
export function docColour(scale: { bounds: number[]; colours: number[] }, v: number): number {
  return scale.colours[scale.bounds.filter((b) => v >= b).length];
}
