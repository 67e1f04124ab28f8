// The rows of a data file: ids and rows in order, the window rule (which positions are null), value ranges,
// n_tokens and loss_mean, select columns.
import type { Data, Table } from 'apache-arrow';
import { COL, entropyColumn, lossMeanColumn, logprobColumn, IGNORE_INDEX } from '../../../schemas/contract.js';
import { nullPositionsByWindows } from '../../../schemas/window-rule-check.js';
import { LAYOUT, type CompletionRecord } from '../../../schemas/layout.js';
import { SCORE_DTYPE_ERROR, floatValues } from '../../../schemas/score-dtype.js';
import { LOGPROB_MAX, LOSS_MEAN_RTOL, type Findings, type RunIdentityView, type ShardSeen, type VerifyReport } from './report.js';

export function isValid(d: Data, i: number): boolean {
  return d.nullCount === 0 || d.getValid(i);
}

export function checkRows(rel: string, table: Table, rec: CompletionRecord, config: RunIdentityView, f: Findings, shard: ShardSeen, report: VerifyReport): void {
  const C = config.context;
  const S = config.stride;
  const models = config.models.map((m) => m.name);
  const lastRow = rec.first_row + rec.docs_in - 1;
  let prevRow = -1;
  let tokens = 0;
  let scoredTokens = 0;
  let rowIndex = 0;
  for (const batch of table.batches) {
    const col = (name: string) => batch.getChild(name)?.data[0] as Data | undefined;
    const ids = batch.getChild(COL.id)!;
    const sources = batch.getChild(COL.source)!;
    const rows = col(COL.row)!;
    const tok = col(COL.tokenIds)!;
    const nTok = col(COL.nTokens)!;
    const lists: { name: string; data: Data; kind: 'logprob' | 'entropy' }[] = [];
    for (const m of models) {
      lists.push({ name: logprobColumn(m), data: col(logprobColumn(m))!, kind: 'logprob' });
      if (config.entropy) lists.push({ name: entropyColumn(m), data: col(entropyColumn(m))!, kind: 'entropy' });
    }
    const mask = col(COL.selectMask);
    const labels = col(COL.labels);
    for (let i = 0; i < batch.numRows; i++, rowIndex++) {
      const row = Number((rows.values as BigInt64Array)[i]);
      const at = { row, field: COL.row };
      const id = ids.get(i) as string | null;
      if (row <= prevRow) f.error('row-order', rel, `row ${row} follows row ${prevRow}: rows must be strictly increasing (input order, each input row once)`, at);
      prevRow = Math.max(prevRow, row);
      if (row < rec.first_row || row > lastRow) f.error('row-range', rel, `row ${row} is outside the unit's rows ${rec.first_row}..${lastRow}`, at);
      if (sources.get(i) !== rec.source) f.error('source', rel, `source ${JSON.stringify(sources.get(i))}, the unit's shard is ${JSON.stringify(rec.source)}`, { row, field: COL.source });
      if (!id) f.error('id', rel, 'id is empty', { row, field: COL.id });
      else shard.scoredIds.set(row, id);

      const tOff = tok.valueOffsets as Int32Array;
      const n = tOff[i + 1] - tOff[i];
      tokens += n;
      const nt = (nTok.values as Int32Array)[i];
      if (nt !== n) f.error('n_tokens', rel, `n_tokens is ${nt} but token_ids has ${n} tokens`, { row, field: COL.nTokens });
      const tokIds = tok.children[0].values as Int32Array;
      for (let j = tOff[i]; j < tOff[i + 1]; j++) {
        if (tokIds[j] < 0) { f.error('token_ids', rel, `token id ${tokIds[j]} at position ${j - tOff[i]} is negative`, { row, field: COL.tokenIds }); break; }
      }

      for (const m of models) {
        const lp = col(logprobColumn(m))!;
        const lOff = lp.valueOffsets as Int32Array;
        if (lOff[i + 1] - lOff[i] !== n) continue; // reported below with the other list columns
        const child = lp.children[0];
        const vals = floatValues(child);
        let sum = 0;
        let count = 0;
        for (let j = lOff[i]; j < lOff[i + 1]; j++) {
          if (isValid(child, j)) { sum -= vals[j]; count++; }
        }
        if (m === models[0]) scoredTokens += count;
        const lmCol = col(lossMeanColumn(m))!;
        const lmValid = isValid(lmCol, i);
        const lm = (lmCol.values as Float32Array)[i];
        const field = lossMeanColumn(m);
        if (count === 0) {
          if (lmValid) f.error('loss_mean', rel, `${field} is ${lm} but the row has no scored token (must be null)`, { row, field });
        } else if (!lmValid) {
          f.error('loss_mean', rel, `${field} is null but ${count} tokens are scored`, { row, field });
        } else {
          const mean = sum / count;
          // loss_mean comes from the full-precision scores; the stored list may be rounded (--score-dtype).
          const err = SCORE_DTYPE_ERROR[config.score_dtype ?? 'float32'];
          if (!(Math.abs(lm - mean) <= (LOSS_MEAN_RTOL + err.rel) * Math.abs(mean) + 1e-6 + err.abs)) {
            f.error('loss_mean', rel, `${field} is ${lm}, the mean of -${logprobColumn(m)} over ${count} scored tokens is ${mean}`, { row, field });
          }
        }
      }

      for (const l of lists) {
        const off = l.data.valueOffsets as Int32Array;
        const len = off[i + 1] - off[i];
        if (len !== n) {
          f.error('list-length', rel, `${l.name} has ${len} values, token_ids has ${n}`, { row, field: l.name });
          continue;
        }
        const child = l.data.children[0];
        const vals = floatValues(child);
        const nulls = nullPositionsByWindows(n, C, S); // independent of the writer's isUnscoredPosition
        for (let p = 0; p < n; p++) {
          const j = off[i] + p;
          const valid = isValid(child, j);
          const unscored = nulls[p] === 1;
          if (valid && unscored) {
            f.error('window-nulls', rel, `position ${p} has a value (${vals[j]}) but the window rule (C=${C}, S=${S}) gives it no context: it must be null`, { row, field: l.name });
            break;
          }
          if (!valid && !unscored) {
            f.error('window-nulls', rel, `position ${p} is null but the window rule (C=${C}, S=${S}) scores it`, { row, field: l.name });
            break;
          }
          if (valid) {
            const v = vals[j];
            const bad = l.kind === 'logprob' ? !(Number.isFinite(v) && v <= LOGPROB_MAX) : !(Number.isFinite(v) && v >= -LOGPROB_MAX);
            if (bad) {
              f.error('value', rel, `position ${p}: ${v} is not a valid ${l.kind === 'logprob' ? 'log-probability (finite, <= 0)' : 'entropy (finite, >= 0)'}`, { row, field: l.name });
              break;
            }
          }
        }
      }

      if (mask && labels) {
        const mOff = mask.valueOffsets as Int32Array;
        const bOff = labels.valueOffsets as Int32Array;
        if (mOff[i + 1] - mOff[i] !== n) f.error('list-length', rel, `${COL.selectMask} has ${mOff[i + 1] - mOff[i]} values, token_ids has ${n}`, { row, field: COL.selectMask });
        else if (bOff[i + 1] - bOff[i] !== n) f.error('list-length', rel, `${COL.labels} has ${bOff[i + 1] - bOff[i]} values, token_ids has ${n}`, { row, field: COL.labels });
        else {
          const mChild = mask.children[0];
          const lab = labels.children[0].values as Int32Array;
          for (let p = 0; p < n; p++) {
            const selected = mChild.getValid(mOff[i] + p) && Boolean((mChild.values[(mChild.offset + mOff[i] + p) >> 3] >> ((mChild.offset + mOff[i] + p) & 7)) & 1);
            const want = selected ? tokIds[tOff[i] + p] : IGNORE_INDEX;
            if (lab[bOff[i] + p] !== want) {
              f.error('labels', rel, `position ${p}: label ${lab[bOff[i] + p]}, expected ${want} (${selected ? 'selected: the token id' : `not selected: ${IGNORE_INDEX}`})`, { row, field: COL.labels });
              break;
            }
          }
        }
      } else if (mask || labels) {
        f.error('schema', rel, `${mask ? COL.selectMask : COL.labels} without ${mask ? COL.labels : COL.selectMask}: select writes both`, { field: mask ? COL.labels : COL.selectMask });
      }
    }
  }
  report.checked.rows += rowIndex;
  report.checked.tokens += tokens;
  const recRel = `${LAYOUT.doneDir}/${rec.unit}.json`;
  if (tokens !== rec.tokens) f.error('accounting', recRel, `tokens ${rec.tokens}, the data file holds ${tokens}`, { field: 'tokens' });
  if (scoredTokens !== rec.scored_tokens) f.error('accounting', recRel, `scored_tokens ${rec.scored_tokens}, the data file has ${scoredTokens} non-null ${logprobColumn(models[0])} values`, { field: 'scored_tokens' });
}
