// Committing a unit exactly once, without assuming that two runners of one unit write the same bytes (a GPU
// does not: kernels depend on batch shape). Protocol:
//
// 1. Stage: the data file is written (streamed as its row groups fill, or whole) under `_rho/staged/<unit>.<sha16>.<format>.staged`, named by its own
//    content hash, so runners with different bytes never share a staged file, and invisible to
//    `read_parquet('DIR/**/*.parquet')` (the name does not end in .parquet). Rejects (a function of the
//    input bytes alone) are written to their fixed path. A streamed file is written under a temp name and
//    renamed to its staged name only once it is complete and hashed: a half-written file is never vouched for.
// 2. Fence: a runner whose claim lease has run out (it was paused, another runner may have taken over)
//    stops here and deletes its staged file.
// 3. Decide: the completion record (which names the data file and its sha256) is created exclusively
//    (link(2) locally, If-None-Match: * on S3). One runner wins; the record never changes afterwards.
// 4. Publish: the winner moves its staged file to the data file's name (rename; S3: copy + delete). A loser
//    deletes its staged file unless it holds the winner's very bytes (then it is the winner's file).
//
// A crash between 3 and 4 leaves a record and the staged file it vouches for: the next runner of the unit's
// rank publishes it (recoverStaged). A crash before 3 leaves a staged file without record: deleted once no
// live claim on the unit remains. So `DIR/**/*.parquet` only ever holds files whose record vouches for them.
import type { OutputStore } from '../../schemas/store.js';
import { LAYOUT, formatOf, type CompletionRecord } from '../../schemas/layout.js';
import { sha256 } from '../../stages/write.js';
import { crashPoint } from '../../schemas/crashpoints.js';
import { isLive, readClaims } from './claims.js';
import { READ_CONCURRENCY } from './records.js';
import { mapLimit } from '../io/parallel.js';

export const STAGED_DIR = '_rho/staged';

export const stagedPath = (unit: string, sha: string, format: string): string => `${STAGED_DIR}/${unit}.${sha.slice(0, 16)}.${format}.staged`;
// A staged file, or the temp file of one a crash left mid-write (local stores write a temp, then rename).
const STAGED_NAME = /^_rho\/staged\/(.+)\.([0-9a-f]{16})\.(parquet|arrow)\.staged(\.\d+\.[0-9a-z]+\.tmp)?$/;

export interface UnitOutput {
  /** The data file's path (relative to the output root) once published. */
  file: string;
  /** The data file's bytes, staged here; or, streamed, the file already staged at `staged.path`. */
  bytes?: Uint8Array;
  staged?: { path: string; sha256: string; bytes: number };
  /** The rejects file (a function of the input bytes alone, so the same for every runner). */
  rejects: { file: string; bytes: Uint8Array } | null;
  /** The record's counts; file, bytes, sha256 and rejects_file are filled in here. */
  record: Omit<CompletionRecord, 'file' | 'bytes' | 'sha256' | 'rejects_file'>;
}

export type CommitResult = { won: true; record: CompletionRecord } | { won: false; record: CompletionRecord | null; why: 'lease-lost' | 'lost-race' };

/**
 * Commit one unit (see the protocol above). `stillOwned` is the fence: false when this runner's claim lease
 * ran out before the record could be created.
 */
export async function commitUnit(store: OutputStore, out: UnitOutput, stillOwned: () => boolean): Promise<CommitResult> {
  const r = out.record;
  const file = out.file;
  let sha: string;
  let size: number;
  let staged: string;
  if (out.staged) {
    // Streamed: complete, hashed and renamed to its staged name by the caller, which owns it until published.
    ({ path: staged, sha256: sha, bytes: size } = out.staged);
  } else {
    if (!out.bytes) throw new Error('internal: a unit output needs bytes or a staged file');
    sha = sha256(out.bytes);
    size = out.bytes.length;
    staged = stagedPath(r.unit, sha, formatOf(file));
    await store.writeAtomic(staged, out.bytes);
  }
  crashPoint('unit-data-written');
  if (out.rejects) {
    await store.writeAtomic(out.rejects.file, out.rejects.bytes);
    crashPoint('unit-rejects-written');
  }
  // Field order as before this protocol (records stay byte-identical to older runs on CPU).
  const record: CompletionRecord = {
    unit: r.unit, source: r.source, part: r.part, first_row: r.first_row,
    docs_in: r.docs_in, scored: r.scored, rejected: r.rejected, tokens: r.tokens, scored_tokens: r.scored_tokens,
    file, bytes: size, sha256: sha, rejects_file: out.rejects?.file ?? null, config_sha256: r.config_sha256,
  };
  if (!stillOwned()) {
    // A streamed file stays for the caller (it may claim the unit again and commit it); bytes can be re-staged.
    if (!out.staged) await store.remove(staged);
    return { won: false, record: null, why: 'lease-lost' };
  }
  const done = `${LAYOUT.doneDir}/${r.unit}.json`;
  const won = await store.createExclusive(done, new TextEncoder().encode(JSON.stringify(record, null, 2) + '\n'));
  if (!won) {
    const bytes = await store.read(done);
    const winner = bytes ? (JSON.parse(new TextDecoder().decode(bytes)) as CompletionRecord) : null;
    if (winner?.sha256 !== sha) await store.remove(staged);
    return { won: false, record: winner, why: 'lost-race' };
  }
  crashPoint('unit-record-written');
  await publish(store, staged, out, done);
  crashPoint('unit-published');
  return { won: true, record };
}

/**
 * Move the staged file into place. If it is gone, a recovering runner moved it already (it publishes only the
 * file its record names); with the bytes in memory they are written again. A streamed file that is neither
 * staged nor published was deleted (its runner's lease had run out): the record is withdrawn, so that the
 * unit is not done and a rerun scores it again, and the run fails.
 */
async function publish(store: OutputStore, staged: string, out: UnitOutput, record: string): Promise<void> {
  if (await store.rename(staged, out.file)) return;
  if (out.bytes) return store.writeAtomic(out.file, out.bytes);
  if (await store.exists(out.file)) return;
  await store.remove(record);
  throw new Error(`unit ${out.record.unit}: its staged data file ${staged} vanished before it was published (its claim lease had run out?); its completion record was withdrawn: rerun to score the unit again`);
}

/**
 * After a crash: publish staged files whose record vouches for them, delete the others (a loser's bytes, or
 * a runner that died before its record) when no live claim holds their unit. `mine` limits the work to the
 * units this rank owns. One listing of `_rho/staged/` (empty in a healthy dir), plus reads per staged file.
 */
export async function recoverStaged(store: OutputStore, mine: (unit: string) => boolean): Promise<{ published: number; deleted: number }> {
  const staged = (await store.list(STAGED_DIR)).map((rel) => ({ rel, m: STAGED_NAME.exec(rel) })).filter((x) => x.m && mine(x.m[1]));
  let published = 0;
  let deleted = 0;
  await mapLimit(staged, READ_CONCURRENCY, async ({ rel, m }) => {
    const unit = m![1];
    const bytes = m![4] ? null : await store.read(`${LAYOUT.doneDir}/${unit}.json`);
    if (bytes) {
      const rec = JSON.parse(new TextDecoder().decode(bytes)) as CompletionRecord;
      if (rec.sha256.startsWith(m![2])) {
        // The record's own bytes, never moved into place: the winner died between record and publish.
        if (await store.rename(rel, rec.file)) published++;
        return;
      }
      await store.remove(rel);
      deleted++;
      return;
    }
    // No record: a runner stopped before deciding. Its staged file may still win if it is alive.
    const top = (await readClaims(store, unit)).at(-1);
    if (top && isLive(top)) return;
    await store.remove(rel);
    deleted++;
  });
  return { published, deleted };
}
