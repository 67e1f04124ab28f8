// Completion records: well-formed, and each unit's data and rejects files are what its record says.
import { decodeTable, sha256 } from '../../../stages/write.js';
import { COL } from '../../../schemas/contract.js';
import { LAYOUT, formatOf, recordKey, rejectsPath, type CompletionRecord } from '../../../schemas/layout.js';
import type { Table } from 'apache-arrow';
import type { OutputStore } from '../../../schemas/store.js';
import { text, type Findings, type RunIdentityView, type ShardSeen, type VerifyReport } from './report.js';
import { checkMetadata, checkSchema } from './schema.js';
import { checkRows } from './rows.js';
import { stagedPath } from '../../run/commit.js';

export function parseRecord(rel: string, bytes: Uint8Array, f: Findings): CompletionRecord | null {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(text(bytes)) as Record<string, unknown>;
  } catch (e) {
    f.error('record', rel, `completion record is not valid JSON (truncated or corrupt: ${(e as Error).message}); delete it and the rank summaries (${LAYOUT.doneDir.replace("done", "ranks")}/, a cache of records) and rerun rho score to redo the unit`);
    return null;
  }
  if (rec === null || typeof rec !== 'object' || Array.isArray(rec)) {
    f.error('record', rel, 'completion record is not a JSON object');
    return null;
  }
  let ok = true;
  for (const k of ['docs_in', 'scored', 'rejected', 'tokens', 'scored_tokens', 'bytes', 'part', 'first_row'] as const) {
    if (!Number.isInteger(rec[k]) || (rec[k] as number) < 0) {
      f.error('record', rel, `field "${k}" is ${JSON.stringify(rec[k])}, expected a non-negative integer`, { field: k });
      ok = false;
    }
  }
  for (const k of ['unit', 'source', 'file', 'sha256', 'config_sha256'] as const) {
    if (typeof rec[k] !== 'string') {
      f.error('record', rel, `field "${k}" is ${JSON.stringify(rec[k])}, expected a string`, { field: k });
      ok = false;
    }
  }
  if (rec.rejects_file !== null && typeof rec.rejects_file !== 'string') {
    f.error('record', rel, 'field "rejects_file" must be a string or null', { field: 'rejects_file' });
    ok = false;
  }
  return ok ? (rec as unknown as CompletionRecord) : null;
}

export async function checkUnit(store: OutputStore, rec: CompletionRecord, config: RunIdentityView, f: Findings, shard: ShardSeen, report: VerifyReport): Promise<void> {
  const rel = rec.file;
  const bytes = await store.read(rel);
  if (!bytes) {
    const staged = stagedPath(rec.unit, rec.sha256, formatOf(rel));
    if (await store.exists(staged)) f.error('file-missing', rel, `data file of unit ${rec.unit} is not published yet (its runner died between committing and publishing; ${staged} holds it): rerun rho score on this dir to publish it`);
    else f.error('file-missing', rel, `data file of unit ${rec.unit} is missing (its completion record exists); delete ${LAYOUT.doneDir}/${rec.unit}.json and the rank summaries (_rho/ranks/, a cache of records) and rerun rho score`);
    shard.unreadableParts.add(rec.part);
    return;
  }
  if (bytes.length !== rec.bytes) f.error('bytes', rel, `file has ${bytes.length} bytes, its completion record says ${rec.bytes}`);
  const digest = sha256(bytes);
  if (digest !== rec.sha256) f.error('sha256', rel, `sha256 ${digest} does not match the completion record (${rec.sha256}): the file changed or is corrupt`);
  let table: Table;
  try {
    table = decodeTable(bytes, formatOf(rel));
  } catch (e) {
    f.error('decode', rel, `cannot be decoded as ${rel.endsWith('.arrow') ? 'Arrow IPC' : 'Parquet'}: ${(e as Error).message}`);
    shard.unreadableParts.add(rec.part);
    return;
  }
  checkMetadata(rel, table.schema, rec, config, f);
  if (table.numRows !== rec.scored) f.error('row-count', rel, `file has ${table.numRows} rows, its completion record says scored = ${rec.scored}`);
  if (!checkSchema(rel, table.schema, config, f)) {
    shard.unreadableParts.add(rec.part);
    return;
  }
  checkRows(rel, table, rec, config, f, shard, report);
}

export async function checkRejects(store: OutputStore, rec: CompletionRecord, f: Findings, shard: ShardSeen, report: VerifyReport): Promise<void> {
  const recRel = `${LAYOUT.doneDir}/${rec.unit}.json`;
  const expectedPath = rejectsPath({ ...rec, key: recordKey(rec) });
  if (rec.rejected === 0) {
    if (rec.rejects_file !== null) f.error('rejects', recRel, `rejected is 0 but rejects_file is ${rec.rejects_file}`, { field: 'rejects_file' });
    return;
  }
  if (rec.rejects_file !== expectedPath) {
    f.error('rejects', recRel, `rejected is ${rec.rejected} but rejects_file is ${JSON.stringify(rec.rejects_file)} (expected ${expectedPath})`, { field: 'rejects_file' });
    if (!rec.rejects_file) return;
  }
  const rel = rec.rejects_file!;
  const bytes = await store.read(rel);
  if (!bytes) {
    f.error('rejects', rel, `rejects file is missing; the completion record ${recRel} lists ${rec.rejected} rejected records`);
    return;
  }
  const lines = text(bytes).split('\n');
  if (lines.at(-1) === '') lines.pop();
  if (lines.length !== rec.rejected) f.error('rejects', rel, `${lines.length} lines, the completion record says rejected = ${rec.rejected}`);
  const lastRow = rec.first_row + rec.docs_in - 1;
  lines.forEach((line, k) => {
    let r: Record<string, unknown>;
    try {
      r = JSON.parse(line) as Record<string, unknown>;
    } catch {
      f.error('rejects', rel, `line ${k + 1} is not valid JSON`);
      return;
    }
    const row = r.row;
    if (!Number.isInteger(row)) {
      f.error('rejects', rel, `line ${k + 1}: "row" is ${JSON.stringify(row)}, expected an integer`, { field: 'row' });
      return;
    }
    const at = { row: row as number };
    if (r.source !== rec.source) f.error('rejects', rel, `line ${k + 1}: source ${JSON.stringify(r.source)}, the unit's shard is ${JSON.stringify(rec.source)}`, { ...at, field: 'source' });
    if (typeof r.field !== 'string' || typeof r.reason !== 'string' || !(r.id === null || typeof r.id === 'string')) {
      f.error('rejects', rel, `line ${k + 1}: expected {source, row, id: string|null, field: string, reason: string}`, at);
    }
    if ((row as number) < rec.first_row || (row as number) > lastRow) f.error('rejects', rel, `line ${k + 1}: row ${row} is outside the unit's rows ${rec.first_row}..${lastRow}`, at);
    if (shard.rejectRows.has(row as number)) f.error('rejects', rel, `line ${k + 1}: row ${row} is rejected twice`, at);
    if (shard.scoredIds.has(row as number)) f.error('rejects', rel, `line ${k + 1}: row ${row} is both rejected and scored`, at);
    shard.rejectRows.add(row as number);
  });
  report.checked.rejects += lines.length;
}
