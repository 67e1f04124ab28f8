// Example (a): a custom document source. rho reads JSONL, Parquet and Arrow itself; anything else becomes an
// input through a document source: a name plus an async generator of { id?, text }. Here: a TSV file with a
// header row `id<TAB>text` (backslash escapes \t \n \r \\), read line by line, never whole.
//
//   node dist/examples/custom-source.js OUT_DIR
import { createReadStream } from 'node:fs';
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
