// The select job: a rho score output dir → a new dir with the same files, columns and metadata plus
// `select_mask` and `labels` (stages/select.ts has the rules). Scopes that need a look-ahead (batch groups
// cross file ends; a global threshold needs every score) take two streaming passes: rank, then apply.
import { mkdirSync, readFileSync, readdirSync, writeFileSync, rmSync, existsSync, copyFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { RecordBatch, Struct, Table, makeData, Schema, type Data } from 'apache-arrow';
import { COL, SELECT_META as META_KEYS, compactSelectFields, logprobColumn, provenanceViews, resolvedPath, selectFields } from '../../schemas/contract.js';
import { QuantileSketch } from '../../stages/sketch.js';
import {
  SELECT_META, CutApplier, ValueBuffer, batchScores, cutOf, keepCount, scoreFormula, scoreInputs, selectColumns, selectMaskData, summarize,
  type Cut, type SelectBy, type SelectScope,
} from '../../stages/select.js';
import { encodeTable, sha256, type OutputFormat } from '../../stages/write.js';
import { writeFileAtomic } from '../io/local.js';
import { refuseOutputInsideInput } from '../io/input-checks.js';
import { openScoreSet, fileBatches, setBatches, setProvenance, checkOutputDir, stagingDir, publishDir, type ScoreFile, type ScoreSet } from '../io/score-files.js';
import { LAYOUT, type CompletionRecord } from '../../schemas/layout.js';
import type { Manifest } from '../run/manifest.js';
import { ConfigError } from '../../schemas/errors.js';
import { Progress } from '../run/progress.js';

/** Global scope keeps every score in memory (8 bytes each) up to this many scored tokens, then uses the sketch. */
export const EXACT_LIMIT_TOKENS = 16_000_000;
export const DEFAULT_BATCH_TOKENS = 1 << 20;

export interface SelectConfig {
  input: string;
  output: string;
  ratio: number;
  by: SelectBy;
  scope: SelectScope;
  /** Tokens per training batch (scope batch). */
  batchTokens: number;
  ref: string;
  base: string;
  /** Output format; default: each file keeps its own. */
  format?: OutputFormat;
  /**
   * compact: write only what selection adds — (source, row, select_mask) per score row, aligned row for row with
   * the score files (same relative paths); labels are derived by readers. Default false: a full copy with
   * select_mask and labels added.
   */
  compact?: boolean;
  /** Global scope: true = exact whatever the size, false = sketch, undefined = exact up to exactLimitTokens. */
  exact?: boolean;
  exactLimitTokens?: number;
  sketchAccuracy: number;
  overwrite: boolean;
  progress: boolean;
}

export interface SelectCounts {
  docs: number;
  tokens: number;
  scored: number;
  selected: number;
  /** selected / scored. */
  fraction: number;
}

export interface SelectReport {
  output: string;
  input: string;
  ratio: number;
  by: SelectBy;
  score: string;
  scope: SelectScope;
  mode: 'exact' | 'sketch';
  batch_tokens: number | null;
  sketch_accuracy: number | null;
  /** Global: the threshold; batch/document: min/median/max over scopes with at least one kept token. */
  threshold: number | { min: number; median: number; max: number; count: number } | null;
  totals: SelectCounts;
  sources: (SelectCounts & { source: string })[];
  files: number;
  wall_seconds: number;
}

function validate(cfg: SelectConfig, set: ScoreSet): void {
  if (!(cfg.ratio > 0 && cfg.ratio <= 1)) throw new ConfigError(`--ratio must be in (0, 1] (got ${cfg.ratio})`);
  if (cfg.scope === 'batch' && !(Number.isInteger(cfg.batchTokens) && cfg.batchTokens > 0)) throw new ConfigError(`--batch-tokens must be a positive integer (got ${cfg.batchTokens})`);
  if (!(cfg.sketchAccuracy > 0 && cfg.sketchAccuracy < 1)) throw new ConfigError(`--sketch-accuracy must be in (0, 1) (got ${cfg.sketchAccuracy})`);
  const cols = new Set(set.files[0].schema.fields.map((f) => f.name));
  const have = `${cfg.input} has models [${set.models.join(', ')}]`;
  if (!cols.has(logprobColumn(cfg.ref))) throw new ConfigError(`--ref ${cfg.ref}: no column ${logprobColumn(cfg.ref)}; ${have}; name the reference model with --ref`);
  if (cfg.by === 'excess') {
    if (!cols.has(logprobColumn(cfg.base))) {
      throw new ConfigError(`--by excess needs the base model's column ${logprobColumn(cfg.base)}, but ${have}; score with two models (rho score --model ref=REF.onnx --model base=BASE.onnx) or name the base model with --base`);
    }
    if (cfg.base === cfg.ref) throw new ConfigError(`--base and --ref name the same model (${cfg.ref}): the excess loss would be 0 everywhere`);
  }
  if (resolve(cfg.output) === resolve(cfg.input)) throw new ConfigError('--output must differ from the input dir (select writes a new dir)');
}

interface Pass1Result {
  mode: 'exact' | 'sketch';
  /** document: the summary of per-document thresholds */
  docThresholds?: ReturnType<typeof summarize>;
  /** global */
  cut?: Cut;
  /** batch: one cut per group of batchTokens tokens */
  groups?: Cut[];
}

async function rank(cfg: SelectConfig, set: ScoreSet, progress: { tick: (tokens: number) => void }): Promise<Pass1Result> {
  const spec = { by: cfg.by, ref: cfg.ref, base: cfg.base };
  if (cfg.scope === 'batch') {
    const groups: Cut[] = [];
    const buf = new ValueBuffer();
    let inGroup = 0;
    for await (const { batch } of setBatches(set, scoreInputs(spec))) {
      const { scores } = batchScores(batch, spec);
      for (let j = 0; j < scores.length; j++) {
        buf.push(scores[j]);
        if (++inGroup === cfg.batchTokens) {
          groups.push(cutOf(buf.take(), cfg.ratio));
          inGroup = 0;
        }
      }
      progress.tick(scores.length);
    }
    if (inGroup > 0) groups.push(cutOf(buf.take(), cfg.ratio));
    return { mode: 'exact', groups };
  }
  if (cfg.scope === 'document') {
    const thresholds = new ValueBuffer();
    const vals = new ValueBuffer();
    for await (const { batch } of setBatches(set, scoreInputs(spec))) {
      const { offsets, scores } = batchScores(batch, spec);
      for (let r = 0; r < batch.numRows; r++) {
        for (let j = offsets[r]; j < offsets[r + 1]; j++) vals.push(scores[j]);
        const cut = cutOf(vals.take(), cfg.ratio);
        if (cut.keep > 0) thresholds.push(cut.threshold);
      }
      progress.tick(scores.length);
    }
    return { mode: 'exact', docThresholds: summarize(thresholds.take()) };
  }
  // global
  const limit = cfg.exact === true ? Infinity : cfg.exact === false ? -1 : cfg.exactLimitTokens ?? EXACT_LIMIT_TOKENS;
  const sketch = new QuantileSketch(cfg.sketchAccuracy);
  let buf: ValueBuffer | null = limit >= 0 ? new ValueBuffer() : null;
  for await (const { batch } of setBatches(set, scoreInputs(spec))) {
    const { scores } = batchScores(batch, spec);
    for (let j = 0; j < scores.length; j++) {
      sketch.add(scores[j]);
      if (buf) buf.push(scores[j]);
    }
    if (buf && buf.length > limit) buf = null; // too large to hold: the sketch decides
    progress.tick(scores.length);
  }
  if (buf) return { mode: 'exact', cut: cutOf(buf.take(), cfg.ratio) };
  const n = sketch.count;
  const m = keepCount(cfg.ratio, n);
  // The m-th largest is the value of ascending rank n - m; the sketch's rank is floor(q * (n - 1)), so aim
  // half a rank above to keep float error from landing one rank low (q > 1 means the maximum).
  const threshold = m === 0 ? Infinity : n > 1 ? sketch.quantile(Math.min(1, (n - m + 0.5) / (n - 1))) : sketch.quantile(0);
  return { mode: 'sketch', cut: { threshold, tieTake: Infinity, scored: n, keep: m } };
}

export async function runSelect(cfg: SelectConfig): Promise<SelectReport> {
  refuseOutputInsideInput(cfg.input, cfg.output);
  const set = await openScoreSet(cfg.input);
  validate(cfg, set);
  checkOutputDir(cfg.output, cfg.overwrite);

  const spec = { by: cfg.by, ref: cfg.ref, base: cfg.base };
  const totalBytes = set.files.reduce((a, f) => a + f.bytes, 0);
  const counts = { docs: 0, rejected: 0, tokens: 0, inputBytesDone: 0 };
  const progress = new Progress(2 * totalBytes, () => counts, cfg.progress);
  const tmp = stagingDir(cfg.output);
  try {
    // Pass 1 reads only the score columns; it fixes every threshold, so pass 2 writes each file as it goes.
    const what = { batch: `groups of ${cfg.batchTokens} tokens`, global: 'all scored tokens', document: 'each document' }[cfg.scope];
    if (cfg.progress) process.stderr.write(`rho select: pass 1 of 2, ranking ${what}\n`);
    let seenTokens = 0;
    const pass1 = await rank(cfg, set, { tick: (n) => { seenTokens += n; counts.tokens = seenTokens; progress.draw(); } });
    counts.inputBytesDone = totalBytes;
    if (cfg.progress) process.stderr.write('rho select: pass 2 of 2, writing\n');

    const sources = new Map<string, SelectCounts>();
    const totals: SelectCounts = { docs: 0, tokens: 0, scored: 0, selected: 0, fraction: 0 };
    const global = pass1.cut ? new CutApplier(pass1.cut) : null;
    let groupIndex = -1;
    let groupApplier: CutApplier | null = null;
    let tokenIndex = 0;

    let threshold: SelectReport['threshold'];
    if (cfg.scope === 'global') threshold = pass1.cut!.keep > 0 ? pass1.cut!.threshold : null;
    else if (cfg.scope === 'document') threshold = pass1.docThresholds ?? null;
    else {
      const g = new ValueBuffer();
      for (const c of pass1.groups!) if (c.keep > 0) g.push(c.threshold);
      threshold = summarize(g.take());
    }
    const selectMeta = new Map<string, string>([
      [SELECT_META.ratio, String(cfg.ratio)],
      [SELECT_META.by, cfg.by],
      [SELECT_META.score, scoreFormula(spec)],
      [SELECT_META.scope, cfg.scope],
      [SELECT_META.mode, pass1.mode],
      [SELECT_META.threshold, JSON.stringify(threshold)],
    ]);
    if (cfg.scope === 'batch') selectMeta.set(SELECT_META.batchTokens, String(cfg.batchTokens));
    if (pass1.mode === 'sketch') selectMeta.set(SELECT_META.sketchAccuracy, String(cfg.sketchAccuracy));
    selectMeta.set(META_KEYS.layout, cfg.compact ? 'compact' : 'full');
    if (cfg.compact) selectMeta.set(META_KEYS.scores, JSON.stringify({ path: cfg.input, resolved_path: resolvedPath(cfg.input) }));

    const written: { rel: string; from: string; bytes: number; sha256: string; rows: number }[] = [];
    for (const file of set.files) {
      const flat = new Map([...file.metadata].filter(([k]) => !k.startsWith('rho.select.')));
      for (const [k, v] of selectMeta) flat.set(k, v);
      if (cfg.compact) flat.set(META_KEYS.scoreFile, JSON.stringify({ file: file.rel, sha256: sha256(readFileSync(file.path)), rows: await fileRows(file) }));
      // One builder for the flat keys and the combined `rho` object, so they agree (selection included).
      const metadata = provenanceViews(flat).keyValues;
      const batches: RecordBatch[] = [];
      let schema: Schema | null = null;
      // Compact output needs only the scores and the join key; a full copy needs every column.
      for await (const batch of fileBatches(file, cfg.compact ? [...scoreInputs(spec), COL.source, COL.row] : undefined)) {
        const { offsets, scores } = batchScores(batch, spec);
        const n = scores.length;
        const mask = new Uint8Array(n);
        const rows = batch.numRows;
        const srcCol = batch.getChild(COL.source)!;
        for (let r = 0; r < rows; r++) {
          const a = offsets[r];
          const b = offsets[r + 1];
          let applier: CutApplier | null = global;
          if (cfg.scope === 'document') {
            const vals = new ValueBuffer();
            for (let j = a; j < b; j++) vals.push(scores[j]);
            applier = new CutApplier(cutOf(vals.take(), cfg.ratio));
          }
          let scored = 0;
          let selected = 0;
          for (let j = a; j < b; j++, tokenIndex++) {
            if (cfg.scope === 'batch') {
              const g = Math.floor(tokenIndex / cfg.batchTokens);
              if (g !== groupIndex) {
                groupIndex = g;
                groupApplier = new CutApplier(pass1.groups![g]);
              }
              applier = groupApplier;
            }
            if (!Number.isNaN(scores[j])) scored++;
            if (applier!.keep(scores[j])) {
              mask[j] = 1;
              selected++;
            }
          }
          const source = String(srcCol.get(r));
          let s = sources.get(source);
          if (!s) sources.set(source, (s = { docs: 0, tokens: 0, scored: 0, selected: 0, fraction: 0 }));
          for (const c of [s, totals]) {
            c.docs++;
            c.tokens += b - a;
            c.scored += scored;
            c.selected += selected;
          }
        }
        let children: Data[];
        if (cfg.compact) {
          schema ??= new Schema(compactSelectFields(), metadata);
          children = [batch.getChild(COL.source)!.data[0], batch.getChild(COL.row)!.data[0], selectMaskData(mask, offsets)];
        } else {
          const { selectMask, labels } = selectColumns(batch, mask, offsets);
          // A dir selected before keeps its other columns; its old selection is replaced.
          const keepIdx = batch.schema.fields.map((f, i) => [f, i] as const).filter(([f]) => f.name !== COL.selectMask && f.name !== COL.labels);
          schema ??= new Schema([...keepIdx.map(([f]) => f), ...selectFields()], metadata);
          children = [...keepIdx.map(([, i]) => batch.data.children[i]), selectMask, labels];
        }
        batches.push(new RecordBatch(schema, makeData({ type: new Struct(schema.fields), length: rows, nullCount: 0, children })));
        counts.docs = totals.docs;
        counts.tokens = totals.tokens;
        progress.draw();
      }
      if (!schema) {
        const fields = file.schema.fields.filter((f) => f.name !== COL.selectMask && f.name !== COL.labels);
        schema = cfg.compact ? new Schema(compactSelectFields(), metadata) : new Schema([...fields, ...selectFields()], metadata);
      }
      const format = cfg.format ?? file.format;
      const rel = file.rel.replace(/\.(parquet|arrow)$/, `.${format}`);
      const table = new Table(schema, batches);
      const bytes = encodeTable(table, format);
      writeFileAtomic(join(tmp, rel), bytes);
      written.push({ rel, from: file.rel, bytes: bytes.length, sha256: sha256(bytes), rows: table.numRows });
      counts.inputBytesDone += file.bytes;
    }

    totals.fraction = totals.scored ? totals.selected / totals.scored : 0;
    for (const s of sources.values()) s.fraction = s.scored ? s.selected / s.scored : 0;
    const report: SelectReport = {
      output: cfg.output,
      input: cfg.input,
      ratio: cfg.ratio,
      by: cfg.by,
      score: scoreFormula(spec),
      scope: cfg.scope,
      mode: pass1.mode,
      batch_tokens: cfg.scope === 'batch' ? cfg.batchTokens : null,
      sketch_accuracy: pass1.mode === 'sketch' ? cfg.sketchAccuracy : null,
      threshold,
      totals,
      sources: [...sources.entries()].map(([source, c]) => ({ source, ...c })).sort((a, b) => (a.source < b.source ? -1 : a.source > b.source ? 1 : 0)),
      files: written.length,
      wall_seconds: 0,
    };
    copyBookkeeping(set, tmp, written, report, selectMeta, cfg.compact === true);
    report.wall_seconds = progress.elapsedSeconds();
    publishDir(tmp, cfg.output);
    return report;
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  } finally {
    progress.stop();
  }
}

/**
 * Carry the score run's bookkeeping over, so `rho verify` and resume-aware tools read the new dir like a score
 * output: run identity and rejects as they were, completion records and manifest pointing at the new files.
 */
function copyBookkeeping(set: ScoreSet, tmp: string, written: { rel: string; from: string; bytes: number; sha256: string; rows: number }[], report: SelectReport, selectMeta: Map<string, string>, compact: boolean): void {
  const byFrom = new Map(written.map((w) => [w.from, w]));
  const src = (rel: string) => join(set.root, rel);
  const dst = (rel: string) => {
    mkdirSync(dirname(join(tmp, rel)), { recursive: true });
    return join(tmp, rel);
  };
  const selection = { ...report, wall_seconds: undefined, sources: report.sources };
  // Provenance of the new dir from the same builder as its files' metadata: the score dir's plus the selection.
  const views = setProvenance(set, Object.fromEntries(selectMeta));
  if (compact) {
    // Not a score dir (no completion records: rho verify and resume tools must not take it for one).
    const files = written.map((w) => ({ file: w.rel, rows: w.rows, bytes: w.bytes, sha256: w.sha256, score_file: w.from }));
    const m = { schema_version: Number(views.flat['rho.schema_version']), layout: 'compact', scores: { path: set.root, resolved_path: resolvedPath(set.root) }, ...views.manifestFields, provenance: views.flat, files, selection };
    writeFileSync(dst(LAYOUT.manifest), JSON.stringify(m, null, 2) + '\n');
    writeFileSync(dst('_rho/select.json'), JSON.stringify(selection, null, 2) + '\n');
    return;
  }
  if (existsSync(src(LAYOUT.config))) copyFileSync(src(LAYOUT.config), dst(LAYOUT.config));
  for (const rel of listAll(set.root, LAYOUT.rejectsDir)) copyFileSync(src(rel), dst(rel));
  for (const rel of listAll(set.root, LAYOUT.doneDir)) {
    if (!rel.endsWith('.json')) continue;
    const rec = JSON.parse(readFileSync(src(rel), 'utf8')) as CompletionRecord;
    const w = byFrom.get(rec.file);
    if (!w) continue; // a record without its data file stays behind: the new dir only vouches for files it has
    writeFileSync(dst(rel), JSON.stringify({ ...rec, file: w.rel, bytes: w.bytes, sha256: w.sha256 }, null, 2) + '\n');
  }
  if (set.manifest) {
    const m: Manifest & { selection?: unknown } = {
      ...set.manifest,
      ...views.manifestFields,
      provenance: views.flat,
      files: set.manifest.files.filter((f) => byFrom.has(f.file)).map((f) => { const w = byFrom.get(f.file)!; return { ...f, file: w.rel, bytes: w.bytes, sha256: w.sha256 }; }),
      selection,
    };
    writeFileSync(dst(LAYOUT.manifest), JSON.stringify(m, null, 2) + '\n');
  }
  writeFileSync(dst('_rho/select.json'), JSON.stringify(selection, null, 2) + '\n');
}

/** Rows of a score file (Parquet: from the footer; Arrow IPC: counted). */
async function fileRows(file: ScoreFile): Promise<number> {
  let n = 0;
  for await (const b of fileBatches(file, [COL.row])) n += b.numRows;
  return n;
}

/** Every file under `prefix` of `root` (recursive), as paths relative to `root`. */
function listAll(root: string, prefix: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    let entries;
    try { entries = readdirSync(join(root, rel), { withFileTypes: true }); } catch { return; }
    for (const e of entries) {
      if (e.isDirectory()) walk(join(rel, e.name));
      else out.push(join(rel, e.name));
    }
  };
  walk(prefix);
  return out.sort();
}
