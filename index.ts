// rho's public API (the package's `exports`): the jobs as functions, the stages they are built from, the
// executor that runs them, and the types between. docs/api.md shows how they fit; docs/architecture.md why.

// ---- the jobs ----
export { score, parseModels, parseModelTokenizers, type ScoreOptions, type ScoreSummary, type ModelEntry } from './api/score.js';
export { select, exportMemmap, verify, type SelectOptions, type ExportOptions, type VerifyApiOptions } from './api/derive.js';
export type { SelectReport } from './pipeline/jobs/select.js';
export type { ExportSummary } from './pipeline/jobs/export.js';
export type { VerifyReport, Finding, Severity } from './pipeline/jobs/verify/index.js';

// ---- errors: every one carries the CLI's exit code ----
export { ConfigError, RejectRatioError, RunError, EXIT, exitCodeOf } from './schemas/errors.js';

// ---- the output contract ----
export { COL, META, SCHEMA_VERSION, IGNORE_INDEX, logprobColumn, entropyColumn, lossMeanColumn, scoreSchema, isUnscoredPosition } from './schemas/contract.js';
export { LAYOUT, shardKey, unitName, dataPath, type CompletionRecord } from './schemas/layout.js';
export type { Manifest, ShardAccount } from './schemas/manifest.js';
export type { OutputStore, StoreWriter } from './schemas/store.js';
export type {
  Document, SourceDocument, DocumentSource, ReadItem, Rejected, TokenizedDocument, WindowSpec, Window, WindowedDocument, Batch,
  ModelBatchScores, ScoredDocument, UnitRef, Flow, BatchFlow, ScoredBatchFlow, UnitRecords, EncodedUnit, OrderedFlow, EncodedFlow, StageStats,
} from './schemas/types.js';

// ---- stages: one contract, composable ----
export { stage, compose, instrument, emptyStats, type Stage, type StageContext } from './stages/stage.js';
export { readShard, readDocuments, readStage, shardFormat, localFiles, type ShardOpener, type ReadOptions } from './stages/read.js';
export { filterDocuments, mapDocuments, type DocumentPredicate } from './stages/filter.js';
export { TextTokenizer, tokenizeStage, type TokenizerInfo, type TokenizeStageOptions } from './stages/tokenize.js';
export { planWindows, validateWindowSpec, windowStage } from './stages/window.js';
export { planBatches, buildBatch, WindowPool, batchStage, type BatchPlan } from './stages/batch.js';
export { OnnxScorer, scoreStage, alignScores, type Scorer, type ScorerOptions } from './stages/score.js';
export { assembleStage } from './stages/assemble.js';
export { writeStage, streamWriteStage, encodeUnit, scoredTable, encodeTable, decodeTable, type OutputFormat, type WriteStageOptions } from './stages/write.js';
export { prepareModel, type PreparedModel, type PrepareOptions } from './model/prepare.js';

// ---- the executor and storage ----
export { Executor, type ExecutorInput, type ExecutorOptions, type RunCounts } from './pipeline/run/executor.js';
export { claimOutputDir, type RunIdentity } from './pipeline/run/identity.js';
export { LocalStore, writeFileAtomic } from './pipeline/io/local.js';
export { openOutputStore, openerFor } from './pipeline/io/open.js';
export { resolveInputs, type InputShard } from './pipeline/io/inputs.js';
export { RHO_VERSION } from './schemas/version.js';

// ---- inspecting outputs (rho stats / report / show) and the one definition of a selection cut ----
export { computeStats, runStats, type Stats, type StatsOptions, type MetricStats, type MetricCut, type GroupStats } from './inspect/stats.js';
export { makeReport, type ReportOptions } from './inspect/report.js';
export { profileDir, windowPosition, type Profile } from './inspect/profile.js';
export { keepCount, keptSide, thresholdRank, onKeptSide, selectArgs, type SelectBy, type CutMetric, type KeptSide } from './schemas/selection-cut.js';
// ---- scaling out (what rho launch/status run) ----
export { findDocuments, documentText } from './inspect/documents.js';
export { openScoreSet, type ScoreSet } from './pipeline/io/score-files.js';
export { slurmScript, submitSlurm } from './pipeline/launch/slurm.js';
export { k8sManifest, toYaml } from './pipeline/launch/k8s.js';
export { runStatus, formatStatus } from './pipeline/launch/status.js';
export { resolveRank, ownerOf } from './pipeline/run/rank.js';
