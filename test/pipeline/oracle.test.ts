// Scores equal an independent computation: PyTorch log_softmax on the same weights, with the window rule
// implemented separately in Python (fixtures/reference/expected.json, made by fixtures/make.sh).
import test from 'ava';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FIX, modelPath, shardPath, score, tmp, readRows, listValues } from '../helpers.js';

interface ExpectedDoc { id: string; row: number; token_ids: number[]; logprob: (number | null)[]; entropy: (number | null)[] }
interface ExpectedConfig { model: string; shard: string; context: number; stride: number; docs: ExpectedDoc[] }
const expected = JSON.parse(readFileSync(join(FIX, 'reference', 'expected.json'), 'utf8')) as { configs: ExpectedConfig[] };

// fp32 models: 1e-4 absolute on log-probs (the bound). The fp16 model's oracle is torch running the
// same fp16 weights; half-precision matmuls in two runtimes differ by more, so its bound is stated apart.
const TOL: Record<string, number> = { default: 1e-4, 'llama-fp16': 2e-3 };

const groups = new Map<string, ExpectedConfig[]>();
for (const c of expected.configs) {
  const k = `${c.model} C=${c.context} S=${c.stride}`;
  groups.set(k, [...(groups.get(k) ?? []), c]);
}

for (const [key, configs] of groups) {
  for (const batchTokens of [96, 4096]) {
    test(`${key}, batch-tokens ${batchTokens}: log-probs and entropy equal PyTorch's`, async (t) => {
      const { model, context, stride } = configs[0];
      if (!existsSync(modelPath(model))) return t.fail(`fixture model ${model} missing`);
      const out = tmp();
      await score({
        models: [{ name: 'ref', path: modelPath(model) }],
        inputs: [...new Set(configs.map((c) => shardPath(c.shard)))],
        output: out, context, stride, batchTokens, entropy: true,
      });
      const rows = new Map(readRows(out).map((r) => [String(r.id), r]));
      const tol = TOL[model] ?? TOL.default;
      let maxDiff = 0;
      let compared = 0;
      let longDocs = 0;
      for (const c of configs) {
        for (const d of c.docs) {
          const r = rows.get(d.id);
          if (!r) return t.fail(`document ${d.id} missing from the output`);
          t.deepEqual(listValues(r.token_ids), d.token_ids, `token ids of ${d.id}`);
          const lp = listValues(r.ref_logprob);
          const ent = listValues(r.ref_entropy);
          t.is(lp.length, d.logprob.length);
          if (d.token_ids.length > context) longDocs++;
          for (let i = 0; i < d.logprob.length; i++) {
            const want = d.logprob[i];
            if (want === null) { t.is(lp[i], null, `${d.id}[${i}] should be null`); t.is(ent[i], null); continue; }
            const diff = Math.abs((lp[i] as number) - want);
            maxDiff = Math.max(maxDiff, diff, Math.abs((ent[i] as number) - (d.entropy[i] as number)));
            compared++;
          }
        }
      }
      t.log(`${compared} tokens compared, ${longDocs} docs longer than C, max |diff| ${maxDiff.toExponential(2)} (tolerance ${tol})`);
      t.true(compared > 100);
      t.true(longDocs > 0, 'the fixture must exercise windows');
      t.true(maxDiff <= tol, `max diff ${maxDiff} > ${tol}`);
    });
  }
}
