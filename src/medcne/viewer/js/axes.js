// The map's axes: 2-D maps have x and y; 3-D maps (fit --dim 3) x, y and z,
// shown one pair at a time (x/y, x/z, y/z) on the flat canvas, chosen in the header.

export const AXES = ['x', 'y', 'z'];
export const PAIRS = [
  [0, 1],
  [0, 2],
  [1, 2],
];

// [min, max] of the finite values; a loop, as Math.min(...a) overflows the stack at 300,000.
export function extent(a) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of a) {
    if (v === null || !Number.isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return [lo, hi];
}

// The raw coordinate arrays of data.js, one per axis.
export function rawAxes(D) {
  return D.dim === 3 && D.z ? [D.x, D.y, D.z] : [D.x, D.y];
}

// regl-scatterplot wants coordinates in [-1, 1]. One scale for all axes keeps
// shapes, and keeps distances comparable when the user switches pairs.
export function normalise(axes) {
  const ranges = axes.map(extent);
  const half = Math.max(...ranges.map(([lo, hi]) => hi - lo)) / 2 || 1;
  return axes.map((a, k) => {
    const c = (ranges[k][0] + ranges[k][1]) / 2;
    return Float32Array.from(a, (v) => (v - c) / half);
  });
}

// Fills the "Axes" menu of a 3-D map and shows it; 2-D maps keep it hidden.
export function setupAxes(D, select, onChange) {
  if (D.dim !== 3 || !D.z) return;
  select.replaceChildren(
    ...PAIRS.map(([a, b], k) => Object.assign(document.createElement('option'), { value: String(k), textContent: `${AXES[a]} / ${AXES[b]}` })),
  );
  select.onchange = () => onChange(Number(select.value));
  select.closest('label').hidden = false;
}
