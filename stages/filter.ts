// The extension point between reading and tokenizing: stages over documents. A filter's dropped documents
// become rejects with the filter's name and reason (in `_rho/rejects/`, the accounting and the stage's
// `rejected` counter): nothing vanishes silently.
import type { Document, Flow } from '../schemas/types.js';
import { stage, type Stage } from './stage.js';

/** Keep a document: true. Drop it: false, or a string that says why. */
export type DocumentPredicate = (doc: Document) => boolean | string | Promise<boolean | string>;

/** A filter stage: documents the predicate drops become rejects `{ field: 'text', reason: '<name>: <why>' }`. */
export function filterDocuments(name: string, keep: DocumentPredicate): Stage<Flow<Document>, Flow<Document>> {
  return stage(name, async function* (input) {
    for await (const it of input) {
      if (it.kind !== 'doc') { yield it; continue; }
      const verdict = await keep(it.doc);
      if (verdict === true) { yield it; continue; }
      const why = typeof verdict === 'string' ? verdict : 'dropped by the filter';
      const { source, row, id } = it.doc;
      yield { kind: 'reject', unit: it.unit, reject: { source, row, id, field: 'text', reason: `${name}: ${why}` } };
    }
  });
}

/** A transform stage: each document's text (or id) rewritten, e.g. normalised; return a string to drop it as a reject with that reason. */
export function mapDocuments(name: string, f: (doc: Document) => Document | string | Promise<Document | string>): Stage<Flow<Document>, Flow<Document>> {
  return stage(name, async function* (input) {
    for await (const it of input) {
      if (it.kind !== 'doc') { yield it; continue; }
      const out = await f(it.doc);
      if (typeof out === 'string') {
        const { source, row, id } = it.doc;
        yield { kind: 'reject', unit: it.unit, reject: { source, row, id, field: 'text', reason: `${name}: ${out}` } };
      } else yield { kind: 'doc', unit: it.unit, doc: { ...out, source: it.doc.source, row: it.doc.row } };
    }
  });
}
