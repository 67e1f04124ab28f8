// Example (b): a filter stage between reading and tokenizing. Documents it drops are not lost: each becomes a
// reject with the stage's name and reason, in `_rho/rejects/`, in the accounting (documents in = scored +
// rejected) and in the stage's own counters (summary.stages).
//
//   node dist/examples/filter.js OUT_DIR
import { fileURLToPath, pathToFileURL } from 'node:url';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { score, filterDocuments, LAYOUT, type Rejected, type ScoreSummary } from '../index.js';

/** Drop documents shorter than `minChars` characters, saying how long they were. */
export const minLength = (minChars: number) =>
  filterDocuments('min-length', (doc) => doc.text.length >= minChars || `${doc.text.length} characters, fewer than ${minChars}`);

/** Every reject record of an output dir. */
export function rejectsOf(output: string): Rejected[] {
  const out: Rejected[] = [];
  const walk = (d: string) => {
    for (const n of readdirSync(d).sort()) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(...readFileSync(p, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Rejected));
    }
  };
  walk(join(output, LAYOUT.rejectsDir));
  return out;
}

export async function main(opts: { inputs: string[]; output: string; model: string; tokenizer: string; minChars: number; cacheDir?: string }): Promise<{ summary: ScoreSummary; rejects: Rejected[] }> {
  const summary = await score({
    models: [opts.model],
    tokenizer: opts.tokenizer,
    inputs: opts.inputs,
    idField: 'id',
    output: opts.output,
    context: 64,
    transforms: [minLength(opts.minChars)],
    maxRejectRatio: 1,
    cacheDir: opts.cacheDir,
    progress: false,
  });
  return { summary, rejects: rejectsOf(opts.output) };
}

// Run directly (node dist/examples/filter.js OUT_DIR): on the repository's fixtures.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const out = process.argv[2] ?? 'out/example-filter';
  const { summary, rejects } = await main({ inputs: [`${root}fixtures/shards/clean.jsonl`, `${root}fixtures/shards/noisy.jsonl.gz`], output: out, model: `${root}fixtures/models/llama/model.onnx`, tokenizer: `${root}fixtures/tokenizer/tokenizer.json`, minChars: 300 });
  console.log(JSON.stringify(summary.totals));
  for (const r of rejects) console.log(`${r.source} row ${r.row}: ${r.reason}`);
}
