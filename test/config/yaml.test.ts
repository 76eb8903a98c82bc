import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseYamlText, readYamlFile } from '../../src/config/yaml.js';
import { configErrorOf } from '../helpers/errors.js';
import { removeDir, tempDir } from '../helpers/tmp.js';

describe('parseYamlText', () => {
  it('keeps the line of every key and list entry', () => {
    const doc = parseYamlText(
      [
        'node: a',
        'ports:',
        '  - name: http',
        '    listen: 1.2.3.4:5',
        '  - { name: db }',
        'admin:',
        '  listen: x',
      ].join('\n'),
      'c.yaml',
    );
    expect(doc.value).toEqual({
      node: 'a',
      ports: [{ name: 'http', listen: '1.2.3.4:5' }, { name: 'db' }],
      admin: { listen: 'x' },
    });
    expect(doc.lineOf('node')).toBe(1);
    expect(doc.lineOf('ports')).toBe(2);
    expect(doc.lineOf('ports[0]')).toBe(3);
    expect(doc.lineOf('ports[0].listen')).toBe(4);
    expect(doc.lineOf('ports[1].name')).toBe(5);
    expect(doc.lineOf('admin.listen')).toBe(7);
  });

  it('falls back to the nearest ancestor, then 0', () => {
    const doc = parseYamlText('a:\n  b: 1\n', 'c.yaml');
    expect(doc.lineOf('a.missing')).toBe(1);
    expect(doc.lineOf('a.b[3].c')).toBe(2);
    expect(doc.lineOf('nothing.here')).toBe(0);
    expect(doc.lineOf('')).toBe(0);
  });

  it('reads YAML 1.2 core: yes/no and dates stay strings', () => {
    const doc = parseYamlText('a: yes\nb: 2026-11-28\nc: true\nd: 010\n', 'c.yaml');
    expect(doc.value).toEqual({ a: 'yes', b: '2026-11-28', c: true, d: 10 });
  });

  it('reports a syntax error with its line', () => {
    const err = configErrorOf(() => parseYamlText('a: 1\nb: 2\nc: @x\n', 'bad.yaml'));
    expect(err.problems).toEqual([
      {
        file: 'bad.yaml',
        line: 3,
        path: '',
        message: 'YAML: Plain value cannot start with reserved character @',
      },
    ]);
    expect(err.message).toBe('bad.yaml:3: YAML: Plain value cannot start with reserved character @');
    expect(err.code).toBe('CONFIG_INVALID');
    const indent = configErrorOf(() => parseYamlText('node: a\nports:\n  - name: x\n   bad: y\n', 'i.yaml'));
    expect(indent.problems[0]!.line).toBe(4);
  });

  it('reports tabs as indentation with the line', () => {
    const err = configErrorOf(() => parseYamlText('a:\n\tb: 1\n', 't.yaml'));
    expect(err.message).toContain('t.yaml:2: YAML:');
  });

  it('reports duplicate keys with both lines', () => {
    const err = configErrorOf(() => parseYamlText('a: 1\nb:\n  c: 1\n  c: 2\na: 3\n', 'd.yaml'));
    expect(err.message).toBe(
      'd.yaml:4: b.c: duplicate key (first at line 3)\nd.yaml:5: a: duplicate key (first at line 1)',
    );
  });

  it('rejects non-string keys and multiple documents', () => {
    expect(configErrorOf(() => parseYamlText('? [a]\n: 1\n', 'k.yaml')).message).toBe(
      'k.yaml:1: keys must be plain strings',
    );
    expect(configErrorOf(() => parseYamlText('a: 1\n---\nb: 2\n', 'm.yaml')).message).toBe(
      'm.yaml:2: YAML: more than one document ("---") in one file',
    );
  });

  it('rejects unknown tags', () => {
    expect(configErrorOf(() => parseYamlText('a: !secret x\n', 'tag.yaml')).message).toMatch(
      /^tag\.yaml:1: YAML: .*!secret/,
    );
  });

  it('resolves aliases into values', () => {
    const doc = parseYamlText('a: &x { b: 1 }\nc: *x\n', 'alias.yaml');
    expect(doc.value).toEqual({ a: { b: 1 }, c: { b: 1 } });
  });

  it('refuses nesting no config or license file needs, before the parser recurses into it', () => {
    // 50,000 levels of "[" once exhausted the stack of the authority's apply route, then crashed it.
    const flow = configErrorOf(() =>
      parseYamlText(`a: 1\nlicenses: ${'['.repeat(50_000)}${']'.repeat(50_000)}\n`, 'f.yaml'),
    );
    expect(flow.problems).toEqual([
      {
        file: 'f.yaml',
        line: 2,
        path: '',
        message: 'YAML: more than 64 "[" or "{" open at once; no config or license file needs that',
      },
    ]);
    // Closing brackets hidden in quotes or comments close nothing (a review found that a plain count
    // of characters let these through, and they crashed the process too).
    const quoted = `licenses: ${`${'['.repeat(60)}'${']'.repeat(60)}', `.repeat(800)}\n`;
    expect(configErrorOf(() => parseYamlText(quoted, 'q.yaml')).problems[0]).toMatchObject({ line: 1 });
    const commented = `licenses:\n${`  ${'['.repeat(60)} # ${']'.repeat(60)}\n`.repeat(800)}`;
    expect(configErrorOf(() => parseYamlText(commented, 'k.yaml')).problems[0]).toMatchObject({
      line: 3,
      message: expect.stringMatching(/^YAML: more than 64 "\[" or "\{" open at once/) as unknown,
    });
    const compact = configErrorOf(() => parseYamlText(`a:\n${'- '.repeat(200_000)}x\n`, 'c.yaml'));
    expect(compact.problems[0]).toMatchObject({ file: 'c.yaml', line: 2 });
    expect(compact.problems[0]!.message).toMatch(/^YAML: nested more than 256 levels deep/);
    let indented = 'a:\n';
    for (let i = 1; i <= 300; i++) indented += `${' '.repeat(i)}k${i}:\n`;
    expect(configErrorOf(() => parseYamlText(indented, 'i.yaml')).problems[0]).toMatchObject({ line: 258 });
  });

  it('takes nesting up to those bounds; brackets in quotes and comments open nothing', () => {
    const nested = `a: ${'['.repeat(64)}1${']'.repeat(64)}\n`;
    let v: unknown = (parseYamlText(nested, 'n.yaml').value as { a: unknown }).a;
    let depth = 0;
    while (Array.isArray(v)) {
      v = v[0];
      depth++;
    }
    expect(depth).toBe(64);
    const many = Array.from({ length: 1000 }, (_, i) => `k${i}: [[x], {y: [z]}, '[[[['] # {{{{`).join('\n');
    expect(Object.keys(parseYamlText(many, 'm.yaml').value as object)).toHaveLength(1000);
    let block = 'a:\n';
    for (let i = 1; i <= 100; i++) block += `${' '.repeat(2 * i)}k${i}:\n`;
    expect(parseYamlText(`${block}${' '.repeat(202)}end: 1\n`, 'b.yaml').lineOf('a.k1.k2')).toBe(3);
  });

  it('gives an empty document a null value', () => {
    expect(parseYamlText('# nothing\n', 'e.yaml').value).toBeNull();
  });
});

describe('readYamlFile', () => {
  let dir: string;
  beforeEach(() => {
    dir = tempDir('pl-yaml-');
  });
  afterEach(() => {
    removeDir(dir);
  });

  it('knows its absolute path and folder', () => {
    const f = join(dir, 'x.yaml');
    writeFileSync(f, 'a: 1\n');
    const doc = readYamlFile(f);
    expect(doc.path).toBe(f);
    expect(doc.dir).toBe(dir);
    expect(doc.file).toBe(f);
  });

  it('names a missing file and a folder as config errors', () => {
    expect(configErrorOf(() => readYamlFile(join(dir, 'nope.yaml'))).message).toBe(
      `${join(dir, 'nope.yaml')}: cannot read config: file not found`,
    );
    mkdirSync(join(dir, 'sub'));
    expect(configErrorOf(() => readYamlFile(join(dir, 'sub'))).message).toMatch(
      /cannot read config: is a directory/,
    );
  });
});
