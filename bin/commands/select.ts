import type { CommandModule } from 'yargs';
// `rho select`: parses flags and calls select() from the API (index.ts); prints its report.
import { select, exitCodeOf, type SelectReport } from '../../index.js';
import { DEFAULT_BATCH_TOKENS, EXACT_LIMIT_TOKENS } from '../../pipeline/jobs/select.js';
import { fmtDuration } from '../../pipeline/run/progress.js';
import type { SelectBy, SelectScope } from '../../stages/select.js';

interface SelectArgs {
  input: string;
  output: string;
  ratio: number;
  by: SelectBy;
  scope: SelectScope;
  'batch-tokens': number;
  ref: string;
  base: string;
  format?: 'parquet' | 'arrow';
  compact: boolean;
  exact?: boolean;
  'sketch-accuracy': number;
  overwrite: boolean;
  progress: boolean;
  json: boolean;
}

export const selectCommand: CommandModule<object, SelectArgs> = {
  command: 'select <input>',
  describe: 'Mark the top k% of tokens by score (Rho-1 SLM): write a copy of a score dir with select_mask and labels',
  builder: (y) =>
    y
      .usage('$0 select INPUT_DIR --output DIR --ratio K --by ref_loss|excess --scope batch|global|document [options]')
      .positional('input', { type: 'string', demandOption: true, describe: 'Output dir of `rho score`' })
      .option('output', { type: 'string', demandOption: true, describe: 'New dir: same files and columns plus select_mask (list<bool>) and labels (list<int32>, -100 where not selected)' })
      .option('ratio', { type: 'number', demandOption: true, describe: 'k, the fraction of scored tokens to keep, in (0, 1]; Rho-1 used 0.6-0.7' })
      .option('by', { choices: ['ref_loss', 'excess'] as const, demandOption: true, describe: 'Score, higher kept: excess = L_base - L_ref (needs a base model column); ref_loss keeps the lowest reference loss' })
      .option('scope', { choices: ['batch', 'global', 'document'] as const, demandOption: true, describe: 'Where the top k% is taken: each training batch of --batch-tokens tokens (Rho-1), the whole dataset, or each document' })
      .option('batch-tokens', { type: 'number', default: DEFAULT_BATCH_TOKENS, describe: 'Tokens per training batch for --scope batch, counted in file/row order (Rho-1: ~1M)' })
      .option('ref', { type: 'string', default: 'ref', describe: 'Name of the reference model (column <ref>_logprob)' })
      .option('base', { type: 'string', default: 'base', describe: 'Name of the base model for --by excess (column <base>_logprob)' })
      .option('format', { choices: ['parquet', 'arrow'] as const, describe: 'Output format (default: the input file\'s)' })
      .option('compact', { type: 'boolean', default: false, describe: 'Write only the selection: source, row, select_mask (list<bool>) per score row, aligned row for row with the score files (same paths) and joinable on (source, row); no second copy of the scores. rho export INPUT --selection DIR and rho_torch take both dirs; labels are derived' })
      .option('exact', { type: 'boolean', describe: `--scope global: rank all scores in memory (exact count); --no-exact: use the quantile sketch. Default: exact up to ${EXACT_LIMIT_TOKENS} scored tokens` })
      .option('sketch-accuracy', { type: 'number', default: 0.005, describe: 'Relative error alpha of the global threshold when the sketch is used' })
      .option('overwrite', { type: 'boolean', default: false, describe: 'Replace a non-empty --output dir' })
      .option('progress', { type: 'boolean', default: true, describe: 'Progress on stderr (--no-progress to silence)' })
      .option('json', { type: 'boolean', default: false, describe: 'Print the report as JSON on stdout' }) as never,
  handler: async (args) => {
    let r: SelectReport;
    try {
      r = await select({
        input: args.input,
        output: args.output,
        ratio: args.ratio,
        by: args.by,
        scope: args.scope,
        batchTokens: args['batch-tokens'],
        ref: args.ref,
        base: args.base,
        format: args.format,
        compact: args.compact,
        exact: args.exact,
        sketchAccuracy: args['sketch-accuracy'],
        overwrite: args.overwrite,
        progress: args.progress,
      });
    } catch (e) {
      process.exitCode = exitCodeOf(e);
      throw e;
    }
    process.stdout.write(args.json ? JSON.stringify(r) + '\n' : formatReport(r));
  },
};

const num = (v: number) => (Number.isFinite(v) ? v.toPrecision(6) : String(v));
const pct = (v: number) => `${(v * 100).toFixed(2)}%`;

export function formatReport(r: SelectReport): string {
  const scope = r.scope === 'batch' ? `batch (${r.batch_tokens} tokens)` : r.scope;
  const lines = [`rho select: wrote ${r.output} (${r.files} files) in ${fmtDuration(r.wall_seconds)}`,
    `  ratio ${r.ratio}, by ${r.by} (score = ${r.score}, higher kept), scope ${scope}, ${r.mode === 'sketch' ? `sketch threshold (alpha ${r.sketch_accuracy}): score >= threshold` : 'exact: ceil(k*N) per scope, ties to earlier tokens'}`];
  const t = r.threshold;
  if (t === null) lines.push('  threshold: none (nothing selected)');
  else if (typeof t === 'number') lines.push(`  threshold: ${num(t)}`);
  else lines.push(`  threshold over ${t.count} ${r.scope === 'batch' ? 'batches' : 'documents'}: min ${num(t.min)}  median ${num(t.median)}  max ${num(t.max)}`);
  const rows = [['source', 'docs', 'tokens', 'scored', 'selected', 'fraction'],
    ...r.sources.map((s) => [s.source, s.docs, s.tokens, s.scored, s.selected, pct(s.fraction)]),
    ['total', r.totals.docs, r.totals.tokens, r.totals.scored, r.totals.selected, pct(r.totals.fraction)]].map((row) => row.map(String));
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  for (const row of rows) lines.push('  ' + row.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  '));
  return lines.join('\n') + '\n';
}
