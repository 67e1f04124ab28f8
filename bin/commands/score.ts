import type { CommandModule } from 'yargs';
// `rho score`: parses flags and calls score() from the API (index.ts); prints its summary.
import { score, exitCodeOf, type ScoreSummary } from '../../index.js';
import { DEFAULT_CACHE_DIR, describeLimits } from '../../pipeline/jobs/score.js';
import { fmtDuration } from '../../pipeline/run/progress.js';
import { handleInterrupts } from '../../pipeline/run/interrupt.js';
import { DEFAULT_LEASE_SECONDS } from '../../pipeline/run/claims.js';

interface ScoreArgs {
  model: string[];
  'model-name': string;
  tokenizer: string;
  'model-tokenizer'?: string[];
  input: string[];
  output: string;
  'text-field': string;
  'id-field'?: string;
  context?: number;
  stride?: number;
  'batch-tokens'?: number;
  'memory-budget'?: string;
  format: 'parquet' | 'arrow';
  device: 'cpu' | 'cuda' | 'webgpu';
  'device-id': number;
  'append-eos': boolean;
  'eos-token'?: string;
  entropy: boolean;
  'score-dtype': 'float32' | 'float16' | 'bfloat16';
  'unit-docs': number;
  'max-reject-ratio': number;
  overwrite: boolean;
  'rescore-changed': boolean;
  'cache-dir': string;
  threads?: number;
  progress: boolean;
  json: boolean;
  rank?: number;
  'world-size'?: number;
  devices?: string;
  'lease-seconds': number;
  'partition-by': 'none' | 'shard';
  's3-endpoint'?: string;
}

/** `--model-tokenizer NAME=PATH`, repeatable (parsed by the API's parseModelTokenizers). */
export { parseModelTokenizers } from '../../api/score.js';

export const scoreCommand: CommandModule<object, ScoreArgs> = {
  command: 'score',
  describe: 'Score every token of text shards with ONNX reference model(s); write per-token log-probs as Parquet/Arrow',
  builder: (y) =>
    y
      .usage('$0 score --model PATH --tokenizer PATH --input GLOB... --output DIR [options]')
      .option('model', { type: 'string', array: true, demandOption: true, describe: 'ONNX causal LM (HF/optimum export with a `logits` output). Repeat as NAME=PATH to score with several models in one pass (e.g. ref=a.onnx base=b.onnx)' })
      .option('model-name', { type: 'string', default: 'ref', describe: 'Column prefix for a single unnamed --model: writes <name>_logprob' })
      .option('tokenizer', { type: 'string', demandOption: true, describe: 'Hugging Face tokenizer.json (its post-processor decides BOS/EOS, as tokenizer(text) does)' })
      .option('model-tokenizer', { type: 'string', array: true, describe: 'NAME=PATH: model NAME reads the text with its own tokenizer.json, in its own windows; its log-probs are projected onto the --tokenizer\'s tokens by byte overlap and <NAME>_native_sum is written (docs/cross-tokenizer.md). Repeatable' })
      .option('input', { type: 'string', array: true, demandOption: true, describe: 'Input shards or globs: .jsonl/.ndjson (plain, .gz, .zst), .parquet, .arrow/.ipc' })
      .option('output', { type: 'string', demandOption: true, describe: 'Output dir: <shard>/part-NNNNN.parquet, manifest.json, _rho/ (completion records, rejects)' })
      .option('text-field', { type: 'string', default: 'text', describe: 'Field/column holding the document text' })
      .option('id-field', { type: 'string', describe: 'Field/column holding the document id (default: ids are <source>#<row>)' })
      .option('context', { type: 'number', describe: 'C, tokens per window (default: the model\'s max positions from its config.json, else 2048)' })
      .option('stride', { type: 'number', describe: 'S, tokens between window starts, 1..C (default C: no overlap). Every token after the first gets at least C-S tokens of context' })
      .option('batch-tokens', { type: 'number', describe: 'Token budget of one inference batch (rows x padded width). Default: from --memory-budget (CPU: 1024, the measured optimum; GPU: as many whole windows as the budget holds)' })
      .option('memory-budget', { type: 'string', describe: 'Memory rho may plan for: bytes (8GiB, 512MiB) or a fraction (0.5, 50%). Default: 50% of RAM on CPU, 80% of the GPU\'s memory (nvidia-smi) on a GPU. A window that cannot fit is refused before any work' })
      .option('format', { choices: ['parquet', 'arrow'] as const, default: 'parquet' as const, describe: 'Parquet (zstd) or Arrow IPC file (uncompressed)' })
      .option('device', { choices: ['cpu', 'cuda', 'webgpu'] as const, default: 'cpu' as const, describe: 'Execution provider. cuda needs onnxruntime-node installed with ONNXRUNTIME_NODE_INSTALL=cuda12; never falls back silently' })
      .option('device-id', { type: 'number', default: 0, describe: 'GPU index for --device cuda' })
      .option('append-eos', { type: 'boolean', default: false, describe: 'Append the EOS token after the post-processor\'s tokens (tokenizer_config.json add_eos_token is ignored by every library)' })
      .option('eos-token', { type: 'string', describe: 'EOS token for --append-eos (default: tokenizer_config.json eos_token, else a well-known name)' })
      .option('entropy', { type: 'boolean', default: false, describe: 'Also write <name>_entropy: entropy (nats) of the distribution that scores each token' })
      .option('score-dtype', { choices: ['float32', 'float16', 'bfloat16'] as const, default: 'float32' as const, describe: 'Storage of per-token scores: float32 (exact); float16 (Parquet FLOAT16, error <= 2^-11 relative); bfloat16 (bfloat16 values in a float32 column, error <= 2^-8 relative; zstd drops the zero half). DuckDB and polars read all three as floats' })
      .option('unit-docs', { type: 'number', default: 10000, describe: 'Documents per work unit (one output file + completion record); a crash loses at most one unit' })
      .option('max-reject-ratio', { type: 'number', default: 0.01, describe: 'Exit 3 when more than this fraction of input documents was rejected (rejects are listed in _rho/rejects/)' })
      .option('rescore-changed', { type: 'boolean', default: false, describe: 'An input changed since some of its units were scored: delete those units and score them again (default: refuse, exit 2)' })
      .option('overwrite', { type: 'boolean', default: false, describe: 'Delete results of another configuration in --output instead of refusing' })
      .option('cache-dir', { type: 'string', default: DEFAULT_CACHE_DIR, describe: 'Where prepared (log-prob) graphs are cached, keyed by model sha256 (env RHO_CACHE_DIR)' })
      .option('threads', { type: 'number', describe: 'onnxruntime intra-op threads (default on CPU: every core this process may use; onnxruntime\'s own default took 1 of 2 cores here)' })
      .option('progress', { type: 'boolean', default: true, describe: 'Progress line on stderr (--no-progress to silence)' })
      .option('json', { type: 'boolean', default: false, describe: 'Print the run summary as JSON on stdout' })
      .option('rank', { type: 'number', describe: 'This runner\'s rank, 0..world-size-1 (default: from SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX or AWS_BATCH_JOB_ARRAY_INDEX, else 0)' })
      .option('world-size', { type: 'number', describe: 'Number of runners sharing the work (default: SLURM_ARRAY_TASK_COUNT, RHO_WORLD_SIZE, AWS_BATCH_JOB_ARRAY_SIZE, else 1). Units go to ranks by a stable hash of their name' })
      .option('devices', { type: 'string', describe: 'Comma-separated GPU ids (e.g. 0,1,2,3): one inference worker per device in this process, sharing readers and writers' })
      .option('lease-seconds', { type: 'number', default: DEFAULT_LEASE_SECONDS, describe: 'Lease of a unit claim: a claim not renewed for this long (runner died on another host) is taken over. Claims of dead processes on the same host are taken over at once' })
      .option('partition-by', { choices: ['none', 'shard'] as const, default: 'none' as const, describe: 'shard: Hive-style shard=<key>/part-NNNNN.parquet folders, one table partitioned by shard for DuckDB/Spark/Trino' })
      .option('s3-endpoint', { type: 'string', describe: 'Endpoint URL of an S3-compatible store for s3:// inputs/outputs (credentials from the standard AWS env vars/profile; env AWS_ENDPOINT_URL_S3 also works)' }) as never,
  handler: async (args) => {
    let summary: ScoreSummary;
    let stopHandling: (() => void) | undefined;
    try {
      stopHandling = handleInterrupts({
        command: 'score',
        output: args.output,
        describe: () => `the units finished so far are kept; rerun the same command to resume (\`rho status ${args.output}\` lists what is left)`,
      });
      summary = await score({
        models: args.model,
        modelName: args['model-name'],
        tokenizer: args.tokenizer,
        modelTokenizers: args['model-tokenizer'],
        inputs: args.input,
        output: args.output,
        textField: args['text-field'],
        idField: args['id-field'],
        context: args.context,
        stride: args.stride,
        batchTokens: args['batch-tokens'],
        memoryBudget: args['memory-budget'],
        format: args.format,
        device: args.device,
        deviceId: args['device-id'],
        devices: args.devices,
        appendEos: args['append-eos'],
        eosToken: args['eos-token'],
        entropy: args.entropy,
        scoreDtype: args['score-dtype'],
        unitDocs: args['unit-docs'],
        maxRejectRatio: args['max-reject-ratio'],
        overwrite: args.overwrite,
        rescoreChanged: args['rescore-changed'],
        cacheDir: args['cache-dir'],
        threads: args.threads,
        progress: args.progress,
        rank: args.rank,
        worldSize: args['world-size'],
        leaseSeconds: args['lease-seconds'],
        partitionBy: args['partition-by'],
        s3Endpoint: args['s3-endpoint'],
      });
    } catch (e) {
      stopHandling?.();
      const s = (e as { summary?: ScoreSummary }).summary;
      if (s) printSummary(s, args.json);
      process.exitCode = exitCodeOf(e);
      throw e;
    }
    stopHandling?.();
    printSummary(summary, args.json);
  },
};

function printSummary(s: ScoreSummary, json: boolean): void {
  if (json) {
    process.stdout.write(JSON.stringify(s) + '\n');
    return;
  }
  const t = s.totals;
  const r = s.run;
  const lines = [
    `rho score: wrote ${s.output}`,
    `  this run: ${r.units_written} units written, ${r.units_skipped} already done` +
      (r.units_other_rank ? `, ${r.units_other_rank} belong to other ranks` : '') +
      (r.units_claimed_elsewhere ? `, ${r.units_claimed_elsewhere} claimed by other live runners (rerun later to pick up any they leave)` : '') +
      (r.units_lost ? `, ${r.units_lost} committed first by another runner (its output kept, this one's dropped)` : '') +
      `; ${r.docs_in} documents in = ${r.scored} scored + ${r.rejected} rejected`,
    `            ${r.tokens} tokens (${r.scored_tokens} scored) in ${fmtDuration(r.wall_seconds)}, ${Math.round(r.tokens_per_second)} scored tokens/s, padding ${(r.padding_fraction * 100).toFixed(1)}%`,
    (s.scope === 'dir' ? '  output dir: ' : '  this rank\'s share (manifest.json is written by the last rank to finish, or `rho manifest`): ') +
      `${t.units_done} units, ${t.docs_in} documents in = ${t.scored} scored + ${t.rejected} rejected, ${t.tokens} tokens`,
  ];
  for (const sh of s.shards) lines.push(`    ${sh.source}: ${sh.docs_in} in = ${sh.scored} scored + ${sh.rejected} rejected, ${sh.tokens} tokens -> ${sh.key}/`);
  for (const l of describeLimits(s.limits)) lines.push(`  ${l}`);
  process.stdout.write(lines.join('\n') + '\n');
}
