// The export job: a rho score (or select) output dir → a memmap dir (stages/export.ts describes the arrays).
// Streams record batches and appends to the array files, so memory stays at one batch whatever the dataset
// size; writes into a temp dir next to the output and renames it into place at the end (atomic).
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { endianness } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { COL } from '../../schemas/contract.js';
import { encodeBatch, tokenDtypeFor, MEMMAP_FORMAT, MEMMAP_VERSION, type MemmapHeader, type ScoreDtype, type ExportPlan } from '../../stages/export.js';
import { TextTokenizer } from '../../stages/tokenize.js';
import { openScoreSet, openSelection, readSelectionRows, setBatches, setProvenance, listView, checkOutputDir, stagingDir, publishDir, type ScoreSet, type SelectionRows } from '../io/score-files.js';
import { ConfigError } from '../../schemas/errors.js';
import { Progress } from '../run/progress.js';

export interface ExportConfig {
  input: string;
  output: string;
  scoreDtype: ScoreDtype;
  /** A compact selection dir (`rho select --compact`) made from `input`: labels and select_mask come from it. */
  selection?: string;
  /** Score columns to export (default: every per-token float column). */
  columns?: string[];
  overwrite: boolean;
  progress: boolean;
}

export interface ExportSummary {
  output: string;
  header: MemmapHeader;
  files: number;
  wall_seconds: number;
}

/** Vocabulary size: the tokenizer named in the metadata (if present and unchanged), else models' config.json. */
function vocabFromProvenance(set: ScoreSet): { size: number; from: string } | null {
  const t = set.tokenizer;
  const tp = t ? (t.resolvedPath ?? t.path) : null;
  if (t && tp && existsSync(tp)) {
    const bytes = readFileSync(tp);
    if (createHash('sha256').update(bytes).digest('hex') === t.sha256) {
      try {
        return { size: TextTokenizer.load(tp).info.vocabSize, from: `tokenizer ${t.path}` };
      } catch { /* fall through */ }
    }
  }
  try {
    const models = JSON.parse(set.files[0].metadata.get('rho.models') ?? '[]') as { path?: string; resolved_path?: string }[];
    let best: { size: number; from: string } | null = null;
    for (const m of models) {
      const p = m.resolved_path ?? m.path;
      if (!p) continue;
      const cfg = join(dirname(p), 'config.json');
      if (!existsSync(cfg)) continue;
      const v = Number((JSON.parse(readFileSync(cfg, 'utf8')) as { vocab_size?: unknown }).vocab_size);
      if (Number.isInteger(v) && v > 0 && (!best || v > best.size)) best = { size: v, from: `model config ${cfg}` };
    }
    return best;
  } catch {
    return null;
  }
}

async function maxTokenId(set: ScoreSet): Promise<number> {
  let max = -1;
  for await (const { batch } of setBatches(set, [COL.tokenIds])) {
    const v = listView<Int32Array>(batch, COL.tokenIds);
    for (let j = v.offsets[0]; j < v.offsets[batch.numRows]; j++) if (v.values[j] > max) max = v.values[j];
  }
  return max;
}

class AppendFile {
  private readonly fd: number;
  bytes = 0;
  constructor(readonly path: string) {
    this.fd = openSync(path, 'w');
  }
  write(b: Uint8Array): void {
    let off = 0;
    while (off < b.length) off += writeSync(this.fd, b, off, b.length - off);
    this.bytes += b.length;
  }
  private closed = false;
  close(): void {
    fsyncSync(this.fd);
    this.abandon();
  }
  /** Close without fsync (the file is about to be deleted). */
  abandon(): void {
    if (!this.closed) closeSync(this.fd);
    this.closed = true;
  }
}

/** Rows [first, first + n) of a compact selection: their (source, row) keys and mask, for encodeBatch to check and use. */
function selectionSlice(sel: SelectionRows, path: string, first: number, n: number): { sources: string[]; rows: number[]; offsets: Int32Array; mask: Uint8Array; where: string } {
  if (first + n > sel.rows.length) throw new ConfigError(`${path}: ${sel.rows.length} rows, but its score file has more (row ${sel.rows.length} has no selection)`);
  const offsets = sel.offsets.subarray(first, first + n + 1);
  return { sources: sel.sources.slice(first, first + n), rows: sel.rows.slice(first, first + n), offsets, mask: sel.mask.subarray(offsets[0], offsets[n]), where: path };
}

function checkSelectionEnd(sel: SelectionRows | null, scorePath: string, rows: number): void {
  if (sel && sel.rows.length !== rows) throw new ConfigError(`the selection of ${scorePath} has ${sel.rows.length} rows, the score file ${rows}`);
}

export async function runExport(cfg: ExportConfig): Promise<ExportSummary> {
  if (endianness() !== 'LE') throw new ConfigError('memmap export writes little-endian arrays; this machine is big-endian');
  if (resolve(cfg.output) === resolve(cfg.input)) throw new ConfigError('--output must differ from the input dir');
  const set = await openScoreSet(cfg.input);
  checkOutputDir(cfg.output, cfg.overwrite);

  let scoreColumns = set.scoreColumns;
  if (cfg.columns && cfg.columns.length) {
    for (const c of cfg.columns) {
      if (!set.scoreColumns.includes(c)) throw new ConfigError(`--columns ${c}: not a per-token score column of ${cfg.input} (available: ${set.scoreColumns.join(', ')})`);
    }
    scoreColumns = [...new Set(cfg.columns)];
  }

  const counts = { docs: 0, rejected: 0, tokens: 0, inputBytesDone: 0 };
  const progress = new Progress(set.files.reduce((a, f) => a + f.bytes, 0), () => counts, cfg.progress);
  let vocab = vocabFromProvenance(set);
  if (!vocab) {
    if (cfg.progress) process.stderr.write('rho export: tokenizer and model config not found; scanning token ids for the vocabulary size\n');
    vocab = { size: (await maxTokenId(set)) + 1, from: 'largest token id + 1' };
  }

  const selection = cfg.selection ? await openSelection(cfg.selection, set) : null;
  if (selection && set.hasSelect) throw new ConfigError(`${cfg.input} already holds a selection (select_mask, labels); drop --selection or export the score dir it was made from`);
  const plan: ExportPlan = {
    tokenDtype: tokenDtypeFor(vocab.size),
    scoreDtype: cfg.scoreDtype,
    vocabSize: vocab.size,
    scoreColumns,
    withSelect: set.hasSelect || selection !== null,
  };

  const tmp = stagingDir(cfg.output);
  const columns: MemmapHeader['columns'] = { token_ids: { file: 'token_ids.bin', dtype: plan.tokenDtype } };
  for (const c of scoreColumns) columns[c] = { file: `${c}.bin`, dtype: plan.scoreDtype };
  if (plan.withSelect) {
    columns[COL.labels] = { file: 'labels.bin', dtype: 'int32' };
    columns[COL.selectMask] = { file: 'select_mask.bin', dtype: 'uint8' };
  }
  const out = new Map<string, AppendFile>();
  const docOffsets = new AppendFile(join(tmp, 'doc_offsets.bin'));
  const docsJsonl = new AppendFile(join(tmp, 'docs.jsonl'));
  try {
    for (const [name, e] of Object.entries(columns)) out.set(name, new AppendFile(join(tmp, e.file)));
    let nTokens = 0;
    let nDocs = 0;
    docOffsets.write(new Uint8Array(new BigUint64Array([0n]).buffer));
    let lastFile = -1;
    let rowInFile = 0;
    let sel: SelectionRows | null = null;
    const enc = new TextEncoder();
    for await (const { file, fileIndex, batch } of setBatches(set)) {
      if (fileIndex !== lastFile) {
        if (lastFile >= 0) checkSelectionEnd(sel, set.files[lastFile].path, rowInFile);
        if (lastFile >= 0) counts.inputBytesDone += set.files[lastFile].bytes;
        lastFile = fileIndex;
        rowInFile = 0;
        if (selection) {
          const sf = selection.byScoreFile.get(file.rel)!;
          sel = await readSelectionRows(sf);
        }
      }
      const first = rowInFile;
      const where = (r: number) => `${file.path} row ${first + r}`;
      const e = encodeBatch(batch, plan, where, sel ? selectionSlice(sel, selection!.byScoreFile.get(file.rel)!.path, first, batch.numRows) : undefined);
      out.get('token_ids')!.write(e.tokens);
      for (const [c, b] of e.scores) out.get(c)!.write(b);
      if (e.labels) out.get(COL.labels)!.write(e.labels);
      if (e.selectMask) out.get(COL.selectMask)!.write(e.selectMask);
      const offs = new BigUint64Array(e.docLengths.length);
      for (let i = 0; i < e.docLengths.length; i++) {
        nTokens += e.docLengths[i];
        offs[i] = BigInt(nTokens);
      }
      docOffsets.write(new Uint8Array(offs.buffer));
      if (e.docs.length) docsJsonl.write(enc.encode(e.docs.map((d) => JSON.stringify(d)).join('\n') + '\n'));
      nDocs += e.docs.length;
      rowInFile += batch.numRows;
      counts.docs = nDocs;
      counts.tokens = nTokens;
      progress.draw();
    }
    if (lastFile >= 0) checkSelectionEnd(sel, set.files[lastFile].path, rowInFile);
    const header: MemmapHeader = {
      format: MEMMAP_FORMAT,
      version: MEMMAP_VERSION,
      byte_order: 'little',
      n_docs: nDocs,
      n_tokens: nTokens,
      token_dtype: plan.tokenDtype,
      score_dtype: plan.scoreDtype,
      vocab_size: vocab.size,
      vocab_size_from: vocab.from,
      columns,
      doc_offsets: { file: 'doc_offsets.bin', dtype: 'uint64' },
      docs: { file: 'docs.jsonl' },
      null_value: 'NaN',
      provenance: Object.fromEntries(setProvenance(set, selection?.selectMeta).keyValues),
    };
    for (const f of out.values()) f.close();
    docOffsets.close();
    docsJsonl.close();
    const h = new AppendFile(join(tmp, 'header.json'));
    h.write(enc.encode(JSON.stringify(header, null, 2) + '\n'));
    h.close();

    publishDir(tmp, cfg.output);
    return { output: cfg.output, header, files: set.files.length, wall_seconds: progress.elapsedSeconds() };
  } catch (e) {
    for (const f of [...out.values(), docOffsets, docsJsonl]) f.abandon();
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  } finally {
    progress.stop();
  }
}
