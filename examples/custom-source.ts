// Example (a): a custom document source. rho reads JSONL, Parquet and Arrow itself; anything else becomes an
// input through a document source: a name plus an async generator of { id?, text }. Here: a TSV file with a
// header row `id<TAB>text` (backslash escapes \t \n \r \\), read line by line, never whole.
//
//   node dist/examples/custom-source.js OUT_DIR   (on the fixtures)
import { createReadStream, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createInterface } from 'node:readline';
import { score, type DocumentSource, type ScoreSummary } from '../index.js';

const ESCAPES: Record<string, string> = { t: '\t', n: '\n', r: '\r', '\\': '\\' };
const unescapeCell = (cell: string) => cell.replace(/\\(.)/g, (_, c: string) => ESCAPES[c] ?? c);

/** A TSV file as a document source; its rows get source = the file name, row = the line's index after the header. */
export function tsvSource(path: string): DocumentSource {
  return {
    name: path,
    async *documents() {
      const lines = createInterface({ input: createReadStream(path, 'utf8'), crlfDelay: Infinity });
      let header: string[] | null = null;
      for await (const line of lines) {
        if (header === null) { header = line.split('\t'); continue; }
        if (line === '') continue;
        const cells = line.split('\t').map(unescapeCell);
        const rec = Object.fromEntries(header.map((h, i) => [h, cells[i]]));
        yield { id: rec.id, text: rec.text };
      }
    },
  };
}

export async function main(opts: { tsv: string; output: string; model: string; tokenizer: string; cacheDir?: string }): Promise<ScoreSummary> {
  return score({
    models: [{ name: 'ref', path: opts.model }],
    tokenizer: opts.tokenizer,
    inputs: [tsvSource(opts.tsv)],
    output: opts.output,
    context: 64,
    stride: 32,
    cacheDir: opts.cacheDir,
    progress: false,
  });
}

// Run directly (node dist/examples/custom-source.js OUT_DIR): on the repository's fixtures.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const out = process.argv[2] ?? 'out/example-custom-source';
  const tsv = `${out}.tsv`;
  const lines = readFileSync(`${root}fixtures/shards/clean.jsonl`, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { id: string; text: string });
  const esc = (s: string) => s.replace(/[\\\t\n\r]/g, (c) => ({ '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' })[c]!);
  mkdirSync(dirname(tsv), { recursive: true });
  writeFileSync(tsv, ['id\ttext', ...lines.map((d) => `${esc(d.id)}\t${esc(d.text)}`)].join('\n') + '\n');
  const s = await main({ tsv, output: out, model: `${root}fixtures/models/llama/model.onnx`, tokenizer: `${root}fixtures/tokenizer/tokenizer.json` });
  console.log(JSON.stringify(s.totals));
}
