import { readFileSync } from 'node:fs';

/** rho's version, from package.json (written into every output's provenance). */
export const RHO_VERSION: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
