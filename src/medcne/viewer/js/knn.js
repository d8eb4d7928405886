// Label suggestion: a point takes the majority label of its k nearest labelled
// points on the map (Euclidean distance in map coordinates; labels.js picks them).
//
// The labelled points ("seeds") go into a k-d tree: maps are far from uniform
// (dense clusters, empty gaps, annotations often all in one corner), and a
// tree adapts to that where a uniform grid either holds too many seeds per
// cell or makes far-away queries walk through many empty cells. The tree is
// implicit in one permutation of the seeds: a node is a range [lo, hi) of it,
// split at its middle element, whose coordinate along `splitDim` is at least
// that of every seed left of it and at most that of every seed right of it.

const LEAF = 8; // seeds scanned directly instead of split further

// For each index in `queries`: `label`, the majority label among its k nearest
// seeds (a tie goes to the label of the nearest of the tied seeds), and
// `agree`, the share of those k that carry it. With fewer than k seeds, all
// seeds vote. x, y: coordinates of all points; seeds: indices of the labelled
// points; seedLabels: their labels (non-negative integers).
export function knnVote(x, y, seeds, seedLabels, queries, k = 5) {
  const S = seeds.length;
  const kk = Math.min(k, S);
  const label = new Int32Array(queries.length).fill(-1);
  const agree = new Float32Array(queries.length);
  if (kk === 0) return { label, agree };

  const sx = Float64Array.from(seeds, (i) => x[i]);
  const sy = Float64Array.from(seeds, (i) => y[i]);
  const order = Int32Array.from({ length: S }, (_, s) => s);
  const splitDim = new Uint8Array(S); // at a node's middle position: 0 split along x, 1 along y
  build(order, splitDim, sx, sy, 0, S);

  // The k best so far, nearest first: squared distances and seed numbers.
  const bestD = new Float64Array(kk);
  const bestS = new Int32Array(kk);
  let found = 0;
  let qx = 0;
  let qy = 0;

  function consider(s) {
    const dx = sx[s] - qx;
    const dy = sy[s] - qy;
    const d = dx * dx + dy * dy;
    if (found === kk && d >= bestD[kk - 1]) return;
    let j = found < kk ? found++ : kk - 1; // insertion into the sorted list
    while (j > 0 && bestD[j - 1] > d) {
      bestD[j] = bestD[j - 1];
      bestS[j] = bestS[j - 1];
      j--;
    }
    bestD[j] = d;
    bestS[j] = s;
  }

  // offX, offY: how far the query lies outside the node's cell along x and y
  // (the cell: the box its ancestors' splits cut out), so offX² + offY² is the
  // least distance any seed of the node can have. Testing that bound, not only
  // the distance to the last split, keeps queries far from all seeds fast.
  function search(lo, hi, offX, offY) {
    if (found === kk && offX * offX + offY * offY >= bestD[kk - 1]) return;
    if (hi - lo <= LEAF) {
      for (let o = lo; o < hi; o++) consider(order[o]);
      return;
    }
    const m = (lo + hi) >> 1;
    const s = order[m];
    consider(s);
    const alongY = splitDim[m] === 1;
    const diff = alongY ? qy - sy[s] : qx - sx[s];
    // The query's side first, then the other, whose cell starts at the split.
    const gap = Math.abs(diff);
    const farX = alongY ? offX : gap;
    const farY = alongY ? gap : offY;
    if (diff < 0) {
      search(lo, m, offX, offY);
      search(m + 1, hi, farX, farY);
    } else {
      search(m + 1, hi, offX, offY);
      search(lo, m, farX, farY);
    }
  }

  const votes = new Map();
  for (let q = 0; q < queries.length; q++) {
    qx = x[queries[q]];
    qy = y[queries[q]];
    found = 0;
    search(0, S, 0, 0);

    votes.clear();
    let top = 0;
    for (let j = 0; j < kk; j++) {
      const l = seedLabels[bestS[j]];
      const v = (votes.get(l) || 0) + 1;
      votes.set(l, v);
      if (v > top) top = v;
    }
    // Neighbours are nearest first, so the first label with the top count wins ties.
    for (let j = 0; j < kk; j++) {
      const l = seedLabels[bestS[j]];
      if (votes.get(l) === top) {
        label[q] = l;
        break;
      }
    }
    agree[q] = top / kk;
  }
  return { label, agree };
}

// Arranges order[lo, hi) into a k-d tree: split along the wider side of the
// range's bounding box, at the median, then the same for both halves.
function build(order, splitDim, sx, sy, lo, hi) {
  if (hi - lo <= LEAF) return;
  let x0 = Infinity;
  let x1 = -Infinity;
  let y0 = Infinity;
  let y1 = -Infinity;
  for (let o = lo; o < hi; o++) {
    const s = order[o];
    if (sx[s] < x0) x0 = sx[s];
    if (sx[s] > x1) x1 = sx[s];
    if (sy[s] < y0) y0 = sy[s];
    if (sy[s] > y1) y1 = sy[s];
  }
  const m = (lo + hi) >> 1;
  const dim = y1 - y0 > x1 - x0 ? 1 : 0;
  splitDim[m] = dim;
  selectNth(order, dim ? sy : sx, lo, hi, m);
  build(order, splitDim, sx, sy, lo, m);
  build(order, splitDim, sx, sy, m + 1, hi);
}

// Quickselect (Hoare partition): afterwards c[order[m]] is at least every
// c[order[lo..m)] and at most every c[order(m..hi)].
function selectNth(order, c, lo, hi, m) {
  let a = lo;
  let b = hi - 1;
  while (b > a) {
    const pivot = c[order[(a + b) >> 1]];
    let i = a;
    let j = b;
    while (i <= j) {
      while (c[order[i]] < pivot) i++;
      while (c[order[j]] > pivot) j--;
      if (i <= j) {
        const t = order[i];
        order[i] = order[j];
        order[j] = t;
        i++;
        j--;
      }
    }
    if (m <= j) b = j;
    else if (m >= i) a = i;
    else break; // order[j + 1 .. i - 1] all equal the pivot, m among them
  }
}
