// The inputs: re-read every input shard and account for each of its records (one scored row or one reject).
import { readShard, readDocuments, type ShardOpener } from '../../../stages/read.js';
import type { DocumentSource, ReadItem } from '../../../schemas/types.js';
import { COL } from '../../../schemas/contract.js';
import { shardKey, partName } from '../../../schemas/layout.js';
import type { Findings, RunIdentityView, ShardSeen } from './report.js';

/** An input to re-read: a shard file (its size is checked against the manifest) or a document source. */
export interface InputToCheck {
  size(): Promise<number | null>;
  read(): AsyncIterable<ReadItem>;
}

export function fileToCheck(path: string, config: RunIdentityView, opener: ShardOpener): InputToCheck {
  return {
    size: async () => (await opener.blob(path)).size, // local file or s3:// object (a HEAD request)
    read: () => readShard(path, { textField: config.text_field, idField: config.id_field ?? undefined }, opener),
  };
}

export function sourceToCheck(src: DocumentSource): InputToCheck {
  return { size: async () => null, read: () => readDocuments(src) };
}

/** Re-read an input: every record must be one scored row (same id) or one reject, and nothing else. */
export async function checkInput(input: InputToCheck, shard: ShardSeen, config: RunIdentityView, bytesAtScoring: number | undefined, f: Findings): Promise<void> {
  const size = await input.size();
  if (size !== null && bytesAtScoring !== undefined && size !== bytesAtScoring) {
    f.error('input-changed', shard.source, `input is ${size} bytes now, ${bytesAtScoring} when it was scored (manifest.json): it changed after scoring`);
  }
  const docsIn = shard.records.reduce((a, r) => a + r.docs_in, 0);
  // Rows of units with no record are reported once as a missing unit, not row by row.
  const doneParts = new Set(shard.records.filter((r) => !shard.unreadableParts.has(r.part)).map((r) => r.part));
  if (shard.brokenParts.size > 0) {
    f.warn('input', shard.source, `input not fully checked: ${shard.brokenParts.size} unit(s) of this shard have an unreadable completion record`);
  }
  const inDoneUnit = (row: number) => doneParts.has(Math.floor(row / config.unit_docs));
  let count = 0;
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
  if (count !== docsIn && shard.brokenParts.size === 0) {
    f.error('accounting', shard.source, `input has ${count} records, the output accounts for ${docsIn} (docs_in summed over ${shard.records.length} completed units)${count > docsIn ? `: rows ${docsIn}..${count - 1} are not in the output` : ''}`);
  }
}
