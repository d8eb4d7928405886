// How big points are drawn, and the ring that marks the point the side panel shows.
//
// Size: a fixed 4 px suits a few thousand points but leaves 61 images as specks
// in an empty canvas, and a fixed size stays a speck when the user zooms in to
// tell close points apart. The base size follows the canvas area per point
// shown (a power below 1/2: maps are clustered, so points overlap sooner than
// an even spread would); zooming in from the fitted view grows points with the
// square root of the zoom, so neighbours separate on screen while growing.
//
// Ring: regl-scatterplot recolours the hovered point, which a 2 px point hides;
// a ring drawn over the canvas stays visible at any size, and it stays on the
// point the panel describes (hovered, found, or clicked in the grid) until
// another takes its place.

export const MIN_SIZE = 1.5;
export const MAX_SIZE = 12;

// Base point diameter in px for `n` points shown on a width x height px canvas.
export function baseSize(n, width, height) {
  const perPoint = Math.max(width * height, 1) / Math.max(n, 1);
  return Math.min(MAX_SIZE, Math.max(MIN_SIZE, 0.7 * perPoint ** 0.3));
}

// Factor on the base size at camera distance `distance`, the fitted view being `fitted`.
export function zoomFactor(fitted, distance) {
  if (!(fitted > 0) || !(distance > 0)) return 1;
  return Math.min(4, Math.max(0.5, Math.sqrt(fitted / distance)));
}

// The ring element `el` (inside the map, over the canvas) kept on point `i`.
export function createRing(el, scatterplot) {
  let current = -1;
  let visible = () => true;

  function place() {
    if (current < 0 || !visible(current)) {
      el.hidden = true;
      return;
    }
    const [x, y] = scatterplot.getScreenPosition(current);
    const d = Math.max(14, scatterplot.get('pointSize') + 10);
    Object.assign(el.style, { left: `${x - d / 2}px`, top: `${y - d / 2}px`, width: `${d}px`, height: `${d}px` });
    el.dataset.index = current;
    el.hidden = false;
  }

  return {
    show(i) {
      current = i;
      place();
    },
    place,
    // isVisible(i): whether point i is drawn now (not filtered out); a hidden point gets no ring.
    setVisible(isVisible) {
      visible = isVisible;
      place();
    },
    get index() {
      return current;
    },
  };
}
