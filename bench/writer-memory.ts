// Peak RSS of the streaming writer alone (stages/write.ts streamWriteStage, no model): one unit of D documents
// of L tokens, synthetic scores, encoded to Parquet in one process per D. Shows what a unit costs the writer:
// one row group being encoded (its JS arrays, the Arrow IPC copy and parquet-wasm's heap, which never shrinks),
// the same for any D past the first row group.
//
//   npx tsc -p tsconfig.json
//   node dist/bench/writer-memory.js --docs 2000,10000,40000 --tokens 352 [--whole]
//
// --whole: the unit buffered and encoded whole (encodeUnit, what `rho score` did before), for comparison.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as pq from 'parquet-wasm';
import { encodeUnit, streamWriteStage } from '../stages/write.js';
import { compose } from '../stages/stage.js';
import type { EncodedFlow, OrderedFlow, ScoredDocument, UnitRecords, UnitRef } from '../schemas/types.js';

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};

async function one(docs: number, tokens: number, whole: boolean): Promise<void> {
  const unit: UnitRef = { name: 'k/part-00000', source: 's', part: 0, firstRow: 0, key: 'k' };
  let maxWasm = 0;
  async function* input(): AsyncGenerator<OrderedFlow<ScoredDocument>> {
    for (let row = 0; row < docs; row++) {
      const tokenIds = Int32Array.from({ length: tokens }, (_, i) => (i * 31 + row) % 1000);
      const logprob = Float32Array.from({ length: tokens }, (_, i) => (i === 0 ? NaN : -Math.random() * 8));
      yield { kind: 'doc', unit, doc: { source: 's', row, id: `d${row}`, text: '', docSeq: row, tokenIds, scores: new Map([['ref', { logprob }]]) } };
      maxWasm = Math.max(maxWasm, pq.wasmMemory().buffer.byteLength);
    }
    yield { kind: 'end', unit, records: docs };
  }
  let bytes = 0;
  let pieces = 0;
  if (whole) {
    const u: UnitRecords<ScoredDocument> = { unit, records: [] };
    for await (const it of input()) if (it.kind === 'doc') u.records.push({ kind: 'doc', doc: it.doc });
    const e = encodeUnit(u, { models: ['ref'], entropy: false, spec: { contextTokens: 4096, strideTokens: 4096 }, format: 'parquet', metadata: () => new Map() });
    maxWasm = Math.max(maxWasm, pq.wasmMemory().buffer.byteLength);
    console.log(`${docs}\t${docs * tokens}\t${(process.resourceUsage().maxRSS / 1024).toFixed(0)}\t${(maxWasm / 2 ** 20).toFixed(0)}\t${e.bytes.length}\t1`);
    return;
  }
  const stages = [streamWriteStage({ models: ['ref'], entropy: false, spec: { contextTokens: 4096, strideTokens: 4096 }, format: 'parquet', metadata: () => new Map() })];
  for await (const it of compose<EncodedFlow>(input(), stages, { rank: 0, worldSize: 1, crashPoint: () => undefined }).output) {
    if (it.kind === 'data') { bytes += it.bytes.length; pieces++; }
  }
  maxWasm = Math.max(maxWasm, pq.wasmMemory().buffer.byteLength);
  console.log(`${docs}\t${docs * tokens}\t${(process.resourceUsage().maxRSS / 1024).toFixed(0)}\t${(maxWasm / 2 ** 20).toFixed(0)}\t${bytes}\t${pieces}`);
}

if (process.argv.includes('--one')) {
  await one(Number(arg('one', '0')), Number(arg('tokens', '352')), process.argv.includes('--whole'));
} else {
  const tokens = arg('tokens', '352');
  console.log('docs\ttokens\tmax_rss_mb\twasm_heap_mb\tfile_bytes\tpieces');
  for (const d of arg('docs', '2000,10000,40000').split(',')) {
    const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--one', d, '--tokens', tokens, ...(process.argv.includes('--whole') ? ['--whole'] : [])], { encoding: 'utf8' });
    process.stdout.write(r.stdout || `${d}\tfailed: ${r.stderr.slice(-500)}\n`);
  }
}
