import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, posix } from 'node:path';

/**
 * What the Docker image holds, worked out from the Dockerfile's COPY lines and .dockerignore (the build
 * context rules), without building it: the development signing key, and any config that trusts the dev
 * trust domain (whose signing key is public in this repository), must not be in it.
 */
const ROOT = join(__dirname, '..', '..');

function globToRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '*' && pattern[i + 1] === '*') {
      re += '.*';
      i++;
      if (pattern[i + 1] === '/') i++;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

function ignoredBy(patterns: RegExp[], path: string): boolean {
  // A pattern excludes a path when it matches the path or one of its parent directories.
  const parts = path.split('/');
  return parts.some((_, i) => patterns.some((p) => p.test(parts.slice(0, i + 1).join('/'))));
}

function filesUnder(rel: string): string[] {
  const full = join(ROOT, rel);
  if (!statSync(full).isDirectory()) return [rel];
  return readdirSync(full).flatMap((name) => filesUnder(posix.join(rel, name)));
}

function imageFiles(): { files: string[]; env: Record<string, string> } {
  const ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => globToRegExp(l.replace(/^\/+|\/+$/g, '')));
  const files = new Set<string>();
  const env: Record<string, string> = {};
  for (const line of readFileSync(join(ROOT, 'Dockerfile'), 'utf8').split('\n')) {
    const copy = /^\s*(?:COPY|ADD)\s+(?!--from)(.+)$/i.exec(line);
    if (copy) {
      const args = copy[1].trim().split(/\s+/).filter((a) => !a.startsWith('--'));
      for (const source of args.slice(0, -1)) {
        const rel = posix.normalize(source).replace(/^\.\/?|\/$/g, '') || '.';
        for (const file of rel === '.' ? readdirSync(ROOT).flatMap((n) => filesUnder(n)) : filesUnder(rel)) {
          if (!ignoredBy(ignore, file)) files.add(file);
        }
      }
    }
    const envLine = /^\s*ENV\s+([A-Z_][A-Z0-9_]*)[=\s]+(\S+)/i.exec(line);
    if (envLine) env[envLine[1]] = envLine[2];
  }
  return { files: [...files].sort(), env };
}

describe('the Docker image', () => {
  const { files, env } = imageFiles();

  it('is built from the sources (the check itself sees the COPY lines)', () => {
    expect(files).toContain('src/app.ts');
    expect(files).toContain('bin/tessera.js');
  });

  it('holds no development key: nothing from config/dev, no private JWK anywhere', () => {
    expect(files.filter((f) => f.startsWith('config/dev/'))).toEqual([]);
    const privateKeys = files.filter((f) => {
      if (!f.endsWith('.json')) return false;
      const text = readFileSync(join(ROOT, f), 'utf8');
      return /"kty"/.test(text) && /"d"\s*:/.test(text);
    });
    expect(privateKeys).toEqual([]);
  });

  it('holds no config that trusts the dev trust domain, and its default config is not one', () => {
    const configs = files.filter((f) => /\.ya?ml$/.test(f) && /^(config|etc)\//.test(f));
    const trusting = configs.filter((f) => /dev\.example|config\/dev\//.test(readFileSync(join(ROOT, f), 'utf8')));
    expect(trusting).toEqual([]);
    // The default config path resolves to nothing in the image (an operator mounts one) or to a clean file.
    const defaultConfig = env.TESSERA_CONFIG ?? 'config/tessera.yaml';
    const inImage = defaultConfig.replace(/^\/app\//, '');
    if (files.includes(inImage)) expect(readFileSync(join(ROOT, inImage), 'utf8')).not.toMatch(/dev\.example|config\/dev\//);
  });
});
