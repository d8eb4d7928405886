// The medcne map viewer: regl-scatterplot draws, pans, zooms, hovers and selects
// (box and lasso); this file wires those events to the side panel (image, legend,
// selection grid, annotation, label suggestion, QC filter, CSV export). Data comes
// from data.js as window.MEDCNE_DATA, written by medcne/viewer/build.py.
// Modules: camera.js (fit the map to the window), labels.js (annotation layers),
// knn.js (label suggestion), store.js (annotations kept in the browser),
// csv.js (export), qc.js (the run's qc.csv), marks.js (point size, the ring on
// the point shown), axes.js (pairs of axes of 3-D maps), source.js (where an
// image came from: provenance columns, the tile's box on its slide).
import createScatterplot from 'regl-scatterplot';
import { AXES, PAIRS, extent, normalise, rawAxes, setupAxes } from './axes.js';
import { bounds, createFitter } from './camera.js';
import { annotationsCsv, download } from './csv.js';
import { knnVote } from './knn.js';
import { K_NEIGHBOURS, Labels } from './labels.js';
import { baseSize, createRing, zoomFactor } from './marks.js';
import { qcLines, qcMask, setupQc } from './qc.js';
import { showSlide, sourceLines } from './source.js';
import { loadRecord, saveRecord, storageKey } from './store.js';

performance.mark('medcne-start'); // data.js is parsed by now: splits load time in the benchmark
const D = window.MEDCNE_DATA;
const $ = (id) => document.getElementById(id);
const N = D.n;
const GRID_MAX = 400; // thumbnails shown for a selection; more would only slow the page
const STORAGE_KEY = storageKey(D.runKey);
const fmt = (v) => v.toLocaleString('en');

// Coordinates in [-1, 1] (axes.js); nx, ny: the pair drawn now (x, y unless a 3-D map shows another).
// The margin around the map is the camera's business (camera.js), in screen pixels.
const coords = normalise(rawAxes(D));
let nx = coords[0];
let ny = coords[1];

const labels = new Labels(D);
const state = {
  hidden: new Set(), // label indices not shown
  qcFilter: 'all', // which QC flag a point needs to be shown
  selection: [],
  colorBy: 'class',
  valueB: new Float32Array(N),
  pair: 0, // index into PAIRS: the axes drawn
  shown: N, // points passing the legend and the QC filter
  mask: null, // the QC filter's mask (qc.js), null: all
};

const canvas = $('canvas');
// Base size for the points shown on this canvas; marks.js scales it with the zoom.
const basePointSize = () => {
  const { width, height } = canvas.getBoundingClientRect();
  return baseSize(state.shown, width, height);
};
const scatterplot = createScatterplot({
  canvas,
  pointSize: basePointSize(),
  pointScaleMode: 'constant', // marks.js sets the size for the zoom itself
  opacity: N <= 10000 ? 0.9 : 0.7,
  pointColorActive: '#000000',
  pointColorHover: '#ff2020',
  backgroundColor: '#ffffff',
  lassoColor: '#2060c0',
});
const fitter = createFitter(scatterplot, canvas, () => bounds(nx, ny), basePointSize);
const ring = createRing($('ring'), scatterplot);
let spatialIndex;

// Point size for the points shown, the canvas and the zoom; the ring follows.
function resizePoints() {
  const size = basePointSize() * zoomFactor(fitter.distance(), scatterplot.get('cameraDistance'));
  if (Math.abs(size - scatterplot.get('pointSize')) > 0.02) {
    scatterplot.set({ pointSize: size, pointSizeSelected: size });
  }
  ring.place();
}

function points() {
  return { x: nx, y: ny, valueA: labels.cur, valueB: state.valueB };
}

// Draws run one after another: the library refuses a draw while the previous one is unfinished
// (a quick succession of filter and legend clicks on a busy machine).
let drawing = Promise.resolve();
function redraw() {
  drawing = drawing.then(drawNow, drawNow);
  return drawing;
}

async function drawNow() {
  const filter = visibleIndices();
  resizePoints(); // the number shown may have changed
  await scatterplot.draw(points(), {
    zDataType: 'categorical',
    wDataType: 'continuous',
    spatialIndex, // built once per pair of axes shown (setPair drops it)
    select: state.selection,
    filter,
  });
  spatialIndex = scatterplot.get('spatialIndex');
  ring.place();
}

// Points passing the legend (hidden labels) and the QC filter; undefined: all.
function visibleIndices() {
  const mask = qcMask(D, state.qcFilter);
  let keep;
  if (state.hidden.size > 0 || mask) {
    keep = [];
    for (let i = 0; i < N; i++) if (!state.hidden.has(labels.cur[i]) && (!mask || mask[i])) keep.push(i);
  }
  state.mask = mask;
  state.shown = keep ? keep.length : N;
  $('shown-count').textContent = `${fmt(state.shown)} shown`;
  return keep;
}

// Whether point i passes the legend and the QC filter.
function isShown(i) {
  return !state.hidden.has(labels.cur[i]) && (!state.mask || state.mask[i] === 1);
}

// ---- thumbnails from sprite sheets --------------------------------------
// A page of millions of points holds thumbnails of a sample (sprites.points, sorted point
// indices; build.py): tile k shows the sample's k-th point, -1 means no thumbnail.
const tileOf = (() => {
  const pts = D.sprites.points;
  if (!pts) return (i) => i;
  const slot = new Int32Array(N).fill(-1);
  pts.forEach((p, k) => { slot[p] = k; });
  return (i) => slot[i];
})();
const SAMPLE_NOTE = D.sprites.points
  ? `none: this page holds thumbnails of a sample of ${fmt(D.sprites.points.length)} of ${fmt(N)} images`
  : '';

function showTile(el, i, side) {
  const s = D.sprites;
  const k = tileOf(i);
  el.toggleAttribute('data-no-thumb', k < 0);
  if (k < 0) {
    el.style.backgroundImage = 'none';
    return;
  }
  const sheet = Math.floor(k / s.perSheet);
  const j = k % s.perSheet;
  const scale = side / s.tile;
  const { file, width, height } = s.sheets[sheet];
  el.style.backgroundImage = `url("${file}")`;
  el.style.backgroundSize = `${width * scale}px ${height * scale}px`;
  el.style.backgroundPosition = `${-(j % s.cols) * side}px ${-Math.floor(j / s.cols) * side}px`;
}

function showPoint(i) {
  showTile($('hover-image'), i, 168);
  showPointText(i);
  const dup = D.qc ? D.qc.duplicate[i] : -1;
  $('hover-duplicate').hidden = dup < 0;
  if (dup >= 0) showTile($('hover-duplicate'), dup, 56); // the pair side by side tells at a glance
  showSlide($('hover-slide'), D, i, 316);
  ring.show(i);
  $('hover').dataset.index = i;
}

// The panel's lines for point i; written again on every change of labels (labelsChanged), so that
// the point shown never keeps a line of a suggestion accepted, cleared or replaced since.
function showPointText(i) {
  const box = $('hover-text');
  box.replaceChildren();
  const old = D.labeled ? D.classNames[D.labels[i]] : '';
  const a = labels.annotation(i);
  const lines = [
    ['id', D.ids[i]],
    ['label', old || '(none)'],
    ...(a && a.source === 'manual' ? [['new label', a.name]] : []),
    ...(a && a.source === 'suggested'
      ? [['suggested label', `${a.name} (${Math.round(a.agree * 100)}% of neighbours${a.pending ? ', to review' : ''})`]]
      : []),
    ...(tileOf(i) < 0 ? [['thumbnail', SAMPLE_NOTE]] : []),
    ...qcLines(D, i, labels.names[labels.cur[i]]),
    ...sourceLines(D, i),
    D.dim === 3 ? ['x, y, z', `${D.x[i]}, ${D.y[i]}, ${D.z[i]}`] : ['x, y', `${D.x[i]}, ${D.y[i]}`],
  ];
  for (const [k, v] of lines) {
    const div = document.createElement('div');
    div.dataset.field = k;
    div.append(Object.assign(document.createElement('b'), { textContent: `${k}: ` }), v);
    box.append(div);
  }
}

// ---- colour and legend ----------------------------------------------------
// Share of neighbours agreeing with each point's suggestion; manual labels count as sure.
function agreement() {
  return Array.from({ length: N }, (_, i) => {
    const a = labels.annotation(i);
    return a ? (a.source === 'manual' ? 1 : a.agree) : null;
  });
}

function setColorBy(name) {
  state.colorBy = name;
  const isClass = name === 'class';
  if (!isClass) {
    const v = name === 'suggestion agreement' ? agreement() : AXES.includes(name) ? D[name] : D.columns[name];
    const [lo, hi] = extent(v);
    // Missing values (null in data.js) take the low end of the ramp.
    state.valueB = Float32Array.from(v, (a) => (a === null || !Number.isFinite(a) ? 0 : (a - lo) / (hi - lo || 1)));
    $('ramp').style.background = `linear-gradient(to right, ${D.ramp.filter((_, k) => k % 16 === 0).join(',')})`;
    $('ramp-lo').textContent = lo.toPrecision(3);
    $('ramp-hi').textContent = hi.toPrecision(3);
  }
  $('ramp-box').hidden = isClass;
  scatterplot.set({
    colorBy: isClass ? 'valueA' : 'valueB',
    pointColor: isClass ? labels.palette : D.ramp,
  });
  return redraw();
}

// The "Colour by" menu; suggestion agreement only while there are suggestions.
function renderColorOptions() {
  const select = $('color-by');
  const hasSuggestions = labels.pending || labels.accepted;
  const axes = AXES.slice(0, D.dim === 3 ? 3 : 2).map((a) => [a, a]);
  const options = [['class', D.labeled ? 'class' : 'class (none)'], ...Object.keys(D.columns).map((c) => [c, c]), ...axes];
  if (hasSuggestions) options.push(['suggestion agreement', 'suggestion agreement']);
  select.replaceChildren(...options.map(([value, textContent]) => Object.assign(document.createElement('option'), { value, textContent })));
  if (!options.some(([value]) => value === state.colorBy)) state.colorBy = 'class';
  select.value = state.colorBy;
}

// Counts follow the QC filter: each class's count is what the map would show of
// it (a hidden class keeps its count, so the user sees what showing it adds).
function renderLegend() {
  const counts = new Array(labels.names.length).fill(0);
  const totals = new Array(labels.names.length).fill(0);
  const mask = qcMask(D, state.qcFilter);
  for (let i = 0; i < N; i++) {
    totals[labels.cur[i]]++;
    if (!mask || mask[i]) counts[labels.cur[i]]++;
  }
  const filter = mask ? $('qc-filter').selectedOptions[0]?.textContent.replace(/ \(.*/, '') : '';
  $('legend-title').textContent = mask ? `Classes (${filter} only)` : 'Classes';
  const ul = $('legend');
  ul.replaceChildren();
  labels.names.forEach((name, k) => {
    if (totals[k] === 0 && k >= D.classNames.length) return;
    const li = document.createElement('li');
    li.dataset.class = name;
    li.classList.toggle('hidden', state.hidden.has(k));
    const sw = Object.assign(document.createElement('span'), { className: 'swatch' });
    sw.style.background = labels.palette[k];
    const count = Object.assign(document.createElement('span'), { className: 'count', textContent: fmt(counts[k]) });
    li.append(sw, name, count);
    li.dataset.total = totals[k];
    li.title = `click to hide or show this class${mask ? ` (${fmt(counts[k])} of ${fmt(totals[k])} pass the filter)` : ''}`;
    li.onclick = () => {
      if (state.hidden.has(k)) state.hidden.delete(k);
      else state.hidden.add(k);
      renderLegend();
      redraw();
    };
    ul.append(li);
  });
  $('label-options').replaceChildren(...labels.names.map((n) => Object.assign(document.createElement('option'), { value: n })));
}

// ---- selection, annotation, suggestion ------------------------------------------
function onSelect(indices) {
  state.selection = Array.from(indices);
  $('selection-count').textContent = `${fmt(state.selection.length)} selected`;
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
  $('grid-note').textContent = more > 0 ? `and ${fmt(more)} more` : '';
}

// After any change of labels: panel, legend, colours, map, and the browser's copy.
// note: what a press of Suggest has to say when it suggested nothing (shown until the next change).
function labelsChanged(note = '') {
  const pending = labels.count(labels.pending);
  const accepted = labels.count(labels.accepted);
  $('annotation-count').textContent = `${fmt(labels.manual.size)} annotated`;
  const suggest = $('suggest');
  suggest.disabled = !labels.canSuggest();
  suggest.title = suggest.disabled
    ? 'nothing to learn from yet: label some images first'
    : `label the images that have no label like their ${K_NEIGHBOURS} nearest labelled images (to review, then accept)`;
  $('suggestions').hidden = pending + accepted === 0 && !note;
  const status = pending > 0 ? `${fmt(pending)} suggested labels to review` : accepted > 0 ? `${fmt(accepted)} suggested labels accepted` : '';
  $('suggest-count').textContent = [note, status].filter(Boolean).join('; ');
  $('suggest-accept').disabled = pending === 0;
  for (const id of ['suggest-accept', 'suggest-clear']) $(id).hidden = pending + accepted === 0;
  $('save-note').textContent = saveRecord(STORAGE_KEY, labels.isEmpty() ? null : labels.toRecord());
  const shown = $('hover').dataset.index;
  if (shown !== undefined) showPointText(Number(shown));
  renderLegend();
  renderColorOptions();
  return setColorBy(state.colorBy); // new labels need colours; agreement may have changed
}

// The label box's text names a label as labels.namesMeant reads it: a class picked from the list is that
// class, spaces around its name and all. A name that could be several labels labels nothing: the note asks
// for one of them (the list offers each as written).
function labelSelection() {
  const typed = $('label-input').value;
  const meant = labels.namesMeant(typed);
  $('label-note').textContent = meant.length > 1
    ? `${JSON.stringify(typed.trim())} could be any of the labels ${meant.map((n) => JSON.stringify(n)).join(', ')}: pick one from the list`
    : '';
  if (meant.length !== 1 || state.selection.length === 0) return;
  labels.label(state.selection, meant[0]);
  labelsChanged();
}

function suggest() {
  $('suggest-count').textContent = 'suggesting…';
  $('suggestions').hidden = false;
  // Let the note paint before the work (about a second at 300,000 points).
  setTimeout(() => {
    const n = labels.suggest(nx, ny);
    labelsChanged(n === 0 ? 'nothing to suggest: every image has a label' : '');
  }, 20);
}

function clearAnnotations() {
  const n = labels.manual.size + labels.count(labels.pending) + labels.count(labels.accepted);
  if (n === 0) return;
  if (!window.confirm(`Clear all ${fmt(n)} annotated and suggested labels of this map? They are also removed from this browser; an exported CSV keeps its copy.`)) return;
  labels.reset();
  for (const k of state.hidden) if (k >= D.classNames.length) state.hidden.delete(k);
  labelsChanged();
}

// ---- find by id, modes --------------------------------------------------------
const idIndex = new Map(D.ids.map((id, i) => [id, i]));

function find() {
  // The id as typed first (an id may begin or end with a space), then without the spaces around it.
  const typed = $('find').value;
  const q = typed.trim();
  const i = idIndex.get(typed) ?? idIndex.get(q);
  const out = $('find-result');
  out.classList.toggle('error', i === undefined);
  if (i === undefined) {
    out.textContent = q ? `no image with id ${q}` : '';
    return;
  }
  out.textContent = '';
  // A found point must be visible to be selected.
  if (state.hidden.has(labels.cur[i])) {
    state.hidden.delete(labels.cur[i]);
    renderLegend();
  }
  if (qcMask(D, state.qcFilter)?.[i] === 0) setQcFilter('all');
  onSelect([i]); // draw() selects without an event, so update the panel here
  redraw().then(() => scatterplot.zoomToPoints([i], { padding: 40, transition: true }));
  showPoint(i);
}

function setQcFilter(value) {
  state.qcFilter = value;
  $('qc-filter').value = value;
  renderLegend();
  return redraw();
}

// A 3-D map: draw another pair of axes (PAIRS[k]) and fit it to the window.
function setPair(k) {
  state.pair = k;
  $('axes').value = String(k);
  [nx, ny] = PAIRS[k].map((a) => coords[a]);
  spatialIndex = undefined; // the index is of the coordinates drawn
  return redraw().then(() => fitter.fit());
}

// Pan mode draws a freeform lasso on Shift+drag (as the page's help says), whichever selection mode came before.
function setMode(mode) {
  for (const m of ['pan', 'box', 'lasso']) $(`mode-${m}`).setAttribute('aria-pressed', String(m === mode));
  scatterplot.set({ mouseMode: mode === 'pan' ? 'panZoom' : 'lasso', lassoType: mode === 'box' ? 'rectangle' : 'freeform' });
}

// ---- start ----------------------------------------------------------------------
function init() {
  const record = loadRecord(STORAGE_KEY);
  if (record) labels.fromRecord(record);
  $('color-by').onchange = () => setColorBy($('color-by').value);
  for (const m of ['pan', 'box', 'lasso']) $(`mode-${m}`).onclick = () => setMode(m);
  $('find-go').onclick = find;
  $('find').onkeydown = (e) => e.key === 'Enter' && find();
  $('label-apply').onclick = labelSelection;
  $('label-input').onkeydown = (e) => e.key === 'Enter' && labelSelection();
  $('export').onclick = () => download(annotationsCsv(D, labels, state.selection), `${D.title}-annotations.csv`);
  $('suggest').onclick = suggest;
  $('suggest-accept').onclick = () => {
    labels.accept();
    labelsChanged();
  };
  $('suggest-clear').onclick = () => {
    labels.clearSuggestions();
    labelsChanged();
  };
  $('clear-annotations').onclick = clearAnnotations;
  $('reset-view').onclick = () => fitter.fit({ transition: true });
  setupQc(D, $('qc-filter'), setQcFilter);
  setupAxes(D, $('axes'), setPair);
  ring.setVisible(isShown);
  scatterplot.subscribe('view', resizePoints);
  new ResizeObserver(resizePoints).observe(canvas);
  scatterplot.subscribe('pointOver', showPoint);
  scatterplot.subscribe('select', ({ points: p }) => onSelect(p));
  scatterplot.subscribe('deselect', () => onSelect([]));
  labelsChanged()
    .then(() => fitter.fit())
    .then(() => {
      // The benchmark and the tests wait for this mark: the first frame with all points.
      requestAnimationFrame(() => {
        performance.mark('medcne-first-frame');
        document.body.dataset.ready = 'true';
      });
    });
}

// Hooks for tests and power users in the console.
window.medcne = {
  scatterplot,
  state,
  labels,
  showPoint,
  fitter,
  setPair,
  knnVote: (seeds, seedLabels, queries, k = K_NEIGHBOURS, x = nx, y = ny) => knnVote(x, y, seeds, seedLabels, queries, k),
  screenPosition: (i) => scatterplot.getScreenPosition(i),
};
init();
