// A mergeable quantile sketch with a guaranteed relative error (DDSketch, Masson et al., VLDB 2019), for
// quantiles and thresholds over datasets larger than memory (`select --scope global`, `stats`).
//
// Guarantee: for any q, quantile(q) returns a value v' with |v' - v| <= alpha * |v|, where v is the exact
// q-quantile (lower, rank floor(q * (n - 1)) of the sorted values). Values with |v| < minIndexable land
// in a zero bucket and are returned as 0. Memory: one counter per occupied bucket, about
// ln(max/min) / ln(gamma) buckets (a few thousand for losses between 1e-6 and 1e3 at alpha = 0.5%).
// Merging two sketches of the same alpha gives exactly the sketch of the union: runs may be sharded.

export interface SketchJSON {
  alpha: number;
  count: number;
  zero: number;
  min: number;
  max: number;
  sum: number;
  pos: [number, number][];
  neg: [number, number][];
}

export class QuantileSketch {
  readonly alpha: number;
  private readonly gamma: number;
  private readonly lnGamma: number;
  private readonly minIndexable = 1e-9;
  private pos = new Map<number, number>();
  private neg = new Map<number, number>();
  private zero = 0;
  count = 0;
  min = Infinity;
  max = -Infinity;
  sum = 0;

  constructor(alpha = 0.005) {
    if (!(alpha > 0 && alpha < 1)) throw new Error(`sketch relative accuracy must be in (0, 1), got ${alpha}`);
    this.alpha = alpha;
    this.gamma = (1 + alpha) / (1 - alpha);
    this.lnGamma = Math.log(this.gamma);
  }

  private key(absValue: number): number {
    return Math.ceil(Math.log(absValue) / this.lnGamma);
  }

  /** Representative of bucket k, (gamma^(k-1), gamma^k]: within alpha of every value in it. */
  private value(k: number): number {
    return (2 * Math.pow(this.gamma, k)) / (this.gamma + 1);
  }

  add(v: number, weight = 1): void {
    if (Number.isNaN(v)) return;
    this.count += weight;
    this.sum += v * weight;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
    const a = Math.abs(v);
    if (a < this.minIndexable) this.zero += weight;
    else {
      const store = v > 0 ? this.pos : this.neg;
      const k = this.key(a);
      store.set(k, (store.get(k) ?? 0) + weight);
    }
  }

  merge(other: QuantileSketch): this {
    if (other.alpha !== this.alpha) throw new Error(`cannot merge sketches of different accuracy (${this.alpha} vs ${other.alpha})`);
    for (const [k, c] of other.pos) this.pos.set(k, (this.pos.get(k) ?? 0) + c);
    for (const [k, c] of other.neg) this.neg.set(k, (this.neg.get(k) ?? 0) + c);
    this.zero += other.zero;
    this.count += other.count;
    this.sum += other.sum;
    this.min = Math.min(this.min, other.min);
    this.max = Math.max(this.max, other.max);
    return this;
  }

  /** The q-quantile (0 <= q <= 1), within relative error alpha. NaN for an empty sketch. */
  quantile(q: number): number {
    if (this.count === 0) return NaN;
    if (q <= 0) return this.min;
    if (q >= 1) return this.max;
    const rank = Math.floor(q * (this.count - 1));
    let seen = 0;
    // Ascending order: most negative first (large keys of neg), then zero, then positives by key.
    const negKeys = [...this.neg.keys()].sort((a, b) => b - a);
    for (const k of negKeys) {
      seen += this.neg.get(k)!;
      if (seen > rank) return clamp(-this.value(k), this.min, this.max);
    }
    seen += this.zero;
    if (seen > rank) return 0;
    const posKeys = [...this.pos.keys()].sort((a, b) => a - b);
    for (const k of posKeys) {
      seen += this.pos.get(k)!;
      if (seen > rank) return clamp(this.value(k), this.min, this.max);
    }
    return this.max;
  }

  /** Exact mean of the values added. */
  mean(): number {
    return this.count ? this.sum / this.count : NaN;
  }

  toJSON(): SketchJSON {
    return {
      alpha: this.alpha, count: this.count, zero: this.zero, min: this.min, max: this.max, sum: this.sum,
      pos: [...this.pos.entries()].sort((a, b) => a[0] - b[0]),
      neg: [...this.neg.entries()].sort((a, b) => a[0] - b[0]),
    };
  }

  static fromJSON(j: SketchJSON): QuantileSketch {
    const s = new QuantileSketch(j.alpha);
    s.count = j.count; s.zero = j.zero; s.min = j.min; s.max = j.max; s.sum = j.sum;
    s.pos = new Map(j.pos);
    s.neg = new Map(j.neg);
    return s;
  }
}

function clamp(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}
