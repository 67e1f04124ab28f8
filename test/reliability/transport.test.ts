// Transport errors are never rejects. S3 inputs behind the fault proxy, in front of a real radosgw: one
// object's body is cut off mid-read and the server then stays down for it past the retry budget. The run
// must fail (exit 1) naming that shard, commit no reject and no completion record for what it could not
// read, score the other shards, and a rerun once the server is back must complete it — for a local output
// and for an S3 output. `rho verify` (inputs re-read) then passes.
import test from 'ava';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { CreateBucketCommand, DeleteObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { s3Client } from '../../pipeline/io/s3.js';
import { openOutputStore } from '../../pipeline/io/open.js';
import { exitCodeOf, EXIT } from '../../schemas/errors.js';
import { readCompletionRecords } from '../../pipeline/run/manifest.js';
import { verifyOutput } from '../../pipeline/jobs/verify/index.js';
import { LocalStore } from '../../pipeline/io/local.js';
import { IncompleteRunError } from '../../pipeline/io/input-checks.js';
import { startRadosgw, type Radosgw } from '../services/radosgw.js';
import { startFaultProxy, type FaultProxy } from '../services/fault-proxy.js';
import { startService, need, type Started } from '../scale/_services.js';
import { requires } from '../requirements.js';
import { score, tmp } from '../helpers.js';

const withCeph = requires('ceph');
let rgw: Started<Radosgw>;
let proxy: FaultProxy;
let admin: S3Client;
const DOCS = 400;
// Long enough lines that a shard is several KB and the proxy's cut lands mid-file.
const shard = (tag: string) => Array.from({ length: DOCS }, (_, i) => JSON.stringify({ id: `${tag}${i}`, text: `${tag} document ${i}: ${'several words of text '.repeat(4)}` })).join('\n') + '\n';

test.before(async () => {
  rgw = await startService(['ceph'], startRadosgw);
  if (!rgw.service) return;
  Object.assign(process.env, rgw.service.env);
  admin = s3Client({ endpoint: rgw.service.endpoint });
  for (const b of ['tr-in', 'tr-out']) await admin.send(new CreateBucketCommand({ Bucket: b }));
  for (const tag of ['a', 'b', 'c']) await admin.send(new PutObjectCommand({ Bucket: 'tr-in', Key: `corpus/${tag}.jsonl`, Body: shard(tag) }));
  // No random faults: only the broken object fails.
  proxy = await startFaultProxy(rgw.service.endpoint, { every: 1e12 });
});

test.after.always(async () => {
  await proxy?.close();
  await rgw?.service?.stop();
});

for (const output of ['local', 's3'] as const) {
  withCeph.serial(`a read that fails past the retries fails its shard (exit 1, named), never a reject; a rerun completes it (${output} output)`, async (t) => {
    const g = need(rgw);
    const out = output === 'local' ? join(tmp('rho-transport-'), 'out') : `s3://tr-out/run-${Date.now()}`;
    // Few, fast retries: "past the retry budget" in milliseconds, not minutes.
    const s3 = { endpoint: proxy.endpoint, maxAttempts: 3, maxBackoffMs: 20 };
    const cfg = { inputs: ['s3://tr-in/corpus/*.jsonl'], context: 16, unitDocs: 100, s3 };
    proxy.brokenKey = 'corpus/b.jsonl';
    proxy.brokenSkip = 1; // the configuration probe reads b's first records intact; the run's own read is cut
    const err = await t.throwsAsync(score({ ...cfg, output: out, maxRejectRatio: 0.05 }));
    t.true(err instanceof IncompleteRunError, String(err));
    t.is(exitCodeOf(err), EXIT.runtime, 'exit 1, not 0 or 3');
    t.regex(err!.message, /s3:\/\/tr-in\/corpus\/b\.jsonl: could not read the input/);
    t.notRegex(err!.message, /corpus\/a\.jsonl|corpus\/c\.jsonl/);

    const store = output === 'local' ? new LocalStore(out) : await openOutputStore(out, { endpoint: g.endpoint });
    const records = await readCompletionRecords(store);
    t.is(records.filter((r) => r.rejected > 0).length, 0, 'no reject was committed');
    const bRecords = records.filter((r) => r.source.endsWith('/b.jsonl'));
    t.true(bRecords.every((r) => r.docs_in === 100), 'only units read in full are recorded');
    t.true(bRecords.length >= 1 && bRecords.length < 4, 'units read in full before the cut are kept; the one where reading failed has no record');
    t.log(`b: ${bRecords.length} unit(s) read in full before the cut`);
    for (const tag of ['a', 'c']) t.is(records.filter((r) => r.source.endsWith(`/${tag}.jsonl`)).reduce((a, r) => a + r.docs_in, 0), DOCS);
    if (output === 'local') t.false(existsSync(join(out, '_rho', 'rejects')) && readdirSync(join(out, '_rho', 'rejects'), { recursive: true }).length > 0);

    // The server is back: the rerun does the rest.
    proxy.brokenKey = null;
    const s = await score({ ...cfg, output: out, maxRejectRatio: 0 });
    t.is(s.manifest.totals.docs_in, 3 * DOCS);
    t.is(s.manifest.totals.scored, 3 * DOCS);
    t.is(s.manifest.totals.rejected, 0);
    const v = await verifyOutput(out, { inputs: true, s3: { endpoint: g.endpoint } }, store);
    t.deepEqual(v.errors, []);
    t.is(v.inputs.checked.length, 3);
  });
}

withCeph.serial('an input object deleted after scoring is a verify finding naming it, not a crash', async (t) => {
  const g = need(rgw);
  await admin.send(new PutObjectCommand({ Bucket: 'tr-in', Key: 'gone/x.jsonl', Body: shard('x') }));
  const out = join(tmp('rho-gone-'), 'out');
  await score({ inputs: ['s3://tr-in/gone/x.jsonl'], output: out, context: 16, unitDocs: 100, s3: { endpoint: g.endpoint } });
  await admin.send(new DeleteObjectCommand({ Bucket: 'tr-in', Key: 'gone/x.jsonl' }));
  const v = await verifyOutput(out, { inputs: true, s3: { endpoint: g.endpoint } });
  t.false(v.ok);
  const finding = v.errors.find((e) => e.check === 'input' && e.file === 's3://tr-in/gone/x.jsonl');
  t.truthy(finding, JSON.stringify(v.errors));
  t.regex(finding!.message, /cannot be read .*no such object/);
});
