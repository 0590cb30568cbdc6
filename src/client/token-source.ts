import { readFile } from 'node:fs/promises';
import { TokenUnavailableError } from './errors';

/**
 * Where the bearer token comes from: a fixed string, a function (called per request), or a file that is
 * re-read at every request, because SPIFFE helpers and Kubernetes rotate the file in place.
 */
export type TokenSource = string | (() => Promise<string>) | { file: string };

/** Printable ASCII only: anything else cannot go in a header, and Node's error for it would echo the token. */
const HEADER_SAFE = /^[\x21-\x7e]+$/;

export async function resolveToken(source: TokenSource): Promise<string> {
  let token: string;
  let from: string;
  if (typeof source === 'string') {
    token = source;
    from = 'the configured token';
  } else if (typeof source === 'function') {
    token = await source();
    from = 'the token function';
  } else {
    from = `token file ${source.file}`;
    try {
      token = await readFile(source.file, 'utf8');
    } catch (err) {
      throw new TokenUnavailableError(`cannot read ${from}: ${(err as NodeJS.ErrnoException).code ?? 'read failed'}`);
    }
  }
  token = typeof token === 'string' ? token.trim() : '';
  if (!token) throw new TokenUnavailableError(`${from} is empty`);
  if (!HEADER_SAFE.test(token)) throw new TokenUnavailableError(`${from} contains characters a token cannot have`);
  return token;
}
