import type { CommandModule } from 'yargs';
// `rho verify`: parses flags and calls verify() from the API (index.ts); prints its report, exit 4 when not ok.
import { verify, EXIT, type Finding, type VerifyReport } from '../../index.js';

interface VerifyArgs {
  output: string;
  inputs?: boolean;
  'inputs-base'?: string;
  'max-per-file': number;
  json: boolean;
  progress: boolean;
  's3-endpoint'?: string;
}

export const verifyCommand: CommandModule<object, VerifyArgs> = {
  command: 'verify <output>',
  describe: 'Check an output dir: files against completion records, the output contract row by row, and every input document accounted for',
  builder: (y) =>
    y
      .positional('output', { type: 'string', demandOption: true, describe: 'Output dir (or s3://bucket/prefix) written by rho score' })
      .option('inputs', { type: 'boolean', describe: 'Re-read the input shards and check every record is scored or rejected exactly once (default: on when all inputs are reachable; --no-inputs to skip)' })
      .option('inputs-base', { type: 'string', describe: 'Directory that relative input paths are resolved against (the directory rho score ran in; default: the current one)' })
      .option('max-per-file', { type: 'number', default: 20, describe: 'Findings listed per check and file; the rest are counted' })
      .option('json', { type: 'boolean', default: false, describe: 'Print the report as JSON on stdout' })
      .option('progress', { type: 'boolean', default: true, describe: 'Progress line on stderr (--no-progress to silence)' })
      .option('s3-endpoint', { type: 'string', describe: 'Endpoint of an S3-compatible store, for an s3:// output and s3:// inputs' })
      .epilogue(`Exit codes: 0 clean (warnings allowed); ${EXIT.verifyFailed} problems found; ${EXIT.config} not a rho output dir.`) as never,
  handler: async (args) => {
    const report = await verify({
      output: args.output,
      inputs: args.inputs ?? 'auto',
      inputsBase: args['inputs-base'],
      maxPerFile: args['max-per-file'],
      progress: args.progress,
      s3Endpoint: args['s3-endpoint'],
    });
    process.stdout.write(args.json ? JSON.stringify(report, null, 2) + '\n' : formatReport(report));
    if (!report.ok) process.exitCode = EXIT.verifyFailed;
  },
};

function where(x: Finding): string {
  return [x.file || null, x.row !== undefined ? `row ${x.row}` : null, x.field ? `field ${x.field}` : null].filter(Boolean).join(': ');
}

export function formatReport(r: VerifyReport): string {
  const out: string[] = [];
  for (const x of r.errors) out.push(`error [${x.check}] ${where(x)}: ${x.message}`);
  for (const x of r.warnings) out.push(`warning [${x.check}] ${where(x)}: ${x.message}`);
  if (r.suppressed.errors || r.suppressed.warnings) out.push(`(${r.suppressed.errors} more errors and ${r.suppressed.warnings} more warnings not listed; raise --max-per-file or use --json)`);
  const c = r.checked;
  const inputs = r.inputs.checked.length
    ? `${r.inputs.checked.length} input shard(s) re-read`
    : r.inputs.unreachable.length
      ? `inputs NOT checked (${r.inputs.unreachable.length} not reachable: ${r.inputs.unreachable.slice(0, 3).join(', ')}${r.inputs.unreachable.length > 3 ? ', …' : ''}; see --inputs-base)`
      : 'inputs not checked';
  out.push(`rho verify: ${r.output}: ${c.units} units, ${c.rows} rows, ${c.tokens} tokens, ${c.rejects} rejects in ${c.shards} shard(s); ${inputs}`);
  out.push(r.ok ? `OK (${r.warnings.length + r.suppressed.warnings} warning(s))` : `FAILED: ${r.errors.length + r.suppressed.errors} error(s), ${r.warnings.length + r.suppressed.warnings} warning(s)`);
  return out.join('\n') + '\n';
}
