// rho verify: a real scored output verifies clean; each deliberate corruption is found and named.
import test from 'ava';
import { appendFileSync, cpSync, readFileSync, rmSync, unlinkSync, writeFileSync, copyFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Bool, Field, Float32, Float64, Int32, Schema, makeData, type Data, type Table } from 'apache-arrow';
import { score, shardPath, tmp, readTable, RHO, ROOT } from '../helpers.js';
import { verifyOutput, type Finding, type VerifyReport } from '../../pipeline/jobs/verify/index.js';
import { encodeTable, listData, sha256, tableFromChildren } from '../../stages/write.js';
import { LAYOUT, shardKey, type CompletionRecord } from '../../schemas/layout.js';
import { EXIT } from '../../schemas/errors.js';
import { IGNORE_INDEX, selectFields } from '../../schemas/contract.js';

const run = promisify(execFile);
const C = 32;
const S = 32; // S == C: every multiple of 32 is unscored, so the window rule is more than "position 0"
const UNIT_DOCS = 10;

// One real scored output (clean prose + one malformed line, so a rejects file exists), copied per test.
const inputDir = tmp('rho-verify-in-');
const input = join(inputDir, 'docs.jsonl');
const lines = readFileSync(shardPath('clean.jsonl'), 'utf8').split('\n').filter((l) => l.trim());
const BAD_ROW = 13;
lines.splice(BAD_ROW, 0, '{"id": "broken", "text": ');
writeFileSync(input, lines.join('\n') + '\n');
const RECORDS = lines.length;
const key = shardKey(input);
let golden = '';

test.before(async () => {
  golden = tmp('rho-verify-golden-');
  await score({ inputs: [input], output: golden, context: C, stride: S, unitDocs: UNIT_DOCS });
});

function copyOutput(): string {
  const d = tmp('rho-verify-case-');
  cpSync(golden, d, { recursive: true });
  return d;
}
const recordPath = (dir: string, part: number) => join(dir, LAYOUT.doneDir, key, `part-${String(part).padStart(5, '0')}.json`);
const dataPathOf = (dir: string, part: number) => join(dir, key, `part-${String(part).padStart(5, '0')}.parquet`);
const readRecord = (dir: string, part: number) => JSON.parse(readFileSync(recordPath(dir, part), 'utf8')) as CompletionRecord;

/** Rewrite a unit's data file and make its completion record agree on bytes and sha256, so only deeper checks can tell. */
function rewriteUnit(dir: string, part: number, table: Table): void {
  const bytes = encodeTable(table, 'parquet');
  writeFileSync(dataPathOf(dir, part), bytes);
  const rec = readRecord(dir, part);
  writeFileSync(recordPath(dir, part), JSON.stringify({ ...rec, bytes: bytes.length, sha256: sha256(bytes) }, null, 2) + '\n');
}

/** The same table with `ref_logprob` validity flipped at (row, position). */
function flipValidity(table: Table, row: number, pos: number): Table {
  if (table.batches.length !== 1) throw new Error('test expects a single record batch');
  const batch = table.batches[0];
  const children = batch.data.children.slice();
  const idx = table.schema.fields.findIndex((f) => f.name === 'ref_logprob');
  const list = children[idx];
  const child = list.children[0] as Data<Float32>;
  const at = (list.valueOffsets as Int32Array)[row] + pos;
  const bitmap = new Uint8Array((child.length + 7) >> 3);
  for (let j = 0; j < child.length; j++) if (child.getValid(j)) bitmap[j >> 3] |= 1 << (j & 7);
  bitmap[at >> 3] ^= 1 << (at & 7);
  let nulls = 0;
  for (let j = 0; j < child.length; j++) if (!(bitmap[j >> 3] & (1 << (j & 7)))) nulls++;
  const values = Float32Array.from(child.values as Float32Array);
  if (bitmap[at >> 3] & (1 << (at & 7))) values[at] = -1.5; // a plausible log-prob where there was none
  const newChild = makeData({ type: new Float32(), length: child.length, nullCount: nulls, nullBitmap: bitmap, data: values });
  children[idx] = listData(new Float32(), true, list.valueOffsets as Int32Array, newChild);
  return tableFromChildren(table.schema, table.numRows, children);
}

/** Index of the row with most tokens; it must span several windows for the window-rule tests to mean anything. */
function longestRow(table: Table): number {
  const n = [...table.getChild('n_tokens')!] as number[];
  const i = n.indexOf(Math.max(...n));
  if (n[i] <= C + 5) throw new Error(`fixture rows are too short (${n[i]} tokens) for C=${C}`);
  return i;
}

const errorsOf = (r: VerifyReport, check: string) => r.errors.filter((e) => e.check === check);
const show = (r: VerifyReport) => r.errors.map((e: Finding) => `${e.check} ${e.file} ${e.row ?? ''} ${e.field ?? ''}: ${e.message}`).join('\n');

test('a clean output verifies, inputs included, with the reject accounted for', async (t) => {
  const r = await verifyOutput(golden, { inputs: 'auto' });
  t.true(r.ok, show(r));
  t.deepEqual(r.errors, []);
  t.deepEqual(r.warnings, []);
  t.is(r.checked.units, Math.ceil(RECORDS / UNIT_DOCS));
  t.is(r.checked.rows + r.checked.rejects, RECORDS);
  t.is(r.checked.rejects, 1);
  t.deepEqual(r.inputs.checked, [input]);
});

test('a flipped byte in a data file: sha256 mismatch naming the file', async (t) => {
  const d = copyOutput();
  const p = dataPathOf(d, 1);
  const b = readFileSync(p);
  b[b.length >> 1] ^= 0xff;
  writeFileSync(p, b);
  const r = await verifyOutput(d, { inputs: false });
  t.false(r.ok);
  const e = errorsOf(r, 'sha256');
  t.is(e.length, 1, show(r));
  t.is(e[0].file, `${key}/part-00001.parquet`);
  t.regex(e[0].message, /does not match the completion record/);
});

test('a deleted data file is reported as missing', async (t) => {
  const d = copyOutput();
  unlinkSync(dataPathOf(d, 2));
  const r = await verifyOutput(d, { inputs: false });
  t.false(r.ok);
  const e = errorsOf(r, 'file-missing');
  t.is(e.length, 1, show(r));
  t.is(e[0].file, `${key}/part-00002.parquet`);
});

test('a truncated completion record is reported, not thrown, and not mistaken for a missing unit', async (t) => {
  const d = copyOutput();
  const p = recordPath(d, 0);
  const full = readFileSync(p, 'utf8');
  writeFileSync(p, full.slice(0, full.length >> 1));
  const r = await verifyOutput(d, { inputs: false });
  t.false(r.ok);
  const e = errorsOf(r, 'record');
  t.is(e.length, 1, show(r));
  t.is(e[0].file, `${LAYOUT.doneDir}/${key}/part-00000.json`);
  t.regex(e[0].message, /not valid JSON/);
  t.deepEqual(errorsOf(r, 'missing-unit'), []);
});

test('a row removed (record sha updated): only the row count and accounting can tell', async (t) => {
  const d = copyOutput();
  const table = readTable(dataPathOf(d, 0));
  rewriteUnit(d, 0, table.slice(0, table.numRows - 1));
  const r = await verifyOutput(d, { inputs: false });
  t.false(r.ok);
  t.deepEqual(errorsOf(r, 'sha256'), []);
  const e = errorsOf(r, 'row-count');
  t.is(e.length, 1, show(r));
  t.is(e[0].file, `${key}/part-00000.parquet`);
  t.regex(e[0].message, new RegExp(`has ${table.numRows - 1} rows, its completion record says scored = ${table.numRows}`));
});

test('a null where the window rule scores the token', async (t) => {
  const d = copyOutput();
  const table = readTable(dataPathOf(d, 1));
  const i = longestRow(table);
  rewriteUnit(d, 1, flipValidity(table, i, C + 5));
  const r = await verifyOutput(d, { inputs: false });
  t.false(r.ok);
  const e = errorsOf(r, 'window-nulls');
  t.is(e.length, 1, show(r));
  t.is(e[0].row, Number(table.getChild('row')!.get(i)));
  t.is(e[0].field, 'ref_logprob');
  t.regex(e[0].message, new RegExp(`position ${C + 5} is null but the window rule \\(C=${C}, S=${S}\\) scores it`));
});

test('a value where the window rule gives no context (a window start)', async (t) => {
  const d = copyOutput();
  const table = readTable(dataPathOf(d, 1));
  const i = longestRow(table);
  rewriteUnit(d, 1, flipValidity(table, i, C)); // position C starts the second window when S == C
  const r = await verifyOutput(d, { inputs: false });
  t.false(r.ok);
  const e = errorsOf(r, 'window-nulls');
  t.is(e.length, 1, show(r));
  t.is(e[0].row, Number(table.getChild('row')!.get(i)));
  t.regex(e[0].message, new RegExp(`position ${C} has a value \\(-1.5\\) but the window rule`));
});

test('a missing unit in the middle of a shard is named with its rows', async (t) => {
  const d = copyOutput();
  unlinkSync(recordPath(d, 1));
  unlinkSync(dataPathOf(d, 1));
  const r = await verifyOutput(d, { inputs: false });
  t.false(r.ok);
  const e = errorsOf(r, 'missing-unit');
  t.is(e.length, 1, show(r));
  t.is(e[0].file, `${key}/part-00001`);
  t.regex(e[0].message, new RegExp(`rows ${UNIT_DOCS}\\.\\.${2 * UNIT_DOCS - 1}`));
});

test('an input document added after scoring: accounting mismatch with --inputs', async (t) => {
  const d = copyOutput();
  const inDir = tmp('rho-verify-grown-');
  const grown = join(inDir, 'docs.jsonl');
  copyFileSync(input, grown);
  // Score a private copy of the input so appending to it cannot disturb the other tests.
  rmSync(d, { recursive: true });
  await score({ inputs: [grown], output: d, context: C, stride: S, unitDocs: UNIT_DOCS });
  t.true((await verifyOutput(d, { inputs: true })).ok);
  appendFileSync(grown, JSON.stringify({ id: 'late', text: 'A document that arrived after scoring.' }) + '\n');
  const r = await verifyOutput(d, { inputs: true });
  t.false(r.ok);
  const e = errorsOf(r, 'accounting');
  t.is(e.length, 1, show(r));
  t.is(e[0].file, grown);
  t.regex(e[0].message, new RegExp(`input has ${RECORDS + 1} records, the output accounts for ${RECORDS}`));
  t.is(errorsOf(r, 'input-changed').length, 1, 'the size change is named too');
  // Without re-reading inputs the output itself is still consistent.
  t.true((await verifyOutput(d, { inputs: false })).ok);
});

test('leftovers of a crash (orphan data file, stray .tmp) are warnings; the output still verifies', async (t) => {
  const d = copyOutput();
  writeFileSync(join(d, key, 'part-00009.parquet'), readFileSync(dataPathOf(d, 0)));
  writeFileSync(join(d, key, 'part-00000.parquet.123.abc.tmp'), 'half');
  const r = await verifyOutput(d, { inputs: false });
  t.true(r.ok, show(r));
  t.deepEqual(r.warnings.map((w) => [w.check, w.file]).sort(), [
    ['orphan', `${key}/part-00009.parquet`],
    ['tmp', `${key}/part-00000.parquet.123.abc.tmp`],
  ]);
});

test('duplicate ids from the input are a counted warning, not an error', async (t) => {
  const dupIn = join(tmp('rho-verify-dup-'), 'dup.jsonl');
  writeFileSync(dupIn, ['{"id":"a","text":"one"}', '{"id":"b","text":"two"}', '{"id":"a","text":"three"}', '{"id":"a","text":"four"}'].join('\n') + '\n');
  const d = tmp('rho-verify-dupout-');
  await score({ inputs: [dupIn], output: d, context: C, stride: S, unitDocs: UNIT_DOCS });
  const r = await verifyOutput(d, { inputs: true });
  t.true(r.ok, show(r));
  t.is(r.warnings.length, 1);
  t.is(r.warnings[0].check, 'duplicate-id');
  t.regex(r.warnings[0].message, /^2 output row\(s\) repeat the id of an earlier row/);
});

/** The table plus select's columns: every third token selected; `breakAt` (flat index) gets a wrong label. */
function withSelection(table: Table, breakAt = -1): Table {
  const batch = table.batches[0];
  const tok = batch.getChild('token_ids')!.data[0];
  const offsets = tok.valueOffsets as Int32Array;
  const ids = tok.children[0].values as Int32Array;
  const total = offsets[table.numRows];
  const mask = new Uint8Array((total + 7) >> 3);
  const labels = new Int32Array(total);
  for (let j = 0; j < total; j++) {
    const selected = j % 3 === 0;
    if (selected) mask[j >> 3] |= 1 << (j & 7);
    labels[j] = selected ? ids[j] : IGNORE_INDEX;
  }
  if (breakAt >= 0) labels[breakAt] = labels[breakAt] === IGNORE_INDEX ? ids[breakAt] : IGNORE_INDEX;
  const schema = new Schema([...table.schema.fields, ...selectFields()], table.schema.metadata);
  return tableFromChildren(schema, table.numRows, [
    ...batch.data.children,
    listData(new Bool(), false, offsets, makeData({ type: new Bool(), length: total, data: mask })),
    listData(new Int32(), false, offsets, makeData({ type: new Int32(), length: total, data: labels })),
  ]);
}

test('select columns (select_mask, labels) are allowed with their types, and labels must follow the mask', async (t) => {
  const d = copyOutput();
  const table = readTable(dataPathOf(d, 0));
  rewriteUnit(d, 0, withSelection(table));
  const good = await verifyOutput(d, { inputs: false });
  t.true(good.ok, show(good));
  const offsets = table.batches[0].getChild('token_ids')!.data[0].valueOffsets as Int32Array;
  rewriteUnit(d, 0, withSelection(table, offsets[2] + 4));
  const r = await verifyOutput(d, { inputs: false });
  t.false(r.ok);
  const e = errorsOf(r, 'labels');
  t.is(e.length, 1, show(r));
  t.is(e[0].row, Number(table.getChild('row')!.get(2)));
  t.regex(e[0].message, /^position 4: label/);
});

test('an Arrow IPC output verifies; a column of the wrong type is named', async (t) => {
  const d = tmp('rho-verify-arrow-');
  await score({ inputs: [input], output: d, context: C, stride: S, unitDocs: UNIT_DOCS, format: 'arrow' });
  const r = await verifyOutput(d, { inputs: true });
  t.true(r.ok, show(r));
  t.is(r.checked.rows + r.checked.rejects, RECORDS);
  // n_tokens as float64: decodes fine, but breaks the contract.
  const p = join(d, key, 'part-00000.arrow');
  const table = readTable(p);
  const idx = table.schema.fields.findIndex((x) => x.name === 'n_tokens');
  const fields = table.schema.fields.slice();
  fields[idx] = new Field('n_tokens', new Float64(), false);
  const children = table.batches[0].data.children.slice();
  children[idx] = makeData({ type: new Float64(), length: table.numRows, data: Float64Array.from(children[idx].values as Int32Array) });
  const bytes = encodeTable(tableFromChildren(new Schema(fields, table.schema.metadata), table.numRows, children), 'arrow');
  writeFileSync(p, bytes);
  const rec = JSON.parse(readFileSync(join(d, LAYOUT.doneDir, key, 'part-00000.json'), 'utf8')) as CompletionRecord;
  writeFileSync(join(d, LAYOUT.doneDir, key, 'part-00000.json'), JSON.stringify({ ...rec, bytes: bytes.length, sha256: sha256(bytes) }));
  const bad = await verifyOutput(d, { inputs: false });
  const e = errorsOf(bad, 'schema');
  t.is(e.length, 1, show(bad));
  t.is(e[0].field, 'n_tokens');
  t.regex(e[0].message, /type Float64, the contract says Int32/);
});

test('CLI: exit 0 and a summary when clean; exit 4 with --json naming file and check when not; exit 2 for a non-output dir', async (t) => {
  const ok = await run(RHO, ['verify', golden, '--no-progress'], { cwd: ROOT });
  t.regex(ok.stdout, /OK \(0 warning\(s\)\)/);
  const d = copyOutput();
  unlinkSync(dataPathOf(d, 0));
  const bad = await run(RHO, ['verify', d, '--json', '--no-progress'], { cwd: ROOT }).then(() => null, (e: { code: number; stdout: string }) => e);
  t.truthy(bad, 'verify must fail');
  t.is(bad!.code, EXIT.verifyFailed);
  const rep = JSON.parse(bad!.stdout) as VerifyReport;
  t.false(rep.ok);
  t.deepEqual(rep.errors.map((e) => [e.check, e.file]), [['file-missing', `${key}/part-00000.parquet`]]);
  const none = await run(RHO, ['verify', inputDir], { cwd: ROOT }).then(() => null, (e: { code: number; stderr: string }) => e);
  t.is(none!.code, EXIT.config);
  t.regex(none!.stderr, /not a rho output dir/);
  t.true(readdirSync(inputDir).length === 1, 'verify writes nothing');
});
