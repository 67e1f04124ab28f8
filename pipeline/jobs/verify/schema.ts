// A data file's schema and key-value metadata against the contract and the run identity.
import type { Field, Schema } from 'apache-arrow';
import { COL, META, SCHEMA_VERSION, entropyColumn, lossMeanColumn, logprobColumn, scoreSchema, selectFields } from '../../../schemas/contract.js';
import { LAYOUT, type CompletionRecord } from '../../../schemas/layout.js';
import type { Findings, RunIdentityView } from './report.js';

export function sameType(a: Field, b: Field): string | null {
  if (String(a.type) !== String(b.type)) return `type ${String(a.type)}, the contract says ${String(b.type)}`;
  if (a.nullable !== b.nullable) return `nullable=${a.nullable}, the contract says nullable=${b.nullable}`;
  const ac = a.type.children?.[0];
  const bc = b.type.children?.[0];
  if (bc && ac && ac.nullable !== bc.nullable) return `list items nullable=${ac.nullable}, the contract says nullable=${bc.nullable}`;
  return null;
}

export function checkMetadata(rel: string, schema: Schema, rec: CompletionRecord, config: RunIdentityView, f: Findings): void {
  const md = schema.metadata;
  for (const key of Object.values(META)) if (!md.has(key)) f.error('metadata', rel, `provenance key ${key} is missing from the file metadata`, { field: key });
  const sv = md.get(META.schemaVersion);
  if (sv !== undefined && sv !== String(SCHEMA_VERSION)) f.error('metadata', rel, `schema version ${sv}, this rho reads version ${SCHEMA_VERSION}`, { field: META.schemaVersion });
  for (const [key, want] of [[META.context, config.context], [META.stride, config.stride]] as const) {
    const got = md.get(key);
    if (got !== undefined && got !== String(want)) f.error('metadata', rel, `${key} is ${got} but ${LAYOUT.config} says ${want}`, { field: key });
  }
  const models = md.get(META.models);
  if (models !== undefined) {
    try {
      const ms = JSON.parse(models) as { name: string; sha256: string }[];
      const got = ms.map((m) => `${m.name}:${m.sha256}`).join(',');
      const want = config.models.map((m) => `${m.name}:${m.sha256}`).join(',');
      if (got !== want) f.error('metadata', rel, `models ${got} differ from ${LAYOUT.config} (${want})`, { field: META.models });
    } catch {
      f.error('metadata', rel, `${META.models} is not valid JSON`, { field: META.models });
    }
  }
  const unit = md.get(META.unit);
  if (unit !== undefined) {
    try {
      const u = JSON.parse(unit) as { source: string; part: number; first_row: number; rows: number };
      if (u.source !== rec.source || u.part !== rec.part || u.first_row !== rec.first_row || u.rows !== rec.docs_in) {
        f.error('metadata', rel, `${META.unit} ${unit} does not match the completion record (source ${rec.source}, part ${rec.part}, first_row ${rec.first_row}, docs_in ${rec.docs_in})`, { field: META.unit });
      }
    } catch {
      f.error('metadata', rel, `${META.unit} is not valid JSON`, { field: META.unit });
    }
  }
}

/** Contract columns and types; returns false when the rows cannot be checked. */
export function checkSchema(rel: string, schema: Schema, config: RunIdentityView, f: Findings): boolean {
  const expected = scoreSchema(config.models.map((m) => m.name), { entropy: config.entropy, scoreDtype: config.score_dtype });
  const optional = new Map(selectFields().map((x) => [x.name, x]));
  const have = new Map(schema.fields.map((x) => [x.name, x]));
  let ok = true;
  for (const want of expected.fields) {
    const got = have.get(want.name);
    if (!got) {
      f.error('schema', rel, `column ${want.name} (${String(want.type)}) is missing`, { field: want.name });
      ok = false;
      continue;
    }
    const diff = sameType(got, want);
    if (diff) {
      f.error('schema', rel, `column ${want.name} has ${diff}`, { field: want.name });
      ok = false;
    }
  }
  for (const got of schema.fields) {
    if (expected.fields.some((x) => x.name === got.name)) continue;
    const opt = optional.get(got.name);
    if (!opt) f.error('schema', rel, `unexpected column ${got.name} (${String(got.type)}): not in the contract for models ${config.models.map((m) => m.name).join(', ')}${config.entropy ? ' with' : ' without'} entropy`, { field: got.name });
    else {
      const diff = sameType(got, opt);
      if (diff) {
        f.error('schema', rel, `column ${got.name} has ${diff}`, { field: got.name });
        ok = false;
      }
    }
  }
  return ok;
}
