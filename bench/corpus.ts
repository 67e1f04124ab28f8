// The benchmark corpus: documents of mixed length (log-normal in characters, some longer than the context) made of
// real prose found offline on this machine (the license texts, the fixtures' clean, noisy and unicode documents).
// Seeded, so every run and every machine scores the same text; the 4x corpus starts with the 1x corpus.
import { readdirSync, readFileSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** mulberry32: small, seeded, good enough to pick paragraphs (the tests' random cases use it too). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function paragraphs(root: string): string[] {
  const out: string[] = [];
  const add = (text: string) => {
    for (const p of text.split(/\n\s*\n/)) {
      const t = p.replace(/\s+/g, ' ').trim();
      if (t.length >= 40) out.push(t);
    }
  };
  const lic = '/usr/share/common-licenses';
  for (const f of readdirSync(lic).sort()) {
    const p = join(lic, f);
    if (statSync(p).isFile()) add(readFileSync(p, 'utf8'));
  }
  for (const f of ['clean_docs.json', 'noisy_docs.json', 'unicode_docs.json']) {
    const docs = JSON.parse(readFileSync(join(root, 'fixtures', 'corpus', f), 'utf8')) as { text: string }[];
    for (const d of docs) add(d.text);
  }
  if (out.length < 100) throw new Error(`bench corpus: only ${out.length} paragraphs found under ${lic} and fixtures/corpus/`);
  return out;
}

export interface CorpusSpec {
  docs: number;
  /** Median document length in characters; lengths are log-normal with sigma. */
  medianChars: number;
  sigma: number;
  seed: number;
}

/** Write `docs` JSONL records {id, text}; returns total characters. */
export function writeCorpus(root: string, path: string, spec: CorpusSpec): { docs: number; chars: number } {
  const paras = paragraphs(root);
  const rand = rng(spec.seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  const lines: string[] = [];
  let chars = 0;
  for (let i = 0; i < spec.docs; i++) {
    const target = Math.min(60_000, Math.max(20, Math.round(spec.medianChars * Math.exp(spec.sigma * gauss()))));
    let text = '';
    while (text.length < target) text += (text ? '\n\n' : '') + paras[Math.floor(rand() * paras.length)];
    text = text.slice(0, target);
    chars += text.length;
    lines.push(JSON.stringify({ id: `bench-${i}`, text }));
  }
  writeFileSync(path, lines.join('\n') + '\n');
  return { docs: spec.docs, chars };
}
