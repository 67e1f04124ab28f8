// Hand-made score dirs for tests where exact numbers matter: written with the real writer (scoredTable +
// encodeTable), in the real layout, with the metadata a score run writes.
import { join } from 'node:path';
import { scoredTable, encodeTable, type OutputFormat } from '../../stages/write.js';
import { writeFileAtomic } from '../../pipeline/io/local.js';
import { META, SCHEMA_VERSION } from '../../schemas/contract.js';
import type { ScoredDocument } from '../../schemas/types.js';

export interface HandDoc {
  id: string;
  tokens: number[];
  /** Per model name: one value per token; values at null positions (window rule) are ignored by the writer. */
  scores: Record<string, number[]>;
}

export interface HandFile {
  /** Relative path, e.g. `a-00000000/part-00000.parquet`. */
  rel: string;
  source: string;
  docs: HandDoc[];
}

export interface HandOptions {
  models: string[];
  context: number;
  stride: number;
  format?: OutputFormat;
  tokenizer?: { path: string; sha256: string };
  schemaVersion?: string;
  modelSha?: Record<string, string>;
}

export function writeScoreDir(dir: string, files: HandFile[], o: HandOptions): string[] {
  const format = o.format ?? 'parquet';
  const paths: string[] = [];
  for (const f of files) {
    const docs: ScoredDocument[] = f.docs.map((d, row) => ({
      source: f.source, row, id: d.id, text: '', docSeq: row,
      tokenIds: Int32Array.from(d.tokens),
      scores: new Map(o.models.map((m) => [m, { logprob: Float32Array.from(d.scores[m]) }])),
    }));
    const meta = new Map<string, string>([
      [META.schemaVersion, o.schemaVersion ?? String(SCHEMA_VERSION)],
      [META.rhoVersion, 'test'],
      [META.models, JSON.stringify(o.models.map((name) => ({ name, path: `/nonexistent/${name}/model.onnx`, sha256: o.modelSha?.[name] ?? `sha-${name}` })))],
      [META.tokenizer, JSON.stringify(o.tokenizer ?? { path: '/nonexistent/tokenizer.json', sha256: 'tok-sha' })],
      [META.context, String(o.context)],
      [META.stride, String(o.stride)],
      [META.inputs, JSON.stringify([{ source: f.source, bytes: 1 }])],
      [META.unit, JSON.stringify({ source: f.source, part: 0, first_row: 0, rows: docs.length })],
    ]);
    const table = scoredTable(docs, o.models, false, { contextTokens: o.context, strideTokens: o.stride }, meta);
    const path = join(dir, f.rel.replace(/\.(parquet|arrow)$/, `.${format}`));
    writeFileAtomic(path, encodeTable(table, format));
    paths.push(path);
  }
  return paths;
}

/** Deterministic PRNG (mulberry32) so a failure reproduces. */
export function rng(seed: number): () => number {
  return () => {
    seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
