// The layers of docs/architecture.md, checked on the source import graph: a module may import only from a
// layer below its own (or from its own folder group). Type-only and dynamic imports count too.
import test from 'ava';
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { ROOT } from '../helpers.js';

/** Bottom to top. Groups of the same rank are siblings: neither may import the other. */
export const LAYERS: { group: string; rank: number }[] = [
  { group: 'schemas', rank: 0 },
  { group: 'model', rank: 1 },
  { group: 'stages', rank: 2 },
  { group: 'pipeline/io', rank: 3 },
  { group: 'pipeline/run', rank: 4 },
  { group: 'pipeline/jobs', rank: 5 },
  { group: 'inspect', rank: 5 },
  { group: 'pipeline/launch', rank: 6 },
  { group: 'api', rank: 7 },
  { group: 'index.ts', rank: 8 },
  { group: 'bin', rank: 9 },
  { group: 'examples', rank: 10 },
];
const CHECKED = ['schemas', 'model', 'stages', 'pipeline', 'inspect', 'api', 'bin', 'examples', 'index.ts'];

function groupOf(rel: string): { group: string; rank: number } | null {
  let best: { group: string; rank: number } | null = null;
  for (const l of LAYERS) if ((rel === l.group || rel.startsWith(l.group + '/')) && (!best || l.group.length > best.group.length)) best = l;
  return best;
}

function sourceFiles(): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    const abs = join(ROOT, rel);
    if (!existsSync(abs)) return;
    if (statSync(abs).isDirectory()) { for (const n of readdirSync(abs).sort()) walk(join(rel, n)); return; }
    if (/\.ts$/.test(rel) && !rel.endsWith('.d.ts')) out.push(rel);
  };
  for (const c of CHECKED) walk(c);
  return out;
}

const SPEC = /(?:^|[^\w.])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;

/** Relative imports of one source text, resolved to repository-relative .ts paths. */
export function importsOf(rel: string, text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(SPEC)) {
    const spec = m[1] ?? m[2];
    if (!spec.startsWith('.')) continue;
    out.push(normalize(join(dirname(rel), spec)).replace(/\.js$/, '.ts'));
  }
  return out;
}

/** Every import that goes from a lower layer to a higher one (or between siblings), as "from -> to". */
export function violations(graph: Map<string, string[]>): string[] {
  const bad: string[] = [];
  for (const [from, tos] of graph) {
    const a = groupOf(from);
    if (!a) { bad.push(`${from}: in no layer (add its folder to LAYERS in test/architecture/layers.test.ts and docs/architecture.md)`); continue; }
    for (const to of tos) {
      const b = groupOf(to);
      if (!b) continue; // test helpers, package.json, fixtures: not layers
      if (a.group === b.group || b.rank < a.rank) continue;
      bad.push(`${from} (${a.group}) -> ${to} (${b.group})`);
    }
  }
  return bad;
}

test('no module imports from a layer above its own (source import graph)', (t) => {
  const files = sourceFiles();
  t.true(files.length > 40, `found ${files.length} source files`);
  const graph = new Map(files.map((f) => [f, importsOf(f, readFileSync(join(ROOT, f), 'utf8'))]));
  t.true([...graph.values()].flat().length > 100, 'the import graph has edges');
  t.deepEqual(violations(graph), []);
});

test('the check catches an upward import, a sibling import and a module outside every layer', (t) => {
  const g = new Map<string, string[]>([
    ['stages/read.ts', importsOf('stages/read.ts', "import type { X } from '../pipeline/io/open.js';\nimport { y } from '../schemas/types.js';")],
    ['inspect/stats.ts', importsOf('inspect/stats.ts', "export { z } from '../pipeline/jobs/select.js';")],
    ['schemas/contract.ts', importsOf('schemas/contract.ts', "const m = await import('../model/prepare.js');")],
    ['pipeline/misc.ts', []],
  ]);
  t.deepEqual(violations(g), [
    'stages/read.ts (stages) -> pipeline/io/open.ts (pipeline/io)',
    'inspect/stats.ts (inspect) -> pipeline/jobs/select.ts (pipeline/jobs)',
    'schemas/contract.ts (schemas) -> model/prepare.ts (model)',
    'pipeline/misc.ts: in no layer (add its folder to LAYERS in test/architecture/layers.test.ts and docs/architecture.md)',
  ]);
});
