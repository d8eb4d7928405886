// Where an image came from (build.py's provenance: D.source.columns, one array
// per column such as slide, x, y, tile_size or series, slice), and for a slide
// tile a thumbnail of its slide with the tile's box (D.source.slides).

const TILE = ['slide', 'x', 'y', 'tile_size'];

// Value of point i in a column: numbers are plain arrays, text {names, codes} (build.py).
export function valueAt(column, i) {
  return column.codes ? column.names[column.codes[i]] : column[i];
}

// Hover lines, [field, text]: one per provenance column, empty values left out.
export function sourceLines(D, i) {
  const cols = D.source ? D.source.columns : {};
  const lines = [];
  for (const [name, values] of Object.entries(cols)) {
    const v = valueAt(values, i);
    if (v === null || v === undefined || v === '') continue;
    lines.push([name, typeof v === 'number' ? v.toLocaleString('en', { maximumFractionDigits: 4 }) : String(v)]);
  }
  return lines;
}

// The tile's box on its slide's thumbnail, in thumbnail px: {file, width, height, box: [x, y, w, h]}, or null.
export function tileOnSlide(D, i) {
  const src = D.source;
  if (!src || !TILE.every((c) => c in src.columns)) return null;
  const [slide, x, y, side] = TILE.map((c) => valueAt(src.columns[c], i));
  const thumb = src.slides[String(slide)];
  if (!thumb || ![x, y, side].every(Number.isFinite)) return null;
  const s = thumb.scale;
  return { file: thumb.file, width: thumb.width, height: thumb.height, box: [x / s, y / s, side / s, side / s] };
}

// Shows the slide of point i in `el` (a box holding an image and a .tile-box), scaled to `maxWidth` px.
export function showSlide(el, D, i, maxWidth) {
  const t = tileOnSlide(D, i);
  el.hidden = !t;
  if (!t) return;
  const k = Math.min(1, maxWidth / t.width);
  const img = el.querySelector('img');
  if (img.getAttribute('src') !== t.file) img.src = t.file;
  img.style.width = `${t.width * k}px`;
  img.style.height = `${t.height * k}px`;
  const [bx, by, bw, bh] = t.box.map((v) => v * k);
  // At least 4 px, centred on the tile: a small tile on a big slide stays findable.
  const w = Math.max(4, bw);
  const h = Math.max(4, bh);
  Object.assign(el.querySelector('.tile-box').style, {
    left: `${bx + bw / 2 - w / 2}px`,
    top: `${by + bh / 2 - h / 2}px`,
    width: `${w}px`,
    height: `${h}px`,
  });
}
