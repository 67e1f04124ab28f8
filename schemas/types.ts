// Types shared by the stages. One place, so a stage's input and output are named once.

/** One input document as read from a shard, before tokenization. */
export interface Document {
  /** The input file it came from, as given (path or URI). */
  source: string;
  /** Row index inside that file (0-based, counts every record, bad ones included). */
  row: number;
  /** `--id-field` value, else `<source>#<row>`. */
  id: string;
  text: string;
  /** Sequence number in this run's input order, assigned by the job (the key that reassembles windows). */
  docSeq?: number;
}

/** A document that could not be scored, with the reason. Written to the rejects file; never dropped silently. */
export interface Rejected {
  source: string;
  row: number;
  /** The id when it could be read, else null. */
  id: string | null;
  /** The field at fault (`text`, `id`, or `line` for a malformed record). */
  field: string;
  reason: string;
}

/** One document of a document source: the text, and an id (default `<source name>#<index>`). */
export interface SourceDocument {
  id?: string;
  text: string;
}

/**
 * An input that is not a file: a name and the documents, in order. Its rows are written with `source` = name
 * and `row` = the index of the document. Resume, claims and `verify` treat it like a file of that name, so a
 * rerun (or another runner) must get the same documents in the same order from it.
 */
export interface DocumentSource {
  name: string;
  documents(): AsyncIterable<SourceDocument> | Iterable<SourceDocument>;
}

/** What a reader yields: a document to score or a record of why one cannot be. */
export type ReadItem = { kind: 'doc'; doc: Document } | { kind: 'reject'; reject: Rejected };

/** A document after tokenization. */
export interface TokenizedDocument extends Document {
  docSeq: number;
  /** Token ids as scored, special tokens from the post-processor included. */
  tokenIds: Int32Array;
}

/** Window geometry: a document of n tokens is scored in windows [kS, min(kS+C, n)). */
export interface WindowSpec {
  /** C: tokens per window. */
  contextTokens: number;
  /** S: stride between window starts, 1 <= S <= C. */
  strideTokens: number;
}

/**
 * One window of one document. Tokens [start, end) of the document are fed with position ids 0..end-start-1;
 * the window's scores are kept for document tokens [scoreFrom, end) (the first window that contains them).
 */
export interface Window {
  /** Sequence number of the document in input order (reassembly key). */
  docSeq: number;
  start: number;
  end: number;
  scoreFrom: number;
}

/** A padded inference batch: B rows of T tokens, right-padded, row r holds lengths[r] real tokens. */
export interface Batch {
  rows: number;
  /** T, the padded length. */
  width: number;
  /** [rows * width] token ids; padding is 0. */
  tokens: Int32Array;
  lengths: Int32Array;
  windows: Window[];
}

/**
 * Scores of a batch for one model, [rows * width], aligned with the batch tokens:
 * logprob[r*width + t] = log P(token t | tokens 0..t-1 of the row) for t >= 1; index 0 of every row is unused.
 */
export interface ModelBatchScores {
  logprob: Float32Array;
  entropy?: Float32Array;
}

/** A fully scored document, ready to write. Arrays are aligned with tokenIds. */
export interface ScoredDocument extends TokenizedDocument {
  /**
   * Per model name: logprob per token. Positions where the window rule gives no context hold NaN and are written
   * as null. A projected model (own tokenizer) has NaN where nothing was projected, and `nativeSum` (NaN: none).
   */
  scores: Map<string, { logprob: Float32Array; entropy?: Float32Array; nativeSum?: number }>;
}

// ---- what flows between the stages of a job (stages/stage.ts has the stage contract) ----

/** A work unit as the stages see it: `unitDocs` consecutive rows of one input, one output file. */
export interface UnitRef {
  /** `<shard key>/part-NNNNN`: the unit's identity in claims, completion records and file names. */
  name: string;
  source: string;
  part: number;
  /** Row of the input where the unit starts (part * unitDocs). */
  firstRow: number;
  /** The shard's folder (shardKey of its canonical location); file paths derive from it. */
  key?: string;
}

/**
 * The document stream of a job. Every record a unit holds enters as a `doc` or a `reject`; after its last one,
 * the executor sends `end` with the unit's record count, so whoever gathers units knows when one is whole
 * even though documents finish out of order. A stage passes on what it does not handle; a filter turns a
 * `doc` into a `reject` (nothing vanishes: the count per unit never changes).
 */
export type Flow<D> =
  | { kind: 'doc'; unit: UnitRef; doc: D }
  | { kind: 'reject'; unit: UnitRef; reject: Rejected }
  | { kind: 'end'; unit: UnitRef; records: number };

/** A tokenized document with the windows that score it (stages/window.ts). */
export interface WindowedDocument extends TokenizedDocument {
  windows: Window[];
}

/** Out of the batch stage: every document (so that later stages can reassemble it), then the batches of its windows. */
export type BatchFlow = Flow<WindowedDocument> | { kind: 'batch'; batch: Batch };

/** Out of the score stage: documents as they passed, and each batch with the scores of every model. */
export type ScoredBatchFlow = Flow<WindowedDocument> | { kind: 'scored'; batch: Batch; scores: Map<string, ModelBatchScores> };

/** A whole unit, its records in input (row) order: what a writer turns into one data file. */
export interface UnitRecords<D> {
  unit: UnitRef;
  /** Documents and rejects in row order. */
  records: ({ kind: 'doc'; doc: D } | { kind: 'reject'; reject: Rejected })[];
}

/** A unit encoded as the bytes of its data file, ready for the executor to commit. */
export interface EncodedUnit {
  unit: UnitRef;
  /** Path of the data file relative to the output root. */
  file: string;
  bytes: Uint8Array;
  records: number;
  scored: number;
  rejects: Rejected[];
  /** Tokens written (token_ids lengths summed) and tokens with a score. */
  tokens: number;
  scoredTokens: number;
}

/**
 * Out of the ordering stage (the executor's `ordered()`): each unit's records in row order, each passed on as
 * soon as every earlier row of its unit has been, then the unit's `end`; `abandon` when the unit's input could
 * not be read to its end (whatever was passed on for it must be dropped).
 */
export type OrderedFlow<D> = Flow<D> | { kind: 'abandon'; unit: UnitRef };

/**
 * Out of the streaming writer: the bytes of each unit's data file, in order, as its row groups fill (`data`);
 * then `unit` with its counts once the file is finished (its footer was the last `data`); or `abandon`.
 */
export type EncodedFlow =
  | { kind: 'data'; unit: UnitRef; /** Path of the data file relative to the output root. */ file: string; bytes: Uint8Array }
  | ({ kind: 'unit' } & Omit<EncodedUnit, 'bytes'>)
  | { kind: 'abandon'; unit: UnitRef };

/** Per-stage counters and time, in the summary and manifest.json (`run.stages`). */
export interface StageStats {
  name: string;
  docs_in: number;
  docs_out: number;
  /** Tokens of the documents (or batches) in and out. */
  tokens_in: number;
  tokens_out: number;
  /** Documents this stage turned into rejects. */
  rejected: number;
  /** Seconds spent in this stage's own code (time waiting for the stage before it is not counted). */
  seconds: number;
  /** Stage-specific counts (batches, padded positions, ...); window_tokens_in/out: real tokens of the batches a stage takes and gives. */
  counters: Record<string, number>;
}
