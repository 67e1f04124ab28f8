// `rho status OUTPUT`: units done / claimed / failed / missing, tokens scored, ranks with work left.
import type { CommandModule } from 'yargs';
import { runStatus, formatStatus } from '../../pipeline/launch/status.js';
import { openOutputStore } from '../../pipeline/io/open.js';
import { ConfigError, exitCodeOf } from '../../schemas/errors.js';

interface StatusArgs {
  output: string;
  input?: string[];
  'world-size'?: number;
  's3-endpoint'?: string;
  json: boolean;
}

export const statusCommand: CommandModule<object, StatusArgs> = {
  command: 'status <output>',
  describe: 'Show how far a run is: units done / claimed / failed / missing, tokens scored, ranks with work left',
  builder: (y) =>
    y
      .positional('output', { type: 'string', demandOption: true, describe: 'Output dir or s3://bucket/prefix of a `rho score` run' })
      .option('input', { type: 'string', array: true, describe: 'Input shards/globs (default: the list in manifest.json); needed to count units of shards not started yet' })
      .option('world-size', { type: 'number', describe: 'World size to assign units to ranks (default: the recorded one, _rho/world.json)' })
      .option('s3-endpoint', { type: 'string', describe: 'S3-compatible endpoint URL (default: AWS configuration)' })
      .option('json', { type: 'boolean', default: false, describe: 'Print the status as JSON on stdout' }) as never,
  handler: async (a) => {
    try {
      const s3 = a['s3-endpoint'] ? { endpoint: a['s3-endpoint'] } : {};
      let store;
      try {
        store = await openOutputStore(a.output, s3);
      } catch (e) {
        throw new ConfigError((e as Error).message);
      }
      const s = await runStatus(store, { inputs: a.input, worldSize: a['world-size'], s3 });
      process.stdout.write(a.json ? JSON.stringify(s) + '\n' : formatStatus(s));
    } catch (e) {
      process.exitCode = exitCodeOf(e);
      throw e;
    }
  },
};
