/** Test helper: true when `text` is well-formed XML as far as tags go (balanced, properly
 * nested, no stray `<` or `&`), which is what a browser needs to draw an SVG. */
export function parse(text: string): boolean {
  const stack: string[] = [];
  const tag = /<(\/?)([a-zA-Z][\w-]*)([^<>]*?)(\/?)>|<|&(?!amp;|lt;|gt;|quot;)/g;
  for (const m of text.matchAll(tag)) {
    if (m[2] === undefined) return false;
    if (m[1]) {
      if (stack.pop() !== m[2]) return false;
    } else if (!m[4]) stack.push(m[2]);
  }
  return stack.length === 0;
}
