// Fitting the whole map into the canvas, at any window size.
//
// regl-scatterplot's default view (and zoomToOrigin) is camera distance 1: the
// y range [-1, 1] fills the canvas height and x is scaled by the same factor,
// so on a canvas narrower than tall the left and right of the map fall outside
// it and the map looks zoomed onto its middle. Its zoomToPoints() does use the
// aspect ratio, but the one it cached at the last resize, and its padding is a
// share of the map, not of the screen. Here the camera distance is computed
// from the canvas as it is laid out now, with a margin in screen pixels, and
// the fit is repeated after a resize for as long as the user has not moved the
// camera (a zoom they chose survives a resize).

// Camera distance that shows the box [cx - hx, cx + hx] x [cy - hy, cy + hy] of
// map coordinates inside a width x height px canvas with `margin` px free on
// every side. At distance d the canvas shows y in [-d, d] (height px) and
// x in [-d * width / height, d * width / height].
export function fitDistance(hx, hy, width, height, margin) {
  const m = width > 4 * margin && height > 4 * margin ? margin : 0; // a tiny canvas keeps what it has
  const byHeight = (hy * height) / (height - 2 * m);
  const byWidth = (hx * height) / (width - 2 * m);
  return Math.max(byHeight, byWidth, 1e-6);
}

// The centre and half extents of the points (in the coordinates drawn).
export function bounds(x, y) {
  let x0 = Infinity;
  let x1 = -Infinity;
  let y0 = Infinity;
  let y1 = -Infinity;
  for (let i = 0; i < x.length; i++) {
    if (x[i] < x0) x0 = x[i];
    if (x[i] > x1) x1 = x[i];
    if (y[i] < y0) y0 = y[i];
    if (y[i] > y1) y1 = y[i];
  }
  if (!(x0 <= x1)) return { cx: 0, cy: 0, hx: 1, hy: 1 }; // no points
  return { cx: (x0 + x1) / 2, cy: (y0 + y1) / 2, hx: (x1 - x0) / 2, hy: (y1 - y0) / 2 };
}

// Keeps the map fitted: fit() now (and on Reset view), and again after every
// resize of the canvas while the camera is where the last fit put it.
// getBox() and getPointSize() are asked at each fit: the axes shown (3-D maps)
// and the point size change.
export function createFitter(scatterplot, canvas, getBox, getPointSize) {
  let fittedView = null; // the camera's view matrix right after the last fit
  let fitting = null; // the fit under way (a transition takes a moment)
  let fittedDistance = 1; // camera distance of the last fit: the zoom that point sizes are relative to

  function isFitted() {
    if (!fittedView) return false;
    const now = scatterplot.get('cameraView');
    return now.every((v, k) => Math.abs(v - fittedView[k]) < 1e-6);
  }

  function fit({ transition = false } = {}) {
    const { width, height } = canvas.getBoundingClientRect();
    if (width < 1 || height < 1) return Promise.resolve(); // not laid out (hidden)
    // Room for the points' own radius, plus a margin that grows with the canvas.
    const box = getBox();
    const margin = getPointSize() + Math.max(8, 0.04 * Math.min(width, height));
    const distance = fitDistance(box.hx, box.hy, width, height, margin);
    fittedView = null;
    fittedDistance = distance;
    const done = scatterplot
      .zoomToLocation([box.cx, box.cy], distance, { transition, transitionDuration: 400 })
      .then(() => {
        if (fitting !== done) return; // a newer fit took over
        fitting = null;
        fittedView = Float32Array.from(scatterplot.get('cameraView'));
      });
    fitting = done;
    return done;
  }

  new ResizeObserver(() => {
    // A resize during a fit: fit again for the new size once that one ends.
    if (fitting) fitting.then(() => fit());
    else if (isFitted()) fit();
  }).observe(canvas);

  return { fit, isFitted, distance: () => fittedDistance };
}
