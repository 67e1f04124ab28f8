// manifest.json's shape (part of the output contract; built by pipeline/run/manifest.ts).

export interface ShardAccount {
  source: string;
  bytes: number;
  key: string;
  units_done: number;
  docs_in: number;
  scored: number;
  rejected: number;
  tokens: number;
  scored_tokens: number;
}

export interface Manifest {
  schema_version: number;
  rho_version?: unknown;
  models?: unknown;
  tokenizer?: unknown;
  context?: unknown;
  stride?: unknown;
  special_tokens?: unknown;
  inputs?: unknown;
  provenance: Record<string, string>;
  config_sha256: string;
  shards: ShardAccount[];
  totals: Omit<ShardAccount, 'source' | 'bytes' | 'key'> & { shards: number; bytes: number };
  files: { file: string; rows: number; bytes: number; sha256: string }[];
  run: Record<string, unknown>;
}
