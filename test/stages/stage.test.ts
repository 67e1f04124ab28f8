// The stage contract: compose() chains stages and counts, per stage, documents and tokens in and out, the
// documents it turned into rejects, and the seconds spent in its own code (not in the stages before it).
import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { shardPath } from '../helpers.js';
import { compose, stage, readStage, readShard, filterDocuments, type Flow, type Document, type ReadItem, type UnitRef } from '../../index.js';

const ctx = { rank: 0, worldSize: 1, crashPoint: () => undefined };

test('readStage reads shards and document sources in order, like readShard', async (t) => {
  const src = { name: 'mem', *documents() { yield { text: 'a' }; yield { id: 'x', text: 'b' }; yield { text: 7 as unknown as string }; } };
  const { output, stats } = compose<ReadItem>((async function* () { yield shardPath('clean.jsonl'); yield src; })(), [readStage({ textField: 'text', idField: 'id' })], ctx);
  const items: ReadItem[] = [];
  for await (const it of output) items.push(it);
  const direct: ReadItem[] = [];
  for await (const it of readShard(shardPath('clean.jsonl'), { textField: 'text', idField: 'id' })) direct.push(it);
  t.deepEqual(items.slice(0, direct.length), direct);
  t.deepEqual(items.slice(direct.length).map((x) => (x.kind === 'doc' ? [x.doc.source, x.doc.row, x.doc.id] : [x.reject.source, x.reject.row, x.reject.field])), [
    ['mem', 0, 'mem#0'], ['mem', 1, 'x'], ['mem', 2, 'text'],
  ]);
  t.is(stats[0].name, 'read');
});

test('per-stage counters, and seconds that leave out the time spent waiting for the stage before', async (t) => {
  const unit: UnitRef = { name: 'u/part-00000', source: 'u', part: 0, firstRow: 0 };
  const N = 8;
  let upstreamSeconds = 0;
  async function* slowSource(): AsyncGenerator<Flow<Document>> {
    for (let i = 0; i < N; i++) {
      const t0 = performance.now();
      await sleep(60);
      upstreamSeconds += (performance.now() - t0) / 1000;
      yield { kind: 'doc', unit, doc: { source: 'u', row: i, id: `d${i}`, text: 'x'.repeat(i * 10) } };
    }
    yield { kind: 'end', unit, records: N };
  }
  const busy = stage<Flow<Document>, Flow<Document>>('busy', async function* (input) {
    for await (const it of input) { await sleep(20); yield it; }
  });
  const dropShort = filterDocuments('drop-short', (d) => d.text.length >= 30 || 'short');
  const t0 = performance.now();
  const { output, stats } = compose<Flow<Document>>(slowSource(), [busy, dropShort], ctx);
  const kinds: string[] = [];
  for await (const it of output) kinds.push(it.kind);
  const wall = (performance.now() - t0) / 1000;
  t.deepEqual(kinds, ['reject', 'reject', 'reject', 'doc', 'doc', 'doc', 'doc', 'doc', 'end']);
  const [b, f] = stats;
  t.like(b, { name: 'busy', docs_in: N, docs_out: N, rejected: 0 });
  t.like(f, { name: 'drop-short', docs_in: N, docs_out: N - 3, rejected: 3 });
  // Own time: at least its own sleeps; never the source's sleeps (they are most of the wall time).
  t.true(b.seconds >= N * 0.015, `busy: ${b.seconds.toFixed(3)} s`);
  t.true(b.seconds <= wall - upstreamSeconds + 0.05, `busy: ${b.seconds.toFixed(3)} s of ${wall.toFixed(3)} s wall, ${upstreamSeconds.toFixed(3)} s in the source`);
  t.true(f.seconds < b.seconds, 'the filter does no waiting of its own');
});
