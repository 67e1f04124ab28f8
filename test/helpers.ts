import { execFile } from 'node:child_process';
// Shared test helpers: fixture paths, running the score job in-process, reading outputs back.
import { mkdtempSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeTable } from '../stages/write.js';
import { runScore, type ScoreConfig } from '../pipeline/jobs/score.js';
import type { Table } from 'apache-arrow';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const FIX = join(ROOT, 'fixtures');
export const TOKENIZER = join(FIX, 'tokenizer', 'tokenizer.json');
export const modelPath = (name: string) => join(FIX, 'models', name, 'model.onnx');
export const shardPath = (name: string) => join(FIX, 'shards', name);
export const RHO = join(ROOT, 'bin', 'rho');
/** One prepared-model cache for the whole test run (preparing is cached by sha256). */
export const CACHE = mkdtempSync(join(tmpdir(), 'rho-test-cache-'));

export function tmp(prefix = 'rho-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export async function score(over: Partial<ScoreConfig> & Pick<ScoreConfig, 'inputs' | 'output'>) {
  return runScore({
    models: [{ name: 'ref', path: modelPath('llama') }],
    tokenizer: TOKENIZER,
    textField: 'text',
    idField: 'id',
    batchTokens: 512,
    format: 'parquet',
    device: 'cpu',
    appendEos: false,
    entropy: false,
    unitDocs: 10000,
    maxRejectRatio: 1,
    overwrite: false,
    cacheDir: CACHE,
    progress: false,
    ...over,
  });
}

/** Every data file under an output dir (sorted), excluding rho's own _rho/ folder. */
export function dataFiles(dir: string, ext = 'parquet'): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const n of readdirSync(d).sort()) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) { if (n !== '_rho') walk(p); }
      else if (n.endsWith(`.${ext}`)) out.push(p);
    }
  };
  walk(dir);
  return out;
}

export function readTable(path: string): Table {
  return decodeTable(readFileSync(path), path.endsWith('.arrow') ? 'arrow' : 'parquet');
}

/** Rows of all data files of an output dir as plain objects. */
export function readRows(dir: string, ext = 'parquet'): Record<string, unknown>[] {
  return dataFiles(dir, ext).flatMap((f) => readTable(f).toArray().map((r) => r.toJSON() as Record<string, unknown>));
}

export function listValues(v: unknown): (number | null)[] {
  return [...(v as Iterable<number | null>)];
}

export interface Outcome { code: number | null; signal: string | null; stdout: string; stderr: string }

/** Run the CLI as a child process; resolves (never rejects) with its exit code or signal and its output. */
export function runRho(argv: string[], env: Record<string, string> = {}, opts: { cwd?: string } = {}): Promise<Outcome> {
  return new Promise((resolve) => {
    execFile(RHO, argv, { cwd: opts.cwd ?? ROOT, env: { ...process.env, RHO_CACHE_DIR: CACHE, ...env }, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const e = err as (Error & { code?: number; signal?: string }) | null;
      resolve({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, signal: e?.signal ?? null, stdout, stderr });
    });
  });
}
