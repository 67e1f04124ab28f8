// The inputs: re-read every input shard and account for each of its records (one scored row or one reject).
import { readShard, readDocuments, InputReadError, type ShardOpener } from '../../../stages/read.js';
import type { DocumentSource, ReadItem } from '../../../schemas/types.js';
import { COL } from '../../../schemas/contract.js';
import type { S3Options } from '../../io/s3.js';
import { describeFingerprint, fingerprint, sameInput, type InputFingerprint } from '../../io/input-checks.js';
import type { Findings, RunIdentityView, ShardSeen } from './report.js';

/** An input to re-read: a shard file (fingerprinted: size + content hash, or ETag) or a document source. */
export interface InputToCheck {
  fingerprint(): Promise<InputFingerprint | null>;
  read(): AsyncIterable<ReadItem>;
}

export function fileToCheck(path: string, config: RunIdentityView, opener: ShardOpener, s3?: S3Options): InputToCheck {
  return {
    fingerprint: () => fingerprint(path, s3), // local file (sha256 of its bytes) or s3:// object (a HEAD request)
    read: () => readShard(path, { textField: config.text_field, idField: config.id_field ?? undefined }, opener),
  };
}

export function sourceToCheck(src: DocumentSource): InputToCheck {
  return { fingerprint: async () => null, read: () => readDocuments(src) };
}

/** Re-read an input: every record must be one scored row (same id) or one reject, and nothing else. */
export async function checkInput(input: InputToCheck, shard: ShardSeen, config: RunIdentityView, bytesAtScoring: number | undefined, f: Findings, scoredFrom?: InputFingerprint): Promise<void> {
  // The input as it is now against what its units were scored from (_rho/inputs/<key>.json).
  let now: InputFingerprint | null;
  try {
    now = await input.fingerprint();
  } catch (e) {
    f.error('input', shard.source, `input cannot be read (${(e as Error).message.split('\n')[0]}): deleted or moved after scoring? Its ${shard.records.length} unit(s) cannot be checked against it`);
    return;
  }
  if (now && scoredFrom && shard.records.length > 0 && !sameInput(scoredFrom, now)) {
    f.error('input-changed', shard.source, `input changed after it was scored: now ${describeFingerprint(now)}, its ${shard.records.length} unit(s) were scored from ${describeFingerprint(scoredFrom)}; rerun rho score with --rescore-changed`);
  } else if (now && !scoredFrom && bytesAtScoring !== undefined && now.bytes !== bytesAtScoring) {
    f.error('input-changed', shard.source, `input is ${now.bytes} bytes now, ${bytesAtScoring} when it was scored (manifest.json): it changed after scoring`);
  }
  const docsIn = shard.records.reduce((a, r) => a + r.docs_in, 0);
  // Rows of units with no record are reported once as a missing unit, not row by row.
  const doneParts = new Set(shard.records.filter((r) => !shard.unreadableParts.has(r.part)).map((r) => r.part));
  if (shard.brokenParts.size > 0) {
    f.warn('input', shard.source, `input not fully checked: ${shard.brokenParts.size} unit(s) of this shard have an unreadable completion record`);
  }
  const inDoneUnit = (row: number) => doneParts.has(Math.floor(row / config.unit_docs));
  let count = 0;
  try {
    for await (const item of input.read()) {
      count++;
      if (item.kind === 'doc') {
        const { row, id } = item.doc;
        const out = shard.scoredIds.get(row);
        if (out === undefined) {
          if (inDoneUnit(row)) f.error('input', shard.source, `input row ${row} (id ${JSON.stringify(id)}) is a document, but the output has ${shard.rejectRows.has(row) ? 'a reject' : 'nothing'} for it`, { row, field: COL.id });
        } else if (out !== id) {
          f.error('input', shard.source, `input row ${row} has id ${JSON.stringify(id)}, the output row has ${JSON.stringify(out)}`, { row, field: COL.id });
        }
      } else {
        const { row } = item.reject;
        if (shard.scoredIds.has(row)) f.error('input', shard.source, `input row ${row} is rejected when read now (${item.reject.reason}), but the output has it scored`, { row, field: item.reject.field });
        else if (!shard.rejectRows.has(row) && inDoneUnit(row)) f.error('input', shard.source, `input row ${row} is rejected when read (${item.reject.reason}) but no rejects file lists it`, { row, field: item.reject.field });
      }
    }
  } catch (e) {
    if (!(e instanceof InputReadError)) throw e;
    f.error('input', shard.source, `input could not be read to the end (${e.cause.message}); checked its first ${count} records only`);
    return;
  }
  if (count !== docsIn && shard.brokenParts.size === 0) {
    // The rows no completed unit holds, as ranges (a missing unit may sit anywhere, not only at the end).
    const covered = new Set(shard.records.map((r) => r.part));
    const holes: string[] = [];
    for (let p = 0; p * config.unit_docs < count; p++) {
      if (!covered.has(p)) holes.push(`${p * config.unit_docs}..${Math.min(count, (p + 1) * config.unit_docs) - 1}`);
    }
    f.error('accounting', shard.source, `input has ${count} records, the output accounts for ${docsIn} (docs_in summed over ${shard.records.length} completed units)${holes.length ? `: rows ${holes.slice(0, 5).join(', ')}${holes.length > 5 ? ` and ${holes.length - 5} more ranges` : ''} are not in the output` : ''}`);
  }
}
