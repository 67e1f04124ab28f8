// `rho manifest OUTPUT`: (re)build manifest.json from the rank summaries and completion records, read in
// parallel. The last rank to finish does the same by itself; this is for a launcher's follow-up step, or by
// hand after ranks were stopped or rerun out of order.
import type { CommandModule } from 'yargs';
import { writeDirManifest } from '../../pipeline/run/manifest.js';
import { openOutputStore } from '../../pipeline/io/open.js';
import { ConfigError, exitCodeOf } from '../../schemas/errors.js';

interface ManifestArgs {
  output: string;
  's3-endpoint'?: string;
  json: boolean;
}

export const manifestCommand: CommandModule<object, ManifestArgs> = {
  command: 'manifest <output>',
  describe: 'Build manifest.json of an output dir from its rank summaries and completion records (what the last rank does at its end)',
  builder: (y) =>
    y
      .positional('output', { type: 'string', demandOption: true, describe: 'Output dir or s3://bucket/prefix of a `rho score` run' })
      .option('s3-endpoint', { type: 'string', describe: 'S3-compatible endpoint URL (default: AWS configuration)' })
      .option('json', { type: 'boolean', default: false, describe: 'Print the manifest totals and what was read as JSON on stdout' }) as never,
  handler: async (a) => {
    try {
      const started = performance.now();
      let store;
      try {
        store = await openOutputStore(a.output, a['s3-endpoint'] ? { endpoint: a['s3-endpoint'] } : {});
      } catch (e) {
        throw new ConfigError((e as Error).message);
      }
      const { manifest, stats } = await writeDirManifest(store, { runMeta: { built_by: 'rho manifest' } });
      const seconds = (performance.now() - started) / 1000;
      const t = manifest.totals;
      if (a.json) process.stdout.write(JSON.stringify({ output: store.root, totals: t, read: stats, seconds }) + '\n');
      else {
        process.stdout.write(
          `rho manifest: wrote ${store.root}/manifest.json in ${seconds.toFixed(1)} s\n` +
          `  ${t.units_done} units, ${t.docs_in} documents in = ${t.scored} scored + ${t.rejected} rejected, ${t.tokens} tokens, over ${t.shards} shards\n` +
          `  read ${stats.summaries_read} rank summaries and ${stats.records_read} records not in a summary (${stats.listed} records listed)\n`,
        );
      }
    } catch (e) {
      process.exitCode = exitCodeOf(e);
      throw e;
    }
  },
};
