// The rho CLI. Each command lives in its own module under bin/commands/ and registers itself here.
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { exitCodeOf, EXIT } from '../schemas/errors.js';
import { commands } from './commands/index.js';

const cli = yargs(hideBin(process.argv))
  .scriptName('rho')
  .usage('$0 <command> [options]\n\nOffline per-token reference scores for Rho-1 Selective Language Modeling.')
  .command(commands)
  .demandCommand(1, 'name a command (see --help)')
  .strict()
  .recommendCommands()
  .wrap(Math.min(110, process.stdout.columns || 110))
  .epilogue('Exit codes: 0 done; 1 runtime failure; 2 bad configuration or input (nothing was done); 3 too many rejected documents (--max-reject-ratio); 4 verify found problems.')
  .fail((msg, err, y) => {
    if (err) throw err;
    console.error(`${y.help() && ''}rho: ${msg}\n(run with --help for usage)`);
    process.exit(EXIT.config);
  });

try {
  await cli.parseAsync();
} catch (e) {
  const code = exitCodeOf(e);
  console.error(`rho: ${(e as Error).message}`);
  if (code === EXIT.runtime && process.env.RHO_DEBUG) console.error((e as Error).stack);
  process.exitCode = code;
}
