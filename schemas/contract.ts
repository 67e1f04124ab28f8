// The output contract, schema version 1 (ARCHITECTURE.md section 3). Defined once: the writer, `verify`,
// `select`, `stats` and the tests import it. Changing a name or type here changes the public contract.
import { Bool, Field, Float32, Int32, Int64, List, Schema, Utf8, type DataType } from 'apache-arrow';
import { resolve } from 'node:path';
import { scoreItemType, type ScoreDtype } from './score-dtype.js';

export const SCHEMA_VERSION = 1;

/** Column names that do not depend on a model. */
export const COL = {
  id: 'id',
  source: 'source',
  row: 'row',
  tokenIds: 'token_ids',
  nTokens: 'n_tokens',
  selectMask: 'select_mask',
  labels: 'labels',
  docIds: 'doc_ids',
  docOffsets: 'doc_offsets',
} as const;

/** `<model>_logprob`: log P_model(token_i | earlier tokens of its window); null where there is no context. */
export const logprobColumn = (model: string): string => `${model}_logprob`;
/** `<model>_entropy`: entropy (nats) of the next-token distribution that scores token i; null where logprob is. */
export const entropyColumn = (model: string): string => `${model}_entropy`;
/** `<model>_loss_mean`: mean of -logprob over the document's scored (non-null) tokens; null when none. */
export const lossMeanColumn = (model: string): string => `${model}_loss_mean`;

/** The ignore index of PyTorch / Hugging Face losses, written in `labels` where a token is not selected. */
export const IGNORE_INDEX = -100;

/** A model name becomes a column prefix, so it must be a plain identifier. */
export const MODEL_NAME_PATTERN = /^[A-Za-z][A-Za-z0-9]*$/;

/** Parquet key-value metadata keys (also the Arrow schema metadata keys). Values are strings (JSON where structured). */
export const META = {
  schemaVersion: 'rho.schema_version',
  rhoVersion: 'rho.version',
  /** JSON: [{name, path, sha256, external_data: [{path, bytes, sha256}]}] */
  models: 'rho.models',
  /** JSON: {path, sha256} */
  tokenizer: 'rho.tokenizer',
  /** C, tokens per window */
  context: 'rho.context',
  /** S, stride between window starts */
  stride: 'rho.stride',
  /** JSON: {post_processor: true, append_eos: bool, eos_token, eos_id} */
  specialTokens: 'rho.special_tokens',
  /** JSON: [{source, bytes}] — the input shard(s) this file was made from */
  inputs: 'rho.inputs',
  /** JSON: {source, part, first_row, rows} — the work unit this file holds */
  unit: 'rho.unit',
  /** float32 | float16 | bfloat16: how per-token scores are stored (schemas/score-dtype.ts has the error bounds) */
  scoreDtype: 'rho.score_dtype',
  /**
   * JSON: every key above in one object, values parsed ({schema_version, version, models, tokenizer, context,
   * stride, special_tokens, inputs, unit}), for readers that want one key (like the `huggingface` key of HF files).
   */
  all: 'rho',
} as const;

/**
 * Provenance in every form rho writes it, all built here from the flat `rho.*` keys (the one source of truth):
 * - `keyValues`: the flat keys plus `rho`, the combined JSON object: the Parquet key-value metadata;
 * - `combined`: that object (each flat key without `rho.`, its JSON value parsed; `rho.select.*` keys
 *   nested under `select`);
 * - `manifestFields`: the top-level fields of manifest.json (`rho_version`, `models`, `tokenizer`, ...,
 *   `select` after a selection);
 * - `flat`: the flat keys alone (manifest.json `provenance`, the export's header.json `provenance` minus `rho`).
 * Keys outside `rho.*` (ARROW:schema) and a stale `rho` are dropped, so rebuilding from any of them agrees.
 */
export interface ProvenanceViews {
  flat: Record<string, string>;
  keyValues: Map<string, string>;
  combined: Record<string, unknown>;
  manifestFields: Record<string, unknown>;
}

const SELECT_PREFIX = 'rho.select.';

export function provenanceViews(meta: Map<string, string> | Record<string, string>): ProvenanceViews {
  const entries = (meta instanceof Map ? [...meta] : Object.entries(meta)).filter(([k]) => k.startsWith('rho.'));
  entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const parse = (v: string): unknown => {
    try {
      return JSON.parse(v);
    } catch {
      return v;
    }
  };
  const combined: Record<string, unknown> = {};
  const select: Record<string, unknown> = {};
  for (const [k, v] of entries) {
    if (k.startsWith(SELECT_PREFIX)) select[k.slice(SELECT_PREFIX.length)] = parse(v);
    else combined[k.slice(4)] = parse(v);
  }
  if (Object.keys(select).length) combined.select = select;
  const flat = Object.fromEntries(entries);
  const keyValues = new Map(entries);
  keyValues.set(META.all, JSON.stringify(combined));
  const { schema_version: _sv, version, ...rest } = combined;
  void _sv;
  return { flat, keyValues, combined, manifestFields: { rho_version: version, ...rest } };
}

/** A path as an absolute path (URIs such as s3://bucket/key unchanged), recorded next to the path as given. */
export function resolvedPath(p: string): string {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(p) ? p : resolve(p);
}

/** The combined `rho` metadata value (provenanceViews(meta).keyValues.get('rho')). */
export function combinedProvenance(meta: Map<string, string>): string {
  return provenanceViews(meta).keyValues.get(META.all)!;
}

const listOf = (t: DataType, nullable: boolean) => new List(new Field('item', t, nullable));

/** Arrow schema of per-document score output for the given model names. */
export function scoreSchema(models: readonly string[], opts: { entropy: boolean; scoreDtype?: ScoreDtype }, metadata?: Map<string, string>): Schema {
  const item = scoreItemType(opts.scoreDtype ?? 'float32');
  const fields: Field[] = [
    new Field(COL.id, new Utf8(), false),
    new Field(COL.source, new Utf8(), false),
    new Field(COL.row, new Int64(), false),
    new Field(COL.tokenIds, listOf(new Int32(), false), false),
  ];
  for (const m of models) {
    fields.push(new Field(logprobColumn(m), listOf(item, true), false));
    if (opts.entropy) fields.push(new Field(entropyColumn(m), listOf(item, true), false));
  }
  fields.push(new Field(COL.nTokens, new Int32(), false));
  for (const m of models) fields.push(new Field(lossMeanColumn(m), new Float32(), true));
  return new Schema(fields, metadata);
}

/** Metadata keys a selection adds to each file (values are strings; JSON where structured). */
export const SELECT_META = {
  ratio: 'rho.select.ratio',
  by: 'rho.select.by',
  /** The formula of the score, in column names, e.g. `ref_logprob - base_logprob`. */
  score: 'rho.select.score',
  scope: 'rho.select.scope',
  /** `exact` (ceil(k*N) per scope) or `sketch` (score >= threshold). */
  mode: 'rho.select.mode',
  /** JSON: global: a number; batch/document: {min, median, max, count} over scopes with scored tokens. */
  threshold: 'rho.select.threshold',
  batchTokens: 'rho.select.batch_tokens',
  sketchAccuracy: 'rho.select.sketch_accuracy',
  /** `full` (a copy of the score files plus select_mask and labels) or `compact` (source, row, select_mask only). */
  layout: 'rho.select.layout',
  /** compact: JSON {path, resolved_path} — the score dir the selection belongs to. */
  scores: 'rho.select.scores',
  /** compact, per file: JSON {file, sha256, rows} — the score file this selection file is aligned with, row for row. */
  scoreFile: 'rho.select.score_file',
} as const;

/** Keys that describe one file, not the dataset: dropped (or, for inputs, unioned) in set-level provenance. */
export const PER_FILE_KEYS: readonly string[] = [META.unit, SELECT_META.scoreFile];

/** Columns of a compact selection file (`rho select --compact`): the join key and the mask. */
export function compactSelectFields(): Field[] {
  return [
    new Field(COL.source, new Utf8(), false),
    new Field(COL.row, new Int64(), false),
    new Field(COL.selectMask, listOf(new Bool(), false), false),
  ];
}

/** Columns `select` adds. */
export function selectFields(): Field[] {
  return [
    new Field(COL.selectMask, listOf(new Bool(), false), false),
    new Field(COL.labels, listOf(new Int32(), false), false),
  ];
}

/**
 * Window rule: which token positions of a document of n tokens get no score (null logprob).
 * Token i is scored in the first window [kS, kS+C) containing it, with the window's earlier tokens as
 * context; it has no context exactly when it is the first token of that window. For S < C this is only
 * position 0; for S == C it is every multiple of C.
 */
export function isUnscoredPosition(i: number, contextTokens: number, strideTokens: number): boolean {
  if (i === 0) return true;
  // First window containing i: smallest k with kS + C > i, i.e. k = max(0, floor((i - C) / S) + 1).
  const k = i < contextTokens ? 0 : Math.floor((i - contextTokens) / strideTokens) + 1;
  return k * strideTokens === i;
}
