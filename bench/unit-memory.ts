// Peak RSS of `rho score` on ONE work unit of many long documents: does memory grow with the unit's size?
// Not a test (minutes of scoring); run by hand, before and after a change, and write the figures down
// (README, "Reliability", memory). The fixture model (fixtures/models/llama, a tiny Llama) scores the tokens,
// so the figures are about rho's own buffers, not a model's weights.
//
//   npx tsc -p tsconfig.json
//   node dist/bench/unit-memory.js --docs 1000,10000 --tokens 200 [--rho /work/main/bin/rho] [--entropy]
//
// For each document count D: a JSONL shard of D documents of fixture text (cycled; see --tokens below), one
// unit (--unit-docs D), scored with /usr/bin/time -v; prints D, tokens, wall seconds, max RSS (MB), data file
// bytes and row groups. NODE_OPTIONS (e.g. --max-old-space-size=64) is passed on to rho.
//
// Run for README (2-core dev machine): the command above with --docs 1000,10000 --tokens 200, once with
// --rho /work/main/bin/rho (before) and once on this branch (after); then both again with
// NODE_OPTIONS=--max-old-space-size=64.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const docsList = arg('docs', '1000,10000').split(',').map(Number);
const tokensPerDoc = Number(arg('tokens', '200'));
const rho = arg('rho', join(ROOT, 'bin', 'rho'));
const entropy = process.argv.includes('--entropy');

// Fixture text as a word pool, T/1.3 words per document. The fixture tokenizer makes more tokens of it than
// that ratio assumes: --tokens 200 gives documents of ~352 tokens (the tokens column says what was scored).
const words = readFileSync(join(ROOT, 'fixtures', 'shards', 'clean.jsonl'), 'utf8').split('\n').filter(Boolean)
  .flatMap((l) => (JSON.parse(l) as { text: string }).text.split(/\s+/)).filter(Boolean);
const wordsPerDoc = Math.max(1, Math.round(tokensPerDoc / 1.3));

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : [p];
  });
}

const dir = mkdtempSync(join(tmpdir(), 'rho-unit-memory-'));
console.log(`rho: ${rho}; documents of ~${tokensPerDoc} tokens; one unit per run; dir ${dir}`);
console.log('docs\ttokens\twall_s\tmax_rss_mb\tfile_bytes\trow_groups');
for (const docs of docsList) {
  const shard = join(dir, `d${docs}.jsonl`);
  const lines: string[] = [];
  for (let i = 0, w = 0; i < docs; i++) {
    const text: string[] = [];
    for (let k = 0; k < wordsPerDoc; k++, w++) text.push(words[w % words.length]);
    lines.push(JSON.stringify({ id: `d${i}`, text: text.join(' ') }));
  }
  writeFileSync(shard, lines.join('\n') + '\n');
  const out = join(dir, `out-${docs}`);
  const args = [
    '-v', rho, 'score', '--model', join(ROOT, 'fixtures/models/llama/model.onnx'), '--tokenizer', join(ROOT, 'fixtures/tokenizer/tokenizer.json'),
    '--input', shard, '--output', out, '--id-field', 'id', '--context', '256', '--unit-docs', String(docs), '--no-progress', ...(entropy ? ['--entropy'] : []),
  ];
  const r = spawnSync('/usr/bin/time', args, { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20 });
  const rss = /Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr);
  const wall = /Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)/.exec(r.stderr);
  if (r.status !== 0 || !rss || !wall) {
    console.log(`${docs}\tfailed (exit ${r.status}): ${r.stderr.split('\n').filter((l) => /rho|rror/.test(l)).slice(-3).join(' | ')}`);
    continue;
  }
  const seconds = wall[1].split(':').reduce((a, x) => a * 60 + Number(x), 0);
  const data = files(out).filter((f) => f.endsWith('.parquet') || f.endsWith('.arrow'));
  const bytes = data.reduce((a, f) => a + statSync(f).size, 0);
  const groups = execDuck(`SELECT count(DISTINCT row_group_id) FROM parquet_metadata('${data[0]}')`);
  const tokens = execDuck(`SELECT sum(n_tokens) FROM read_parquet('${data[0]}')`);
  console.log(`${docs}\t${tokens}\t${seconds.toFixed(1)}\t${(Number(rss[1]) / 1024).toFixed(0)}\t${bytes}\t${groups}`);
}

/** One value from DuckDB (its node API is async; a child keeps this script synchronous). */
function execDuck(sql: string): string {
  const r = spawnSync(process.execPath, ['-e', `import('@duckdb/node-api').then(async ({ DuckDBInstance }) => { const c = await (await DuckDBInstance.create(':memory:')).connect(); const rows = (await (await c.run(${JSON.stringify(sql)})).getRows()); console.log(String(rows[0][0])); })`], { cwd: ROOT, encoding: 'utf8' });
  return r.stdout.trim() || '?';
}
