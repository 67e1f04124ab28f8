import type { CommandModule } from 'yargs';
// `rho export`: parses flags and calls exportMemmap() from the API (index.ts); prints its header.
import { exportMemmap, exitCodeOf, type ExportSummary } from '../../index.js';
import { fmtDuration } from '../../pipeline/run/progress.js';

interface ExportArgs {
  input: string;
  format: 'memmap';
  output: string;
  'score-dtype': 'float32' | 'float16' | 'bfloat16';
  columns?: string[];
  selection?: string;
  overwrite: boolean;
  progress: boolean;
  json: boolean;
}

export const exportCommand: CommandModule<object, ExportArgs> = {
  command: 'export <input>',
  describe: 'Export a score (or select) output dir as flat little-endian arrays for numpy/PyTorch memory-mapping',
  builder: (y) =>
    y
      .usage('$0 export INPUT_DIR --format memmap --output DIR [--selection SELECT_DIR] [--score-dtype float32|float16|bfloat16] [--columns ref_logprob,...]')
      .positional('input', { type: 'string', demandOption: true, describe: 'Output dir of `rho score` or `rho select`' })
      .option('format', { choices: ['memmap'] as const, demandOption: true, describe: 'memmap: token_ids.bin, <column>.bin, doc_offsets.bin, docs.jsonl, header.json' })
      .option('output', { type: 'string', demandOption: true, describe: 'Dir to create (written to a temp dir, then renamed into place)' })
      .option('score-dtype', { choices: ['float32', 'float16', 'bfloat16'] as const, default: 'float32' as const, describe: 'dtype of the score arrays (NaN where the score is null); bfloat16 = the high 16 bits of the float32 (rho_torch reads it; numpy has no bfloat16)' })
      .option('selection', { type: 'string', describe: 'A compact selection dir (rho select INPUT --compact) made from INPUT: adds labels (derived: token id where selected, -100 elsewhere) and select_mask' })
      .option('columns', { type: 'string', array: true, coerce: (v: string[]) => v.flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean), describe: 'Score columns to export, comma-separated (default: every <model>_logprob / <model>_entropy)' })
      .option('overwrite', { type: 'boolean', default: false, describe: 'Replace a non-empty --output dir' })
      .option('progress', { type: 'boolean', default: true, describe: 'Progress line on stderr (--no-progress to silence)' })
      .option('json', { type: 'boolean', default: false, describe: 'Print the header as JSON on stdout' }) as never,
  handler: async (args) => {
    let s: ExportSummary;
    try {
      s = await exportMemmap({
        input: args.input,
        output: args.output,
        scoreDtype: args['score-dtype'],
        selection: args.selection,
        columns: args.columns,
        overwrite: args.overwrite,
        progress: args.progress,
      });
    } catch (e) {
      process.exitCode = exitCodeOf(e);
      throw e;
    }
    if (args.json) {
      process.stdout.write(JSON.stringify({ output: s.output, files: s.files, wall_seconds: s.wall_seconds, header: s.header }) + '\n');
      return;
    }
    const h = s.header;
    const lines = [
      `rho export: wrote ${s.output} from ${s.files} score files in ${fmtDuration(s.wall_seconds)}`,
      `  ${h.n_docs} documents, ${h.n_tokens} tokens; vocab ${h.vocab_size} (${h.vocab_size_from}) -> token_ids ${h.token_dtype}`,
      ...Object.entries(h.columns).map(([name, c]) => `  ${name.padEnd(16)} ${c.file.padEnd(22)} ${c.dtype}`),
      `  ${'doc_offsets'.padEnd(16)} ${h.doc_offsets.file.padEnd(22)} uint64 [${h.n_docs + 1}]`,
    ];
    process.stdout.write(lines.join('\n') + '\n');
  },
};
