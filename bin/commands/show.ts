import type { CommandModule } from 'yargs';
import { ConfigError } from '../../schemas/errors.js';
import { openScoreSet } from '../../pipeline/io/score-files.js';
import { findDocuments, loadTextContext, documentText, type DocSelector } from '../../inspect/documents.js';
import { pickMetric, tokenScores, renderShow, heatmapJson, selectionLine } from '../../inspect/heatmap.js';
import { pickReference } from '../../inspect/stats.js';

interface ShowArgs {
  dir: string;
  id?: string;
  row?: number;
  sample?: number;
  seed: number;
  metric: 'loss' | 'excess';
  model?: string;
  reference?: string;
  tokenizer?: string;
  'text-field'?: string;
  decode: boolean;
  color: 'auto' | 'always' | 'never';
  boundaries: boolean;
  json: boolean;
}

export const showCommand: CommandModule<object, ShowArgs> = {
  command: 'show <dir>',
  describe: 'Print a scored document with every token coloured by its loss or excess loss (terminal heatmap)',
  builder: (y) =>
    y
      .usage('$0 show OUTPUT_DIR (--id ID | --row N | --sample N) [--metric loss|excess] [--model NAME]')
      .positional('dir', { type: 'string', demandOption: true, describe: 'Output dir of `rho score` (or `rho select`)' })
      .option('id', { type: 'string', describe: 'The document with this id' })
      .option('row', { type: 'number', describe: 'The N-th document of the dir (0-based; files in path order, rows in file order)' })
      .option('sample', { type: 'number', describe: 'N documents chosen at random (seeded, see --seed)' })
      .option('seed', { type: 'number', default: 1, describe: 'Seed for --sample' })
      .option('metric', { choices: ['loss', 'excess'] as const, default: 'loss' as const, describe: 'Colour by token loss (-logprob) or by excess loss (model - reference; needs two models)' })
      .option('model', { type: 'string', describe: 'Model whose loss (or excess) is shown (default: the reference, or for excess the other model)' })
      .option('reference', { type: 'string', describe: 'Reference model (default: `ref` if present, else the first model)' })
      .option('tokenizer', { type: 'string', describe: 'tokenizer.json to decode with (default: the path in the files\' rho.tokenizer metadata)' })
      .option('text-field', { type: 'string', describe: 'Text field of the source records (default: the run\'s, from _rho/config.json)' })
      .option('decode', { type: 'boolean', default: false, describe: 'Decode token_ids instead of re-reading the source document' })
      .option('color', { choices: ['auto', 'always', 'never'] as const, default: 'auto' as const, describe: 'ANSI colours: auto = when stdout is a TTY and NO_COLOR is unset' })
      .option('boundaries', { type: 'boolean', default: false, describe: 'Mark every token boundary in the text with a thin bar (│); in colour, runs of one colour always alternate text colour' })
      .option('json', { type: 'boolean', default: false, describe: 'Print text, segments and per-token scores as JSON (one object per line)' })
      .check((a) => {
        const n = [a.id, a.row, a.sample].filter((x) => x !== undefined).length;
        if (n !== 1) throw new ConfigError('give exactly one of --id ID, --row N, --sample N');
        return true;
      }) as never,
  handler: async (args) => {
    const set = await openScoreSet(args.dir);
    const reference = pickReference(set.models, args.reference);
    const metric = pickMetric(set.models, reference, args.metric, args.model);
    const ctx = loadTextContext(set, { tokenizer: args.tokenizer, textField: args['text-field'], decodeOnly: args.decode });
    for (const w of ctx.warnings) process.stderr.write(`rho show: warning: ${w}\n`);
    const sel: DocSelector = args.id !== undefined ? { id: args.id } : args.row !== undefined ? { index: args.row } : { sample: args.sample!, seed: args.seed };
    const docs = await findDocuments(set, sel);
    const color = args.color === 'always' || (args.color === 'auto' && Boolean(process.stdout.isTTY) && !process.env.NO_COLOR);
    const parts: string[] = [];
    for (const doc of docs) {
      const text = await documentText(doc, ctx);
      const view = { selection: selectionLine(set.files[0].metadata), doc, text, metric, scores: tokenScores(doc, metric), tokenText: (i: number) => ctx.tokenizer.idToToken(doc.tokenIds[i]) ?? `#${doc.tokenIds[i]}` };
      parts.push(args.json ? JSON.stringify(heatmapJson(view)) : renderShow(view, color, args.boundaries));
    }
    process.stdout.write(parts.join(args.json ? '\n' : '\n\n') + '\n');
  },
};
