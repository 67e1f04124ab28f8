// Tokenize a JSONL shard ({text}) with a tokenizer.json into flat uint16 token ids (documents concatenated, each
// with what the post-processor adds, e.g. BOS), for training the reference model before any model exists to
// run `rho score` with. Usage: node tokenize.mjs TOKENIZER IN.jsonl OUT.bin
import { readFileSync, writeFileSync } from 'node:fs';
import { Tokenizer } from 'tokenizers';

const [tokPath, inPath, outPath] = process.argv.slice(2);
const tok = Tokenizer.fromFile(tokPath);
const texts = readFileSync(inPath, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l).text);
const ids = [];
for (let i = 0; i < texts.length; i += 500) {
  for (const e of await tok.encodeBatch(texts.slice(i, i + 500))) ids.push(...e.getIds());
}
if (tok.getVocabSize() > 65536) throw new Error(`${tokPath}: vocabulary ${tok.getVocabSize()} does not fit uint16`);
writeFileSync(outPath, new Uint16Array(ids));
process.stderr.write(`tokenize: ${inPath}: ${texts.length} docs, ${ids.length} tokens -> ${outPath}\n`);
