// The run identity: what fixes the meaning of an output dir. It is written to `_rho/config.json` by the first
// run; a rerun with another identity is refused (or starts over with --overwrite), so resume never mixes
// results of two configurations. Its sha256 is in every completion record.
import { LAYOUT } from '../../schemas/layout.js';
import { ConfigError } from '../../schemas/errors.js';
import type { OutputStore } from '../../schemas/store.js';
import type { OutputFormat } from '../../stages/write.js';
import type { ScoreDtype } from '../../schemas/score-dtype.js';

export interface RunIdentity {
  schema_version: number;
  models: { name: string; sha256: string }[];
  tokenizer_sha256: string;
  context: number;
  stride: number;
  special_tokens: { post_processor: true; append_eos: boolean; eos_id: number | null };
  entropy: boolean;
  text_field: string;
  id_field: string | null;
  unit_docs: number;
  format: OutputFormat;
  /** Names of the document stages before tokenize (API only; absent when there are none). */
  transforms?: string[];
  /** Present only when not float32, so float32 dirs written before the option existed stay resumable. */
  score_dtype?: ScoreDtype;
}

/** Record the run identity in the output dir, or refuse a dir made with another one. */
export async function claimOutputDir(store: OutputStore, identityJson: string, overwrite: boolean): Promise<void> {
  const existing = await store.read(LAYOUT.config);
  const mine = new TextEncoder().encode(identityJson + '\n');
  if (existing && new TextDecoder().decode(existing) !== identityJson + '\n') {
    if (!overwrite) {
      const before = JSON.parse(new TextDecoder().decode(existing)) as Record<string, unknown>;
      const after = JSON.parse(identityJson) as Record<string, unknown>;
      const diffs = Object.keys({ ...before, ...after }).filter((k) => JSON.stringify(before[k]) !== JSON.stringify(after[k]));
      throw new ConfigError(`output dir ${store.root} holds results of another configuration (differs in: ${diffs.join(', ')}); use another --output, or --overwrite to delete them and start over`);
    }
    for (const rel of await store.list('')) {
      if (rel.startsWith('_rho/') || rel === LAYOUT.manifest || /\/part-\d{5}\.(parquet|arrow)$/.test(rel)) await store.remove(rel);
    }
  }
  if (!existing || overwrite) {
    if (existing) await store.writeAtomic(LAYOUT.config, mine);
    else await store.createExclusive(LAYOUT.config, mine);
  }
  // Another runner may have created it first with a different identity.
  const now = await store.read(LAYOUT.config);
  if (now && new TextDecoder().decode(now) !== identityJson + '\n') {
    throw new ConfigError(`output dir ${store.root} was just claimed by a run of another configuration`);
  }
}
