// Runs the PyTorch integration's pytest suite (integrations/torch/tests) so `npm test` covers it. First makes
// real data for it with the rho CLI: fixture shards scored by the llama fixture, `rho select` (top 60%, so the
// export has labels and select_mask), `rho export --format memmap`, and the Parquet rows read back by DuckDB
// (an independent reader) into JSON, which the Python tests compare the memmap reader's sequences against
// token for token.
import test from 'ava';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DuckDBInstance } from '@duckdb/node-api';
import { CACHE, RHO, ROOT, TOKENIZER, modelPath, shardPath, tmp } from '../helpers.js';
import { requires } from '../requirements.js';

const run = promisify(execFile);
const PYTHON = process.env.RHO_PYTHON ?? '/usr/bin/python3';
const TESTS = join(ROOT, 'integrations', 'torch', 'tests');

// /usr/bin/python3 with torch, numpy, pytest (test/requirements.json; `npm test` installs them as root).
// RHO_PYTHON points at another interpreter, which must then have them itself.
requires('python')('rho_torch pytest suite passes, including against a real rho score + export', async (t) => {
  const dir = tmp('rho-torch-');
  const scoreDir = join(dir, 'score');
  const selectDir = join(dir, 'select');
  const exportDir = join(dir, 'memmap');
  const env = { ...process.env, RHO_CACHE_DIR: CACHE };
  await run(RHO, ['score', '--model', modelPath('llama'), '--tokenizer', TOKENIZER,
    '--input', shardPath('clean.jsonl'), shardPath('noisy.jsonl.gz'), shardPath('mixed.parquet'),
    '--output', scoreDir, '--id-field', 'id', '--context', '64', '--stride', '32', '--no-progress'], { cwd: ROOT, env });
  await run(RHO, ['select', scoreDir, '--output', selectDir, '--ratio', '0.6', '--by', 'ref_loss', '--scope', 'global', '--no-progress'], { cwd: ROOT, env });
  await run(RHO, ['export', selectDir, '--format', 'memmap', '--output', exportDir, '--no-progress'], { cwd: ROOT, env });

  // The rows in export order (data files sorted by path, rows in file order), read by DuckDB.
  const db = await DuckDBInstance.create(':memory:');
  const con = await db.connect();
  const reader = await con.run(`SELECT id, source, "row", token_ids, ref_logprob, labels, select_mask FROM read_parquet('${selectDir}/*/*.parquet', filename = true, file_row_number = true) ORDER BY filename, file_row_number`);
  const rows = ((await reader.getRowObjectsJson()) as Record<string, unknown>[]).map((r) => ({
    id: String(r.id),
    source: String(r.source),
    row: Number(r.row),
    token_ids: (r.token_ids as unknown[]).map(Number),
    ref_logprob: (r.ref_logprob as unknown[]).map((v) => (v === null ? null : Number(v))),
    labels: (r.labels as unknown[]).map(Number),
    select_mask: (r.select_mask as unknown[]).map((v) => v === true),
  }));
  t.true(rows.some((r) => r.select_mask.includes(false)) && rows.some((r) => r.select_mask.includes(true)));
  t.is(rows.length, 80, '30 clean + 30 noisy + 20 mixed documents');
  const rowsPath = join(dir, 'rows.json');
  writeFileSync(rowsPath, JSON.stringify(rows));

  let out = '';
  let code = 0;
  try {
    // test_selection.py and test_dtypes.py need the dirs test/select/compact.test.ts makes, and run from there.
    const ownRunner = ['test_selection.py', 'test_dtypes.py'].map((f) => `--ignore=${join(TESTS, f)}`);
    const r = await run(PYTHON, ['-m', 'pytest', '-q', '-rs', '-p', 'no:cacheprovider', ...ownRunner, TESTS], {
      cwd: ROOT, timeout: 240_000, maxBuffer: 16 << 20,
      env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1', RHO_TORCH_EXPORT: exportDir, RHO_TORCH_ROWS: rowsPath, RHO_TORCH_SCORE: selectDir },
    });
    out = r.stdout + r.stderr;
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    code = typeof err.code === 'number' ? err.code : -1;
    out = (err.stdout ?? '') + (err.stderr ?? '') || String(e);
  }
  const summary = out.trim().split('\n').pop() ?? '';
  t.log(`pytest: ${summary}`);
  t.is(code, 0, out);
  t.regex(summary, /\d+ passed/);
  t.notRegex(summary, /failed|error/);
  // The real-data tests must have run here, not skipped for want of the prepared export.
  t.notRegex(out, /RHO_TORCH_EXPORT \/ RHO_TORCH_ROWS not set/);
  // The one skip allowed is the either/or pair on pyarrow (installed: its reader is tested; not installed: the
  // ImportError message is); any other skip means something was not tested.
  const skips = out.split('\n').filter((l) => l.startsWith('SKIPPED'));
  t.true(skips.length <= 1 && skips.every((l) => /pyarrow/.test(l)), skips.join('\n'));
});
