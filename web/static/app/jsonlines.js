// Where each value of a JSON text starts: path (as the API names fields,
// `orders[1].rule.geometry.radius_m`) to its 1-based line. Tolerant: on a
// syntax error it returns what it found so far.

export function jsonLines(text) {
  const lines = new Map();
  let i = 0;
  let line = 1;
  const n = text.length;
  const fail = () => {
    throw new SyntaxError('json');
  };
  function ws() {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 10) {
        line++;
        i++;
      } else if (c === 32 || c === 9 || c === 13) i++;
      else break;
    }
  }
  function str() {
    if (text[i] !== '"') fail();
    i++;
    let out = '';
    while (i < n && text[i] !== '"') {
      if (text[i] === '\\') {
        out += text[i + 1] || '';
        i += 2;
      } else {
        if (text[i] === '\n') line++;
        out += text[i++];
      }
    }
    if (i >= n) fail();
    i++;
    return out;
  }
  function value(path) {
    ws();
    if (!lines.has(path)) lines.set(path, line);
    const c = text[i];
    if (c === '{') {
      i++;
      ws();
      if (text[i] === '}') {
        i++;
        return;
      }
      for (;;) {
        ws();
        const keyLine = line;
        const k = str();
        const p = path ? `${path}.${k}` : k;
        lines.set(p, keyLine);
        ws();
        if (text[i] !== ':') fail();
        i++;
        value(p);
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return;
        }
        fail();
      }
    } else if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') {
        i++;
        return;
      }
      for (let k = 0; ; k++) {
        const p = `${path}[${k}]`;
        ws();
        lines.set(p, line);
        value(p);
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return;
        }
        fail();
      }
    } else if (c === '"') {
      str();
    } else {
      const start = i;
      while (i < n && !/[,\]}\s]/.test(text[i])) i++;
      if (i === start) fail();
    }
  }
  try {
    value('');
  } catch {
    // Partial map.
  }
  return lines;
}

/** The line of `field`, or of its nearest parent that has one. */
export function lineOf(lines, field) {
  let f = String(field || '');
  while (f) {
    if (lines.has(f)) return lines.get(f);
    const cut = Math.max(f.lastIndexOf('.'), f.lastIndexOf('['));
    if (cut <= 0) break;
    f = f.slice(0, cut);
  }
  return lines.get(f) ?? null;
}

/** Line and column of a JSON.parse error, from Chromium's message. */
export function parseErrorPosition(text, error) {
  const msg = String(error && error.message);
  let m = msg.match(/line (\d+) column (\d+)/);
  if (m) return { line: +m[1], column: +m[2] };
  m = msg.match(/position (\d+)/);
  if (m) {
    const pos = +m[1];
    const before = text.slice(0, pos);
    const line = before.split('\n').length;
    return { line, column: pos - before.lastIndexOf('\n') };
  }
  return { line: null, column: null };
}
