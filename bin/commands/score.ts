import type { CommandModule } from 'yargs';
import { runScore, DEFAULT_CACHE_DIR, type ModelSpec, type RunSummary } from '../../pipeline/jobs/score.js';
import { handleInterrupts } from '../../pipeline/run/interrupt.js';
import { ConfigError, exitCodeOf } from '../../schemas/errors.js';
import { fmtDuration } from '../../pipeline/run/progress.js';
import { resolveRank } from '../../pipeline/run/rank.js';
import { DEFAULT_LEASE_SECONDS } from '../../pipeline/run/claims.js';

interface ScoreArgs {
  model: string[];
  'model-name': string;
  tokenizer: string;
  input: string[];
  output: string;
  'text-field': string;
  'id-field'?: string;
  context?: number;
  stride?: number;
  'batch-tokens': number;
  format: 'parquet' | 'arrow';
  device: 'cpu' | 'cuda' | 'webgpu';
  'device-id': number;
  'append-eos': boolean;
  'eos-token'?: string;
  entropy: boolean;
  'unit-docs': number;
  'max-reject-ratio': number;
  overwrite: boolean;
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
  'rescore-changed': boolean;
}

/** `--model PATH` (named by --model-name) or `--model NAME=PATH`, repeatable. */
export function parseModels(values: string[], defaultName: string): ModelSpec[] {
  return values.map((v, i) => {
    const eq = v.indexOf('=');
    if (eq > 0 && !v.slice(0, eq).includes('/')) return { name: v.slice(0, eq), path: v.slice(eq + 1) };
    if (values.length > 1) throw new ConfigError(`with several --model values, name each one: --model NAME=PATH (value ${i + 1}: ${v})`);
    return { name: defaultName, path: v };
  });
}

export const scoreCommand: CommandModule<object, ScoreArgs> = {
  command: 'score',
  describe: 'Score every token of text shards with ONNX reference model(s); write per-token log-probs as Parquet/Arrow',
  builder: (y) =>
    y
      .usage('$0 score --model PATH --tokenizer PATH --input GLOB... --output DIR [options]')
      .option('model', { type: 'string', array: true, demandOption: true, describe: 'ONNX causal LM (HF/optimum export with a `logits` output). Repeat as NAME=PATH to score with several models in one pass (e.g. ref=a.onnx base=b.onnx)' })
      .option('model-name', { type: 'string', default: 'ref', describe: 'Column prefix for a single unnamed --model: writes <name>_logprob' })
      .option('tokenizer', { type: 'string', demandOption: true, describe: 'Hugging Face tokenizer.json (its post-processor decides BOS/EOS, as tokenizer(text) does)' })
      .option('input', { type: 'string', array: true, demandOption: true, describe: 'Input shards or globs: .jsonl/.ndjson (plain, .gz, .zst), .parquet, .arrow/.ipc' })
      .option('output', { type: 'string', demandOption: true, describe: 'Output dir: <shard>/part-NNNNN.parquet, manifest.json, _rho/ (completion records, rejects)' })
      .option('text-field', { type: 'string', default: 'text', describe: 'Field/column holding the document text' })
      .option('id-field', { type: 'string', describe: 'Field/column holding the document id (default: ids are <source>#<row>)' })
      .option('context', { type: 'number', describe: 'C, tokens per window (default: the model\'s max positions from its config.json, else 2048)' })
      .option('stride', { type: 'number', describe: 'S, tokens between window starts, 1..C (default C: no overlap). Every token after the first gets at least C-S tokens of context' })
      .option('batch-tokens', { type: 'number', default: 1024, describe: 'Token budget of one inference batch (rows x padded width). On CPU 1024 is fastest (the runtime still holds [B,T,V] logits: 0.13 GB at V=32000, 1 GB at 8192); on a GPU use 16384 or more' })
      .option('format', { choices: ['parquet', 'arrow'] as const, default: 'parquet' as const, describe: 'Parquet (zstd) or Arrow IPC file (uncompressed)' })
      .option('device', { choices: ['cpu', 'cuda', 'webgpu'] as const, default: 'cpu' as const, describe: 'Execution provider. cuda needs onnxruntime-node installed with ONNXRUNTIME_NODE_INSTALL=cuda12; never falls back silently' })
      .option('device-id', { type: 'number', default: 0, describe: 'GPU index for --device cuda' })
      .option('append-eos', { type: 'boolean', default: false, describe: 'Append the EOS token after the post-processor\'s tokens (tokenizer_config.json add_eos_token is ignored by every library)' })
      .option('eos-token', { type: 'string', describe: 'EOS token for --append-eos (default: tokenizer_config.json eos_token, else a well-known name)' })
      .option('entropy', { type: 'boolean', default: false, describe: 'Also write <name>_entropy: entropy (nats) of the distribution that scores each token' })
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
    let summary: RunSummary;
    let stopHandling: (() => void) | undefined;
    try {
      const where = resolveRank({ rank: args.rank, worldSize: args['world-size'] });
      const devices = args.devices === undefined ? undefined : args.devices.split(',').map((d) => {
        if (!/^\d+$/.test(d.trim())) throw new ConfigError(`--devices: "${d}" is not a device index (expected e.g. 0,1,2,3)`);
        return Number(d);
      });
      stopHandling = handleInterrupts({
        command: 'score',
        output: args.output,
        describe: () => `the units finished so far are kept; rerun the same command to resume (\`rho status ${args.output}\` lists what is left)`,
      });
      summary = await runScore({
        rank: where.rank,
        worldSize: where.worldSize,
        devices,
        leaseSeconds: args['lease-seconds'],
        partitionBy: args['partition-by'],
        s3: args['s3-endpoint'] ? { endpoint: args['s3-endpoint'] } : {},
        models: parseModels(args.model, args['model-name']),
        tokenizer: args.tokenizer,
        inputs: args.input,
        output: args.output,
        textField: args['text-field'],
        idField: args['id-field'],
        context: args.context,
        stride: args.stride,
        batchTokens: args['batch-tokens'],
        format: args.format,
        device: args.device,
        deviceId: args['device-id'],
        appendEos: args['append-eos'],
        eosToken: args['eos-token'],
        entropy: args.entropy,
        unitDocs: args['unit-docs'],
        maxRejectRatio: args['max-reject-ratio'],
        overwrite: args.overwrite,
        rescoreChanged: args['rescore-changed'],
        cacheDir: args['cache-dir'],
        threads: args.threads,
        progress: args.progress,
      });
    } catch (e) {
      stopHandling?.();
      const s = (e as { summary?: RunSummary }).summary;
      if (s) printSummary(s, args.json);
      process.exitCode = exitCodeOf(e);
      throw e;
    }
    stopHandling?.();
    printSummary(summary, args.json);
  },
};

function printSummary(s: RunSummary, json: boolean): void {
  if (json) {
    process.stdout.write(JSON.stringify({ output: s.output, run: s.run, totals: s.manifest.totals, shards: s.manifest.shards }) + '\n');
    return;
  }
  const t = s.manifest.totals;
  const r = s.run;
  const lines = [
    `rho score: wrote ${s.output}`,
    `  this run: ${r.units_written} units written, ${r.units_skipped} already done` +
      (r.units_other_rank ? `, ${r.units_other_rank} belong to other ranks` : '') +
      (r.units_claimed_elsewhere ? `, ${r.units_claimed_elsewhere} claimed by other live runners (rerun later to pick up any they leave)` : '') +
      `; ${r.docs_in} documents in = ${r.scored} scored + ${r.rejected} rejected`,
    `            ${r.tokens} tokens (${r.scored_tokens} scored) in ${fmtDuration(r.wall_seconds)}, ${Math.round(r.tokens_per_second)} scored tokens/s, padding ${(r.padding_fraction * 100).toFixed(1)}%`,
    `  output dir: ${t.units_done} units, ${t.docs_in} documents in = ${t.scored} scored + ${t.rejected} rejected, ${t.tokens} tokens`,
  ];
  for (const sh of s.manifest.shards) lines.push(`    ${sh.source}: ${sh.docs_in} in = ${sh.scored} scored + ${sh.rejected} rejected, ${sh.tokens} tokens -> ${sh.key}/`);
  process.stdout.write(lines.join('\n') + '\n');
}
