// Example (c): a custom Scorer. rho's score stage talks to a Scorer interface; onnxruntime is one
// implementation. This one is a unigram model in plain TypeScript: log P(token) = log((count + 1) / (N + V))
// from token counts of a training text, whatever the context. Trivial as a model, but it shows the contract
// end to end: batch in, per-model values aligned with the batch tokens out (index 0 of a row and padding NaN).
import { readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createHash } from 'node:crypto';
import { score, TextTokenizer, type Batch, type ModelBatchScores, type Scorer, type ScoreSummary } from '../index.js';

export class UnigramScorer implements Scorer {
  readonly modelNames: string[];
  readonly fingerprint: string;
  private readonly logp: Float32Array;

  /** `trainingIds`: token ids of the training text; `vocabSize`: every id the tokenizer can emit is below it. */
  constructor(trainingIds: ArrayLike<number>, vocabSize: number, name = 'unigram') {
    const counts = new Float64Array(vocabSize);
    for (let i = 0; i < trainingIds.length; i++) counts[trainingIds[i]]++;
    const denom = trainingIds.length + vocabSize;
    this.logp = Float32Array.from(counts, (c) => Math.log((c + 1) / denom));
    this.modelNames = [name];
    // The scores depend on the counts: a rerun with other counts must not resume this output.
    this.fingerprint = createHash('sha256').update(new Uint8Array(this.logp.buffer)).digest('hex');
  }

  async score(batch: Batch): Promise<Map<string, ModelBatchScores>> {
    const logprob = new Float32Array(batch.rows * batch.width).fill(NaN);
    for (let r = 0; r < batch.rows; r++) {
      const o = r * batch.width;
      for (let t = 1; t < batch.lengths[r]; t++) logprob[o + t] = this.logp[batch.tokens[o + t]];
    }
    return new Map([[this.modelNames[0], { logprob }]]);
  }

  async close(): Promise<void> {}
}

export async function main(opts: { trainingText: string; inputs: string[]; output: string; tokenizer: string }): Promise<{ summary: ScoreSummary; scorer: UnigramScorer; trainingIds: Int32Array; vocabSize: number }> {
  const tok = TextTokenizer.load(opts.tokenizer);
  const [train] = await tok.encode([{ source: 'training', row: 0, id: 'training', text: opts.trainingText }]);
  const scorer = new UnigramScorer(train.tokenIds, tok.info.vocabSize);
  const summary = await score({
    scorer,
    tokenizer: opts.tokenizer,
    inputs: opts.inputs,
    idField: 'id',
    output: opts.output,
    context: 32,
    progress: false,
  });
  return { summary, scorer, trainingIds: train.tokenIds, vocabSize: tok.info.vocabSize };
}

// Run directly (node dist/examples/unigram-scorer.js OUT_DIR): on the repository's fixtures.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const out = process.argv[2] ?? 'out/example-unigram-scorer';
  const train = readFileSync(`${root}fixtures/shards/clean.jsonl`, 'utf8').split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { text: string }).text).join('\n');
  const { summary } = await main({ trainingText: train, inputs: [`${root}fixtures/shards/clean.jsonl`], output: out, tokenizer: `${root}fixtures/tokenizer/tokenizer.json` });
  console.log(JSON.stringify(summary.totals));
}
