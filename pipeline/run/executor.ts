// The executor (datatrove's executor/step split): everything about *which* work a runner does and how it is
// made durable, apart from the stages that do it. It cuts inputs into work units, skips units already done
// (resume), owned by other ranks, or claimed by other live runners; feeds the records of its own units to the
// stages; puts each unit's records back in row order (ordered(): as soon as every earlier row has come, so a
// unit is never held whole) or gathers it whole (gather()); streams each unit's data file into its staged file
// as the writer encodes it; commits it exactly once (commit.ts: staged data, exclusive completion record,
// publish) and releases its claim; keeps the accounting, the progress line, the rank's summary and,
// for the last rank to finish, the manifest.
import { formatOf, rejectsPath, unitName } from '../../schemas/layout.js';
import type { CompletionRecord } from '../../schemas/layout.js';
import { createHash, randomBytes, type Hash } from 'node:crypto';
import type { OutputStore, StoreWriter } from '../../schemas/store.js';
import type { Document, EncodedFlow, EncodedUnit, Flow, OrderedFlow, ReadItem, UnitRecords, UnitRef } from '../../schemas/types.js';
import type { Manifest } from '../../schemas/manifest.js';
import { crashPoint } from '../../schemas/crashpoints.js';
import { stage, type Stage } from '../../stages/stage.js';
import { Claims, DEFAULT_LEASE_SECONDS } from './claims.js';
import { ownerOf } from './rank.js';
import { Progress } from './progress.js';
import { manifestOf, writeDirManifest } from './manifest.js';
import { ensureRunInfo, readRecords } from './records.js';
import { commitUnit, stagedPath, type UnitOutput } from './commit.js';
import { rankStart, rankEnd } from './rank-books.js';
import { InputReadError } from '../../stages/read.js';
import { onInterrupt } from './interrupt.js';

/** One input of a run: a shard file or a document source, read record by record. */
export interface ExecutorInput {
  /** The `source` column and the input's identity (units are named after it). */
  source: string;
  /** Size in bytes for the progress ETA (0 when unknown). */
  bytes: number;
  /** The input's records in row order; `onBytes` reports bytes read, for the progress line only. */
  read(onBytes: (n: number) => void): AsyncIterable<ReadItem>;
  /** The folder of its units (shardKey of its canonical location); default shardKey(source). */
  key?: string;
  /** Called once before the input is read (the score job records the input's fingerprint there). */
  prepare?: () => Promise<void>;
}

export interface ExecutorOptions {
  store: OutputStore;
  inputs: ExecutorInput[];
  /** Records per work unit. */
  unitDocs: number;
  rank?: number;
  worldSize?: number;
  leaseSeconds?: number;
  /** sha256 of the run identity: only completion records of this configuration count as done. */
  configSha: string;
  progress: boolean;
  /** Live counts for the progress line (documents finished, tokens scored), read from the stages. */
  live?: () => { docs: number; tokens: number; tokenized?: number };
}

/** This run only (units skipped because they were already done are not counted in the document counts). */
export interface RunCounts {
  units_written: number;
  units_skipped: number;
  units_other_rank: number;
  units_claimed_elsewhere: number;
  /** Units this runner scored but another runner committed first (or took over after this one's lease ran out). */
  units_lost: number;
  docs_in: number;
  scored: number;
  rejected: number;
  tokens: number;
  scored_tokens: number;
}

type Skip = 'done' | 'rank' | 'claimed' | null;

export class Executor {
  readonly counts: RunCounts = { units_written: 0, units_skipped: 0, units_other_rank: 0, units_claimed_elsewhere: 0, units_lost: 0, docs_in: 0, scored: 0, rejected: 0, tokens: 0, scored_tokens: 0 };
  readonly claims: Claims;
  readonly progress: Progress;
  private readonly rank: number;
  private readonly worldSize: number;
  private done = new Set<string>();
  /** Inputs whose bytes could not be read (transport): their open units are abandoned, the run exits 1. */
  readonly unreadable: InputReadError[] = [];
  private readonly abandoned = new Set<string>();
  /** Per open unit, its rows in the order they entered the stages (read order): what ordered() releases by. */
  private readonly entered = new Map<string, number[]>();
  /** Parts passed over because another live runner held them, by input source: looked at again at the end. */
  private readonly claimedElsewhere = new Map<string, Set<number>>();
  /** `done` lists every done unit of this rank (from a listing), or only those of its summary (then check the rest). */
  private doneKnown = true;
  /** Records of the units this rank owns that are done: read at start, added as units commit; its summary at the end. */
  private ownDone = new Map<string, CompletionRecord>();
  private rejectsRead = 0;
  private inputBytesDone = 0;
  // Bytes of the current input read so far (streamed formats), so the ETA moves inside a large shard.
  private shardBytesRead = 0;

  private constructor(private readonly opts: ExecutorOptions) {
    this.rank = opts.rank ?? 0;
    this.worldSize = opts.worldSize ?? 1;
    this.claims = new Claims(opts.store, this.rank, (opts.leaseSeconds ?? DEFAULT_LEASE_SECONDS) * 1000);
    const live = opts.live ?? (() => ({ docs: 0, tokens: 0 }));
    this.progress = new Progress(opts.inputs.reduce((a, s) => a + s.bytes, 0), () => ({ ...live(), rejected: this.rejectsRead, inputBytesDone: this.inputBytesDone + this.shardBytesRead }), opts.progress);
  }

  /**
   * Read which of this rank's units are done already (resume): only the records of the units it owns (its
   * summary, else the records themselves), never the whole dir; publish what a crash left staged.
   */
  static async open(opts: ExecutorOptions): Promise<Executor> {
    const x = new Executor(opts);
    const start = await rankStart(opts.store, { rank: x.rank, worldSize: x.worldSize, configSha: opts.configSha, inputs: opts.inputs });
    x.ownDone = start.done;
    x.done = new Set(x.ownDone.keys());
    x.doneKnown = start.complete;
    return x;
  }

  /**
   * Run a job: `build` turns the record stream of this runner's units into encoded units (the job's stages);
   * each is committed as it comes. On failure every held claim is released, marked failed. Returns the seconds
   * until the last unit was committed.
   */
  async execute(build: (source: AsyncIterable<Flow<Document>>) => AsyncIterable<EncodedUnit | EncodedFlow>): Promise<number> {
    // Data files being streamed, by unit: their temp files are removed if the run fails or is interrupted.
    const open = new Map<string, { writer: StoreWriter; hash: Hash; bytes: number }>();
    const abortAll = async () => {
      const all = [...open.values()];
      open.clear();
      await Promise.all(all.map((o) => o.writer.abort().catch(() => undefined)));
    };
    // Interrupted (SIGINT/SIGTERM): held claims are released as failed, so any runner may take them over now.
    const off = onInterrupt(async (signal) => { await abortAll(); await this.claims.releaseAll(`interrupted by ${signal}`); });
    try {
      for await (const item of build(this.source())) {
        if (!('kind' in item)) { await this.commit(item); continue; }
        const name = item.unit.name;
        if (item.kind === 'data') {
          let o = open.get(name);
          if (!o) {
            // Temp name under the staged dir (recoverStaged removes a crashed runner's once its claim is dead).
            const writer = await this.opts.store.createWriter(stagedPath(name, randomBytes(8).toString('hex'), formatOf(item.file)));
            open.set(name, (o = { writer, hash: createHash('sha256'), bytes: 0 }));
          }
          o.hash.update(item.bytes);
          o.bytes += item.bytes.length;
          await o.writer.write(item.bytes);
        } else if (item.kind === 'abandon') {
          await open.get(name)?.writer.abort();
          open.delete(name);
        } else {
          const o = open.get(name);
          if (!o) throw new Error(`internal: unit ${name} finished without data`);
          open.delete(name);
          // Complete and hashed: only now does it get its staged name (and can a record vouch for it).
          const sha = o.hash.digest('hex');
          const path = stagedPath(name, sha, formatOf(item.file));
          await o.writer.close(path);
          await this.commit(item, { path, sha256: sha, bytes: o.bytes });
        }
      }
      // Claims of abandoned units are released (failed, with the reason) so that any runner may redo them.
      if (this.unreadable.length) await this.claims.releaseAll(this.unreadable.map((e) => e.message).join('; '));
      return this.progress.elapsedSeconds();
    } catch (e) {
      await abortAll();
      await this.claims.releaseAll((e as Error).message);
      throw e;
    } finally {
      off();
      this.claims.stopRenewal();
      this.progress.stop();
    }
  }

  /** The records of this runner's units, each unit closed by an `end` with its record count. */
  async *source(): AsyncGenerator<Flow<Document>> {
    for (const input of this.opts.inputs) {
      this.shardBytesRead = 0;
      yield* this.unitsOf(input);
      this.inputBytesDone += input.bytes;
      this.shardBytesRead = 0;
    }
    // Units another runner held when this one passed them: that runner may have died since (its process is
    // gone from this host, or its lease ran out). Look once more before exiting, and take over what is dead.
    if (this.claimedElsewhere.size === 0) return;
    const again = new Map(this.claimedElsewhere);
    this.claimedElsewhere.clear();
    for (const input of this.opts.inputs) {
      const parts = again.get(input.source);
      if (parts) yield* this.unitsOf(input, parts);
    }
  }

  private async *unitsOf(input: ExecutorInput, only?: Set<number>): AsyncGenerator<Flow<Document>> {
    let open: UnitRef | null = null;
    let records = 0;
    const skipped = new Set<number>();
    const onBytes = (n: number) => { this.shardBytesRead = Math.min(this.shardBytesRead + n, input.bytes || Infinity); };
    try {
    await input.prepare?.();
    for await (const item of input.read(onBytes)) {
      const row = item.kind === 'doc' ? item.doc.row : item.reject.row;
      const part = Math.floor(row / this.opts.unitDocs);
      if (open && open.part !== part) {
        yield { kind: 'end', unit: open, records };
        open = null;
      }
      if (skipped.has(part)) continue;
      if (only && !only.has(part)) { skipped.add(part); continue; }
      if (!open) {
        const unit: UnitRef = { name: unitName({ source: input.source, part, key: input.key }), source: input.source, part, firstRow: part * this.opts.unitDocs, key: input.key };
        const skip = await this.decide(unit);
        if (only) {
          // The second look: a unit taken over is no longer "claimed elsewhere"; one finished by its owner is done.
          if (skip !== 'claimed') this.counts.units_claimed_elsewhere--;
          if (skip === 'done') this.counts.units_skipped++;
        }
        if (skip) {
          skipped.add(part);
          if (only) continue;
          if (skip === 'done') this.counts.units_skipped++;
          else if (skip === 'rank') this.counts.units_other_rank++;
          else {
            this.counts.units_claimed_elsewhere++;
            let parts = this.claimedElsewhere.get(input.source);
            if (!parts) this.claimedElsewhere.set(input.source, (parts = new Set()));
            parts.add(part);
          }
          continue;
        }
        open = unit;
        records = 0;
        this.entered.set(unit.name, []);
      }
      records++;
      this.entered.get(open.name)?.push(row);
      if (item.kind === 'reject') {
        this.rejectsRead++;
        yield { kind: 'reject', unit: open, reject: item.reject };
      } else yield { kind: 'doc', unit: open, doc: item.doc };
    }
    } catch (e) {
      if (!(e instanceof InputReadError)) throw e;
      // The bytes could not be read (network, S3 after its retries, EIO): not the data's fault, so no reject
      // and no record. The open unit is abandoned (gather drops it), other inputs go on, the run exits 1.
      if (open) {
        this.abandoned.add(open.name);
        this.entered.delete(open.name);
      }
      this.unreadable.push(e);
      process.stderr.write(`rho: ${e.message}\n`);
      return;
    }
    if (open) yield { kind: 'end', unit: open, records };
  }

  /** Whether this runner works on `unit`: not done, its rank's, and claimed by this runner. */
  private async decide(unit: UnitRef): Promise<Skip> {
    const { name } = unit;
    if (this.done.has(name)) return 'done';
    if (ownerOf(name, this.worldSize) !== this.rank) return 'rank';
    if (!this.doneKnown && (await this.doneMeanwhile(name))) return 'done';
    if (!(await this.claims.acquire(name))) return 'claimed';
    // Finished by another runner since this one started (its claim is gone once it is done).
    if (await this.doneMeanwhile(name)) {
      await this.claims.finish(name);
      return 'done';
    }
    crashPoint('claim-acquired');
    return null;
  }

  /** One GET: whether `name` has a record of this configuration (then it is remembered for the summary). */
  private async doneMeanwhile(name: string): Promise<boolean> {
    const [r] = await readRecords(this.opts.store, [name]);
    if (!r || r.config_sha256 !== this.opts.configSha) return false;
    this.ownDone.set(name, r);
    return true;
  }

  /**
   * The ordering stage: records of a unit, in any order, back into row order, each passed on as soon as every
   * row of its unit that entered before it has (so what it holds is bounded by what is in flight, not by the
   * unit), then the unit's `end`. A unit whose input could not be read to its end is dropped with `abandon`.
   */
  ordered<D extends { row: number }>(): Stage<Flow<D>, OrderedFlow<D>> {
    const { abandoned, entered } = this;
    type Rec = Extract<Flow<D>, { kind: 'doc' | 'reject' }>;
    interface Open { unit: UnitRef; order: number[]; head: number; arrived: Map<number, Rec[]>; released: number; expected: number | null }
    return stage('ordered', async function* (input) {
      const units = new Map<string, Open>();
      let abandonedSeen = 0;
      function* dropAbandoned(): Generator<OrderedFlow<D>> {
        if (abandoned.size === abandonedSeen) return;
        abandonedSeen = abandoned.size;
        for (const [name, u] of units) {
          if (!abandoned.has(name)) continue;
          units.delete(name);
          yield { kind: 'abandon', unit: u.unit };
        }
      }
      for await (const it of input) {
        yield* dropAbandoned();
        const name = it.unit.name;
        if (abandoned.has(name)) continue;
        let u = units.get(name);
        if (!u) {
          const order = entered.get(name);
          if (!order) throw new Error(`internal: unit ${name} has no read order`);
          units.set(name, (u = { unit: it.unit, order, head: 0, arrived: new Map(), released: 0, expected: null }));
        }
        if (it.kind === 'end') u.expected = it.records;
        else {
          const row = it.kind === 'doc' ? it.doc.row : it.reject.row;
          const at = u.arrived.get(row);
          if (at) at.push(it as Rec);
          else u.arrived.set(row, [it as Rec]);
        }
        // Release every record whose turn has come.
        while (u.head < u.order.length) {
          const waiting = u.arrived.get(u.order[u.head]);
          if (!waiting) break;
          const r = waiting.shift()!;
          if (waiting.length === 0) u.arrived.delete(u.order[u.head]);
          u.head++;
          u.released++;
          yield r;
        }
        // Rows released are forgotten (the read order array is shared with the reader, which only appends).
        if (u.head > 4096 && u.head * 2 > u.order.length) {
          u.order.splice(0, u.head);
          u.head = 0;
        }
        if (u.expected !== null && u.released === u.expected) {
          units.delete(name);
          entered.delete(name);
          yield { kind: 'end', unit: u.unit, records: u.expected };
        }
      }
      yield* dropAbandoned();
      if (units.size > 0) throw new Error(`internal: units ${[...units.keys()].join(', ')} never got all their records`);
    });
  }

  /** The gather stage: records of a unit, in any order, back into one whole unit in row order. */
  gather<D extends { row: number }>(): Stage<Flow<D>, UnitRecords<D>> {
    const { abandoned, entered } = this;
    return stage('gather', async function* (input) {
      const units = new Map<string, { unit: UnitRef; records: UnitRecords<D>['records']; expected: number | null }>();
      for await (const it of input) {
        if (abandoned.has(it.unit.name)) { units.delete(it.unit.name); continue; }
        let u = units.get(it.unit.name);
        if (!u) units.set(it.unit.name, (u = { unit: it.unit, records: [], expected: null }));
        if (it.kind === 'end') u.expected = it.records;
        else u.records.push(it.kind === 'doc' ? { kind: 'doc', doc: it.doc } : { kind: 'reject', reject: it.reject });
        if (u.expected !== null && u.records.length === u.expected) {
          units.delete(it.unit.name);
          entered.delete(it.unit.name);
          const rowOf = (r: UnitRecords<D>['records'][number]) => (r.kind === 'doc' ? r.doc.row : r.reject.row);
          u.records.sort((a, b) => rowOf(a) - rowOf(b));
          yield { unit: u.unit, records: u.records };
        }
      }
      for (const name of abandoned) units.delete(name);
      if (units.size > 0) throw new Error(`internal: units ${[...units.keys()].join(', ')} never got all their records`);
    });
  }

  /**
   * Make a unit durable exactly once, whatever bytes other runners of it produced (commit.ts): staged data and
   * rejects, the lease fence, the exclusive completion record, then the data file published.
   */
  async commit(e: EncodedUnit | Omit<EncodedUnit, 'bytes'>, staged?: UnitOutput['staged']): Promise<void> {
    const { store } = this.opts;
    const output: UnitOutput = {
      file: e.file, ...('bytes' in e ? { bytes: e.bytes } : { staged }),
      rejects: e.rejects.length ? { file: rejectsPath(e.unit), bytes: new TextEncoder().encode(e.rejects.map((r) => JSON.stringify(r)).join('\n') + '\n') } : null,
      record: {
        unit: e.unit.name, source: e.unit.source, part: e.unit.part, first_row: e.unit.firstRow,
        docs_in: e.records, scored: e.scored, rejected: e.rejects.length, tokens: e.tokens, scored_tokens: e.scoredTokens, config_sha256: this.opts.configSha,
      },
    };
    let result = await commitUnit(store, output, () => this.claims.holds(e.unit.name));
    // This runner's own lease ran out (it was paused or starved): if nobody took the unit over, claim it again
    // (the next generation) and commit the bytes it holds; if someone did, their commit decides.
    if (!result.won && result.why === 'lease-lost' && (await this.claims.acquire(e.unit.name))) {
      result = await commitUnit(store, output, () => this.claims.holds(e.unit.name));
    }
    if (!result.won && result.why === 'lease-lost' && staged) await store.remove(staged.path);
    if (!result.won) {
      // Another runner's record stands (it scored this unit too, or took it over after this lease ran out).
      await this.claims.drop(e.unit.name);
      if (result.record) this.ownDone.set(e.unit.name, result.record);
      this.counts.units_lost++;
      return;
    }
    const record = result.record;
    this.ownDone.set(e.unit.name, record);
    await this.claims.finish(e.unit.name);
    const c = this.counts;
    c.units_written++;
    c.docs_in += record.docs_in;
    c.scored += record.scored;
    c.rejected += record.rejected;
    c.tokens += record.tokens;
    c.scored_tokens += record.scored_tokens;
    this.progress.draw();
  }

  /**
   * The end of a rank: its summary (the records of its units, batched), then manifest.json if it is the last
   * rank to finish ('dir'); otherwise the manifest of its own share, not written ('rank').
   */
  async finish(provenance: Record<string, string>, runMeta: Record<string, unknown>): Promise<{ manifest: Manifest; scope: 'dir' | 'rank' }> {
    const { store, configSha } = this.opts;
    const run = { provenance, inputs: this.opts.inputs.map((s) => ({ source: s.source, bytes: s.bytes, ...(s.key ? { key: s.key } : {}) })) };
    const runFile = await ensureRunInfo(store, run);
    const last = await rankEnd(store, {
      rank: this.rank, world_size: this.worldSize, config_sha256: configSha, run_file: runFile,
      complete: this.counts.units_claimed_elsewhere === 0 && this.counts.units_lost === 0 && this.unreadable.length === 0, finished_at: new Date().toISOString(),
      run: { ...this.counts, ...runMeta, stages: undefined }, records: [...this.ownDone.values()],
    });
    if (last) return { manifest: (await writeDirManifest(store, { runMeta, run, configSha })).manifest, scope: 'dir' };
    return { manifest: manifestOf([...this.ownDone.values()], { ...run, configSha, runMeta: { ...runMeta, scope: `rank ${this.rank} of ${this.worldSize}` } }), scope: 'rank' };
  }
}
