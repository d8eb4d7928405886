// Annotations kept in the browser's localStorage, so that a reload or a closed
// tab does not lose them. All pages opened from file:// share one storage area,
// so the key holds data.js's runKey (run folder name, method, number of points,
// hash of the ids in order): the stored point indices then mean the same points.
//
// Stored record (JSON), labels by name so that the order of names cannot matter:
//   {format: 'medcne-annotations', version: 1,
//    names: [labels added in the page, in the order they were added],
//    manual: [[label, indices], ...],
//    suggested: [[label, agree, indices], ...]}   (accepted suggestions)
// where indices are sorted point indices, stored as differences from the
// previous one: small numbers, so all 300,000 points of a large map fit in
// about a megabyte, inside the few megabytes a browser allows a site.

const PREFIX = 'medcne-annotations:';
const FORMAT = 'medcne-annotations';

export function storageKey(runKey) {
  return PREFIX + runKey;
}

export function packIndices(indices) {
  const sorted = Int32Array.from(indices).sort();
  const out = new Array(sorted.length);
  let prev = 0;
  for (let j = 0; j < sorted.length; j++) {
    out[j] = sorted[j] - prev;
    prev = sorted[j];
  }
  return out;
}

export function unpackIndices(deltas) {
  const out = new Int32Array(deltas.length);
  let prev = 0;
  for (let j = 0; j < deltas.length; j++) {
    prev += deltas[j];
    out[j] = prev;
  }
  return out;
}

// The stored record, or null when there is none or it is not one of ours.
export function loadRecord(key) {
  let text = null;
  try {
    text = window.localStorage.getItem(key);
  } catch {
    return null; // storage switched off in this browser
  }
  if (!text) return null;
  try {
    const record = JSON.parse(text);
    return record && record.format === FORMAT && record.version === 1 ? record : null;
  } catch {
    return null;
  }
}

// Saves the record (or removes the key when `record` is null). Returns '' or a
// one-line reason why the browser refused, for the page to show.
export function saveRecord(key, record) {
  try {
    if (record === null) window.localStorage.removeItem(key);
    else window.localStorage.setItem(key, JSON.stringify({ format: FORMAT, version: 1, ...record }));
    return '';
  } catch (e) {
    const full = e && e.name === 'QuotaExceededError';
    return full
      ? 'not saved in this browser: its storage is full; export a CSV to keep these annotations'
      : 'not saved in this browser (storage is switched off); export a CSV to keep these annotations';
  }
}
