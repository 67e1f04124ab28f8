import type { CommandModule } from 'yargs';
import { writeFileAtomic } from '../../pipeline/io/local.js';
import { makeReport } from '../../inspect/report.js';
import { DEFAULT_RATIOS, DEFAULT_MAX_EXACT_VALUES } from '../../inspect/stats.js';

interface ReportArgs {
  dir: string;
  other?: string;
  out: string;
  ratio: number[];
  by: string[];
  reference?: string;
  samples: number;
  seed: number;
  metric?: 'loss' | 'excess';
  model?: string;
  'max-tokens': number;
  'max-groups': number;
  'max-exact-values': number;
  tokenizer?: string;
  'text-field'?: string;
  decode: boolean;
  title?: string;
  progress: boolean;
}

export const reportCommand: CommandModule<object, ReportArgs> = {
  command: 'report <dir> [other]',
  describe: 'Write one self-contained HTML page: the selection cut, loss by window position, distributions per source, reference vs base loss, selected share, document means, dropped tokens, sample heatmaps; with two dirs, both overlaid and their differences',
  builder: (y) =>
    y
      .usage('$0 report OUTPUT_DIR [OTHER_DIR] --out report.html [options]')
      .positional('dir', { type: 'string', demandOption: true, describe: 'Output dir of `rho score` (or `rho select`)' })
      .positional('other', { type: 'string', describe: 'A second output dir (e.g. another reference model or context): plots overlaid, per-source and per-document differences' })
      .option('out', { type: 'string', demandOption: true, describe: 'HTML file to write (no network needed to view it)' })
      .option('ratio', { type: 'number', array: true, default: DEFAULT_RATIOS, describe: 'Selection ratios whose cuts (the thresholds rho select applies) are drawn' })
      .option('by', { type: 'string', array: true, default: [], describe: 'Also break down by these scalar columns' })
      .option('reference', { type: 'string', describe: 'Reference model for excess loss (default: `ref` if present, else the first model)' })
      .option('samples', { type: 'number', default: 6, describe: 'Sample documents shown as token heatmaps (seeded, see --seed)' })
      .option('seed', { type: 'number', default: 1, describe: 'Seed of the document sample' })
      .option('metric', { choices: ['loss', 'excess'] as const, describe: 'Colour heatmaps by loss or excess loss (default: excess with two models, else loss)' })
      .option('model', { type: 'string', describe: 'Model whose loss/excess colours the heatmaps' })
      .option('max-tokens', { type: 'number', default: 1500, describe: 'Show at most this many tokens per sample document' })
      .option('max-groups', { type: 'number', default: 24, describe: 'At most this many groups (all, sources, --by values) get table rows, and this many sources are drawn one by one' })
      .option('max-exact-values', { type: 'number', default: DEFAULT_MAX_EXACT_VALUES, describe: 'Exact quantiles up to this many values, DDSketch beyond (see rho stats)' })
      .option('tokenizer', { type: 'string', describe: 'tokenizer.json (default: the path in the files\' rho.tokenizer metadata)' })
      .option('text-field', { type: 'string', describe: 'Text field of the source records (default: the run\'s)' })
      .option('decode', { type: 'boolean', default: false, describe: 'Decode token_ids instead of re-reading source documents' })
      .option('title', { type: 'string', describe: 'Page title' })
      .option('progress', { type: 'boolean', default: true, describe: 'Progress on stderr (--no-progress to silence)' }) as never,
  handler: async (args) => {
    const r = await makeReport(args.other ? [args.dir, args.other] : args.dir, {
      ratios: args.ratio, by: args.by, reference: args.reference, maxExactValues: args['max-exact-values'], progress: args.progress,
      samples: args.samples, seed: args.seed, metric: args.metric, model: args.model, maxTokens: args['max-tokens'], maxGroups: args['max-groups'],
      tokenizer: args.tokenizer, textField: args['text-field'], decodeOnly: args.decode, title: args.title,
    });
    for (const w of r.warnings) process.stderr.write(`rho report: warning: ${w}\n`);
    writeFileAtomic(args.out, new TextEncoder().encode(r.html));
    process.stderr.write(`rho report: wrote ${args.out} (${(r.html.length / 1024).toFixed(0)} KiB; ${r.runs.length} dir(s), ${r.runs[0].stats.metrics.length} metrics, ${r.docs.length} sample documents)\n`);
  },
};
