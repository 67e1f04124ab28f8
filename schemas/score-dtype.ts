// Score dtypes (`rho score --score-dtype`): how per-token scores are stored, and how much they may differ from
// the float32 the model produced. Part of the output contract: readers import the bounds from here.
//
// - float32: Arrow Float32 → Parquet FLOAT. Exact.
// - float16: Arrow Float16 → Parquet FIXED_LEN_BYTE_ARRAY(2) with the FLOAT16 logical type. DuckDB (1.5) reads it
//   as FLOAT; polars reads it as Float16 (arithmetic works; nodejs-polars needs a cast to Float32 before values
//   come out to JS). Rounded to nearest even.
// - bfloat16: Parquet has no bfloat16 type, so the column stays Float32 / FLOAT and holds bfloat16 values (the
//   float32 rounded to 8 significant bits, low 16 bits zero). Every reader reads plain float32 and sees the
//   bfloat16 value exactly; zstd squeezes the zero half away (measured: smaller than float16 on real scores).
import { Float16, Float32, type Float } from 'apache-arrow';

export type ScoreDtype = 'float32' | 'float16' | 'bfloat16';
export const SCORE_DTYPES: readonly ScoreDtype[] = ['float32', 'float16', 'bfloat16'];
export const DEFAULT_SCORE_DTYPE: ScoreDtype = 'float32';

/**
 * Largest error of a stored score x' against the float32 score x, for finite x: |x' - x| <= rel * |x| + abs.
 * float16: 11 significant bits, so rel = 2^-11; below 2^-14 (subnormal halves) the spacing is 2^-24, so abs =
 * 2^-25; beyond ±65504 a float16 is infinite (log-probs and entropies in nats never get there in practice).
 * bfloat16: 8 significant bits, rel = 2^-8, with float32's exponent range.
 */
export const SCORE_DTYPE_ERROR: Readonly<Record<ScoreDtype, { rel: number; abs: number }>> = {
  float32: { rel: 0, abs: 0 },
  float16: { rel: 2 ** -11, abs: 2 ** -25 },
  bfloat16: { rel: 2 ** -8, abs: 0 },
};

export function isScoreDtype(v: unknown): v is ScoreDtype {
  return typeof v === 'string' && (SCORE_DTYPES as readonly string[]).includes(v);
}

/** Arrow type of the items of a per-token score list for a dtype. */
export function scoreItemType(d: ScoreDtype): Float {
  return d === 'float16' ? new Float16() : new Float32();
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE 754 binary16 bits of a float32, rounded to nearest even (Node 20 has no Float16Array). */
export function float16Bits(v: number): number {
  f32[0] = v;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half: m * 2^-24.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && (half & 1))) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (up to infinity).
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1))) half++;
  return sign | half;
}

let halfTable: Float32Array | null = null;

/** float32 value of every binary16 bit pattern (built once: 256 KiB). */
export function float16Table(): Float32Array {
  if (halfTable) return halfTable;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    t[h] = e === 0 ? s * m * 2 ** -24 : e === 0x1f ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
  }
  return (halfTable = t);
}

/** Half bits → float32 values. */
export function float16ToFloat32(bits: Uint16Array): Float32Array {
  const t = float16Table();
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = t[bits[i]];
  return out;
}

/** float32 rounded to bfloat16 (nearest even), returned as the float32 with that value. NaN stays NaN. */
export function bfloat16Round(v: number): number {
  f32[0] = v;
  const x = u32[0];
  if ((x & 0x7f800000) === 0x7f800000) return v; // Inf and NaN unchanged
  u32[0] = ((x + 0x7fff + ((x >>> 16) & 1)) & 0xffff0000) >>> 0;
  return f32[0];
}

/**
 * The values of a float array (an Arrow list's child) as float32, whatever the stored dtype: Float16 bits are
 * decoded (a new array), Float32 is returned as is. Indexing is the same as `data.values`.
 */
export function floatValues(data: { type: { typeId: number; precision?: number }; values: unknown }): Float32Array {
  if ((data.type as { precision?: number }).precision === 0) return float16ToFloat32(data.values as Uint16Array);
  return data.values as Float32Array;
}
