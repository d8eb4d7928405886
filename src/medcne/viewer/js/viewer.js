// The medcne map viewer: regl-scatterplot draws, pans, zooms, hovers and selects
// (box and lasso); this file wires those events to the side panel (image, legend,
// selection grid, annotation, CSV export). Data comes from data.js as
// window.MEDCNE_DATA, written by medcne/viewer/build.py.
import createScatterplot from 'regl-scatterplot';

performance.mark('medcne-start'); // data.js is parsed by now: splits load time in the benchmark
const D = window.MEDCNE_DATA;
const $ = (id) => document.getElementById(id);
const N = D.n;
const GRID_MAX = 400; // thumbnails shown for a selection; more would only slow the page

// [min, max] of the finite values; a loop, as Math.min(...a) overflows the stack at 300,000.
function extent(a) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of a) {
    if (v === null || !Number.isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return [lo, hi];
}

// regl-scatterplot wants coordinates in [-1, 1]; one scale for both axes keeps shapes.
const [nx, ny] = (() => {
  const [x0, x1] = extent(D.x);
  const [y0, y1] = extent(D.y);
  const half = (Math.max(x1 - x0, y1 - y0) / 2) * 1.04 || 1;
  const cx = (x0 + x1) / 2;
  const cy = (y0 + y1) / 2;
  return [Float32Array.from(D.x, (v) => (v - cx) / half), Float32Array.from(D.y, (v) => (v - cy) / half)];
})();

const state = {
  names: [...D.classNames],
  palette: [...D.palette],
  cur: Int32Array.from(D.labels), // current label per point: the original one or the annotation
  annotations: new Map(), // point index -> new label name
  hidden: new Set(), // class indices not shown
  selection: [],
  colorBy: 'class',
  valueB: new Float32Array(N),
};

const canvas = $('canvas');
const scatterplot = createScatterplot({
  canvas,
  pointSize: N <= 10000 ? 4 : N <= 100000 ? 2.5 : 1.5,
  opacity: N <= 10000 ? 0.9 : 0.7,
  pointColorActive: '#000000',
  pointColorHover: '#ff2020',
  backgroundColor: '#ffffff',
  lassoColor: '#2060c0',
});
let spatialIndex;

function points() {
  return { x: nx, y: ny, valueA: state.cur, valueB: state.valueB };
}

async function redraw() {
  await scatterplot.draw(points(), {
    zDataType: 'categorical',
    wDataType: 'continuous',
    spatialIndex, // coordinates never change, so the index is built once
    select: state.selection,
    filter: visibleIndices(),
  });
  spatialIndex = scatterplot.get('spatialIndex');
}

function visibleIndices() {
  if (state.hidden.size === 0) return undefined;
  const keep = [];
  for (let i = 0; i < N; i++) if (!state.hidden.has(state.cur[i])) keep.push(i);
  return keep;
}

// ---- thumbnails from sprite sheets --------------------------------------
function showTile(el, i, side) {
  const s = D.sprites;
  const sheet = Math.floor(i / s.perSheet);
  const j = i % s.perSheet;
  const scale = side / s.tile;
  const { file, width, height } = s.sheets[sheet];
  el.style.backgroundImage = `url("${file}")`;
  el.style.backgroundSize = `${width * scale}px ${height * scale}px`;
  el.style.backgroundPosition = `${-(j % s.cols) * side}px ${-Math.floor(j / s.cols) * side}px`;
}

function showPoint(i) {
  showTile($('hover-image'), i, 168);
  const box = $('hover-text');
  box.replaceChildren();
  const old = D.labeled ? D.classNames[D.labels[i]] : '';
  const lines = [
    ['id', D.ids[i]],
    ['label', old || '(none)'],
    ...(state.annotations.has(i) ? [['new label', state.annotations.get(i)]] : []),
    ['x, y', `${D.x[i]}, ${D.y[i]}`],
  ];
  for (const [k, v] of lines) {
    const div = document.createElement('div');
    div.dataset.field = k;
    div.append(Object.assign(document.createElement('b'), { textContent: `${k}: ` }), v);
    box.append(div);
  }
  $('hover').dataset.index = i;
}

// ---- colour and legend ----------------------------------------------------
function setColorBy(name) {
  state.colorBy = name;
  const isClass = name === 'class';
  if (!isClass) {
    const v = name === 'x' ? D.x : name === 'y' ? D.y : D.columns[name];
    const [lo, hi] = extent(v);
    // Missing values (null in data.js) take the low end of the ramp.
    state.valueB = Float32Array.from(v, (a) => (a === null ? 0 : (a - lo) / (hi - lo || 1)));
    $('ramp').style.background = `linear-gradient(to right, ${D.ramp.filter((_, k) => k % 16 === 0).join(',')})`;
    $('ramp-lo').textContent = lo.toPrecision(3);
    $('ramp-hi').textContent = hi.toPrecision(3);
  }
  $('ramp-box').hidden = isClass;
  scatterplot.set({
    colorBy: isClass ? 'valueA' : 'valueB',
    pointColor: isClass ? state.palette : D.ramp,
  });
  return redraw();
}

function renderLegend() {
  const counts = new Array(state.names.length).fill(0);
  for (let i = 0; i < N; i++) counts[state.cur[i]]++;
  const ul = $('legend');
  ul.replaceChildren();
  state.names.forEach((name, k) => {
    if (counts[k] === 0 && k >= D.classNames.length) return;
    const li = document.createElement('li');
    li.dataset.class = name;
    li.classList.toggle('hidden', state.hidden.has(k));
    const sw = Object.assign(document.createElement('span'), { className: 'swatch' });
    sw.style.background = state.palette[k];
    const count = Object.assign(document.createElement('span'), { className: 'count', textContent: counts[k].toLocaleString('en') });
    li.append(sw, name, count);
    li.title = 'click to hide or show this class';
    li.onclick = () => {
      if (state.hidden.has(k)) state.hidden.delete(k);
      else state.hidden.add(k);
      renderLegend();
      redraw();
    };
    ul.append(li);
  });
  $('label-options').replaceChildren(...state.names.map((n) => Object.assign(document.createElement('option'), { value: n })));
}

// ---- selection, annotation, export ------------------------------------------
function onSelect(indices) {
  state.selection = Array.from(indices);
  $('selection-count').textContent = `${state.selection.length.toLocaleString('en')} selected`;
  const grid = $('grid');
  grid.replaceChildren();
  for (const i of state.selection.slice(0, GRID_MAX)) {
    const cell = document.createElement('div');
    cell.title = D.ids[i];
    cell.dataset.index = i;
    showTile(cell, i, 48);
    cell.onclick = () => showPoint(i);
    grid.append(cell);
  }
  const more = state.selection.length - GRID_MAX;
  $('grid-note').textContent = more > 0 ? `and ${more.toLocaleString('en')} more` : '';
}

function labelSelection() {
  const name = $('label-input').value.trim();
  if (!name || state.selection.length === 0) return;
  let k = state.names.indexOf(name);
  if (k < 0) {
    k = state.names.push(name) - 1;
    state.palette.push(D.spare[(k - D.classNames.length) % D.spare.length]);
    if (state.colorBy === 'class') scatterplot.set({ pointColor: state.palette });
  }
  for (const i of state.selection) {
    state.annotations.set(i, name);
    state.cur[i] = k;
  }
  $('annotation-count').textContent = `${state.annotations.size.toLocaleString('en')} annotated`;
  renderLegend();
  redraw();
}

function csvField(v) {
  const s = String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

// Rows: every annotated point and every selected one; new_label is empty for
// points only selected. Columns as medcne reads labels back: id, x, y, old_label, new_label.
function exportCsv() {
  const rows = [...new Set([...state.annotations.keys(), ...state.selection])].sort((a, b) => a - b);
  const lines = ['id,x,y,old_label,new_label'];
  for (const i of rows) {
    const old = D.labeled ? D.classNames[D.labels[i]] : '';
    lines.push([D.ids[i], D.x[i], D.y[i], old, state.annotations.get(i) ?? ''].map(csvField).join(','));
  }
  const url = URL.createObjectURL(new Blob([lines.join('\n') + '\n'], { type: 'text/csv' }));
  const a = Object.assign(document.createElement('a'), { href: url, download: `${D.title}-annotations.csv` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// ---- find by id, modes --------------------------------------------------------
const idIndex = new Map(D.ids.map((id, i) => [id, i]));

function find() {
  const q = $('find').value.trim();
  const i = idIndex.get(q);
  const out = $('find-result');
  out.classList.toggle('error', i === undefined);
  if (i === undefined) {
    out.textContent = q ? `no image with id ${q}` : '';
    return;
  }
  out.textContent = '';
  if (state.hidden.has(state.cur[i])) {
    state.hidden.delete(state.cur[i]); // a found point must be visible to be selected
    renderLegend();
  }
  onSelect([i]); // draw() selects without an event, so update the panel here
  redraw().then(() => scatterplot.zoomToPoints([i], { padding: 40, transition: true }));
  showPoint(i);
}

function setMode(mode) {
  for (const m of ['pan', 'box', 'lasso']) $(`mode-${m}`).setAttribute('aria-pressed', String(m === mode));
  scatterplot.set(
    mode === 'pan' ? { mouseMode: 'panZoom' } : { mouseMode: 'lasso', lassoType: mode === 'box' ? 'rectangle' : 'freeform' },
  );
}

// ---- start ----------------------------------------------------------------------
function init() {
  const select = $('color-by');
  const options = [['class', D.labeled ? 'class' : 'class (none)'], ...Object.keys(D.columns).map((c) => [c, c]), ['x', 'x'], ['y', 'y']];
  for (const [value, text] of options) select.append(Object.assign(document.createElement('option'), { value, textContent: text }));
  select.onchange = () => setColorBy(select.value);
  for (const m of ['pan', 'box', 'lasso']) $(`mode-${m}`).onclick = () => setMode(m);
  $('find-go').onclick = find;
  $('find').onkeydown = (e) => e.key === 'Enter' && find();
  $('label-apply').onclick = labelSelection;
  $('label-input').onkeydown = (e) => e.key === 'Enter' && labelSelection();
  $('export').onclick = exportCsv;
  $('reset-view').onclick = () => scatterplot.zoomToOrigin({ transition: true });
  scatterplot.subscribe('pointOver', showPoint);
  scatterplot.subscribe('select', ({ points: p }) => onSelect(p));
  scatterplot.subscribe('deselect', () => onSelect([]));
  renderLegend();
  setColorBy('class').then(() => {
    // The benchmark and the tests wait for this mark: the first frame with all points.
    requestAnimationFrame(() => {
      performance.mark('medcne-first-frame');
      document.body.dataset.ready = 'true';
    });
  });
}

// Hooks for tests and power users in the console.
window.medcne = { scatterplot, state, showPoint, screenPosition: (i) => scatterplot.getScreenPosition(i) };
init();
