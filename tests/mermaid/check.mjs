// Parse Mermaid diagrams with Mermaid's own parser (tests/test_review.py).
// stdin: a JSON list of diagram texts; stdout: a JSON list, null for a diagram that parses, else the error.
import fs from 'node:fs';
import { JSDOM } from 'jsdom';

const dom = new JSDOM('<!doctype html><html><body></body></html>');
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import('mermaid');

const results = [];
for (const text of JSON.parse(fs.readFileSync(0, 'utf8'))) {
  try {
    await mermaid.parse(text);
    results.push(null);
  } catch (error) {
    results.push(String(error.message || error));
  }
}
process.stdout.write(JSON.stringify(results));
