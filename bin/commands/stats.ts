import type { CommandModule } from 'yargs';
import { computeStats, DEFAULT_RATIOS, DEFAULT_MAX_EXACT_VALUES } from '../../inspect/stats.js';
import { formatStats } from '../../inspect/stats-table.js';

interface StatsArgs {
  dir: string;
  ratio: number[];
  by: string[];
  reference?: string;
  'max-exact-values': number;
  'sketch-alpha': number;
  json: boolean;
  progress: boolean;
}

export const statsCommand: CommandModule<object, StatsArgs> = {
  command: 'stats <dir>',
  describe: 'Token/document counts, loss and excess-loss quantiles, histograms and the selection cut of each ratio (the threshold rho select applies)',
  builder: (y) =>
    y
      .usage('$0 stats OUTPUT_DIR [--ratio 0.6 ...] [--by COLUMN ...] [--json]')
      .positional('dir', { type: 'string', demandOption: true, describe: 'Output dir of `rho score` (or `rho select`)' })
      .option('ratio', { type: 'number', array: true, default: DEFAULT_RATIOS, describe: 'Selection ratios k: report the threshold `rho select --ratio k` applies (losses: kept at or below it; excess loss: kept at or above it)' })
      .option('by', { type: 'string', array: true, default: [], describe: 'Also break down by these scalar columns (always by `source`)' })
      .option('reference', { type: 'string', describe: 'Model that excess loss is measured against (default: `ref` if present, else the first model)' })
      .option('max-exact-values', { type: 'number', default: DEFAULT_MAX_EXACT_VALUES, describe: 'Keep up to this many values (all groups and metrics) for exact quantiles; beyond it quantiles come from a DDSketch (bounded memory)' })
      .option('sketch-alpha', { type: 'number', default: 0.005, describe: 'Relative error of the DDSketch quantiles' })
      .option('json', { type: 'boolean', default: false, describe: 'Print the statistics as JSON on stdout' })
      .option('progress', { type: 'boolean', default: true, describe: 'Progress on stderr (--no-progress to silence)' }) as never,
  handler: async (args) => {
    const stats = await computeStats(args.dir, {
      ratios: args.ratio,
      by: args.by,
      reference: args.reference,
      maxExactValues: args['max-exact-values'],
      sketchAlpha: args['sketch-alpha'],
      progress: args.progress,
    });
    process.stdout.write(args.json ? JSON.stringify(stats, null, 2) + '\n' : formatStats(stats) + '\n');
  },
};
