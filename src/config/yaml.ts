/**
 * YAML reading that remembers where every key came from. Validators work on plain values (the same
 * code validates JSON from the authority API), and ask {@link YamlDocument.lineOf} for the line of a
 * key path such as `ports[0].protocol`, so every problem reads `file:line: path: message`.
 * Syntax errors and duplicate keys become ConfigError problems with their line.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { CST, Lexer, LineCounter, isMap, isScalar, isSeq, parseDocument, type Node } from 'yaml';
import { ConfigError, type ConfigProblem } from '../errors.js';
import { indexPath, keyPath } from './schema.js';

/** A parsed YAML file: its plain value plus the source line of every key and list entry. */
export interface YamlDocument {
  /** The file name as given by the operator; used in problems. */
  readonly file: string;
  /** Absolute path of the file. */
  readonly path: string;
  /** Absolute folder of the file: relative paths inside it resolve against this. */
  readonly dir: string;
  /** The document as plain JSON-like data (YAML 1.2 core schema: `yes` stays a string). */
  readonly value: unknown;
  /** 1-based line of `keyPath`, or of its nearest ancestor that has one; 0 for the document. */
  readonly lineOf: (keyPath: string) => number;
}

/**
 * Read and parse a YAML file.
 * @throws ConfigError when the file cannot be read or is not well-formed YAML.
 */
export function readYamlFile(file: string): YamlDocument {
  const abs = resolve(file);
  let text: string;
  try {
    text = readFileSync(abs, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT' ? 'file not found' : code === 'EISDIR' ? 'is a directory' : (err as Error).message;
    throw new ConfigError([{ file, line: 0, path: '', message: `cannot read config: ${why}` }]);
  }
  return parseYamlText(text, file, abs);
}

/**
 * Parse YAML text. `file` names it in problems; `absPath` (default: `file` resolved against the
 * working directory) is where it lives, whose folder relative paths inside it resolve against.
 * @throws ConfigError on syntax errors, duplicate keys, non-string keys and multiple documents.
 */
export function parseYamlText(text: string, file: string, absPath: string = resolve(file)): YamlDocument {
  const deep = tooDeep(text);
  if (deep !== undefined) throw new ConfigError([{ file, line: deep.line, path: '', message: deep.message }]);
  const lineCounter = new LineCounter();
  // uniqueKeys off: duplicates are reported below with their key path, which the parser cannot do.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: false });
  const lineAt = (offset: number): number => lineCounter.linePos(offset).line;
  const problems: ConfigProblem[] = [];
  for (const e of [...doc.errors, ...doc.warnings]) {
    problems.push({
      file,
      line: lineAt(e.pos[0]),
      path: '',
      message: `YAML: ${yamlMessage(e.code, e.message)}`,
    });
  }
  const lines = new Map<string, number>();
  if (problems.length === 0) walk(doc.contents, '', { file, lines, lineAt, problems });
  if (problems.length > 0) throw new ConfigError(problems);

  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw new ConfigError([{ file, line: 0, path: '', message: `YAML: ${(err as Error).message}` }]);
  }
  return {
    file,
    path: absPath,
    dir: dirname(absPath),
    value,
    lineOf: (path: string): number => {
      for (let p = path; p !== ''; p = parentPath(p)) {
        const line = lines.get(p);
        if (line !== undefined) return line;
      }
      return 0;
    },
  };
}

/** Flow collections (`[`, `{`) open at once, at most. */
export const MAX_FLOW_DEPTH = 64;
/** Columns of indentation plus block indicators (`- `, `? `) before a line's content, at most. */
export const MAX_BLOCK_DEPTH = 256;

/**
 * A first look for nesting no config or license file has: the parser and the walks over its
 * result recurse once per level, and a request body of nothing but `[` (100 KB is 50,000 levels)
 * exhausted the stack, then crashed the process.
 *
 * - Block nesting is bounded from the text: a line's depth is at most its indentation plus its
 *   leading `- ` and `? ` indicators (an over-count: quoted or literal text counts too).
 * - Flow nesting is counted on the tokens of yaml's own lexer, which does not recurse, so a
 *   bracket inside quotes or a comment neither opens nor closes anything (a plain count of the
 *   characters could be fooled by closing brackets hidden in quotes). It stops at the first
 *   collection past the bound.
 */
function tooDeep(text: string): { line: number; message: string } | undefined {
  let line = 1;
  let atStart = true;
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x0a) {
      line++;
      atStart = true;
      depth = 0;
      continue;
    }
    if (!atStart) continue;
    if (c === 0x20 || c === 0x09) depth++;
    else if (
      (c === 0x2d || c === 0x3f) &&
      (text.charCodeAt(i + 1) === 0x20 || text.charCodeAt(i + 1) === 0x09)
    )
      depth++;
    else atStart = false;
    if (depth > MAX_BLOCK_DEPTH)
      return {
        line,
        message:
          `YAML: nested more than ${MAX_BLOCK_DEPTH} levels deep (indentation and "- " entries ` +
          'before the content of this line); no config or license file needs that',
      };
  }
  let flow = 0;
  let at = 0; // offset in `text` of the token
  for (const token of new Lexer().lex(text)) {
    if (token === '[' || token === '{') {
      if (++flow > MAX_FLOW_DEPTH)
        return {
          line: lineAt(text, at),
          message:
            `YAML: more than ${MAX_FLOW_DEPTH} "[" or "{" open at once; ` +
            'no config or license file needs that',
        };
    } else if (token === ']' || token === '}') flow--;
    // The lexer's own markers (document, scalar, flow end) are not text.
    if (token !== CST.DOCUMENT && token !== CST.SCALAR && token !== CST.FLOW_END) at += token.length;
  }
  return undefined;
}

/** 1-based line of `offset` in `text`. */
function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) line++;
  return line;
}

interface WalkState {
  file: string;
  lines: Map<string, number>;
  lineAt(offset: number): number;
  problems: ConfigProblem[];
}

function walk(node: unknown, path: string, st: WalkState): void {
  if (isMap(node)) {
    const first = new Map<string, number>();
    for (const pair of node.items) {
      const key = pair.key as Node | null;
      const keyLine = key?.range ? st.lineAt(key.range[0]) : (st.lines.get(path) ?? 0);
      if (!isScalar(key) || (typeof key.value !== 'string' && typeof key.value !== 'number')) {
        st.problems.push({ file: st.file, line: keyLine, path, message: 'keys must be plain strings' });
        continue;
      }
      const name = String(key.value);
      const p = keyPath(path, name);
      const seen = first.get(name);
      if (seen !== undefined) {
        st.problems.push({
          file: st.file,
          line: keyLine,
          path: p,
          message: `duplicate key (first at line ${seen})`,
        });
        continue;
      }
      first.set(name, keyLine);
      st.lines.set(p, keyLine);
      walk(pair.value, p, st);
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => {
      const p = indexPath(path, i);
      const range = (item as Node | null)?.range;
      if (range) st.lines.set(p, st.lineAt(range[0]));
      walk(item, p, st);
    });
  }
}

/** `ports[0].protocol` -> `ports[0]` -> `ports` -> ``. */
function parentPath(p: string): string {
  const m = /^(.*?)(?:\.[^.[\]]+|\[[^\]]*\])$/.exec(p);
  return m ? (m[1] ?? '') : '';
}

/** The parser's message without its position suffix (the line is reported separately). */
function yamlMessage(code: string, message: string): string {
  if (code === 'MULTIPLE_DOCS') return 'more than one document ("---") in one file';
  return message.replace(/ at line \d+, column \d+.*$/s, '').trim();
}
