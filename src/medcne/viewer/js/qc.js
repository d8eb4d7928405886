// Quality-check results of the run (its qc.csv, checked by build.py and passed
// in data.js as D.qc; null without one): a filter that shows only the points a
// check flagged, and what the checks say about the point under the mouse. The
// scores themselves are ordinary colour columns.

export const QC_FILTERS = [
  ['all', 'all'],
  ['likely_label_error', 'likely label errors'],
  ['likely_duplicate', 'likely duplicates'],
  ['likely_outlier', 'likely outliers'],
];

// Per point 1 where `filter` keeps it; null for 'all' (or no QC results).
export function qcMask(D, filter) {
  if (!D.qc || filter === 'all') return null;
  const mask = new Uint8Array(D.n);
  for (const i of D.qc.flags[filter] || []) mask[i] = 1;
  return mask;
}

// Hover lines, [field, text]: the checks' suggested label where it differs from
// the run's label (build.py keeps only those) and from `current`, the label the point
// carries now (the run's, one given by hand, or a suggestion: a label the panel shows already),
// the nearest other image's id, the flags.
export function qcLines(D, i, current) {
  if (!D.qc) return [];
  const lines = [];
  const s = D.qc.suggested[i];
  if (s >= 0 && D.qc.suggestedNames[s] !== current) lines.push(['qc suggested label', D.qc.suggestedNames[s]]);
  const d = D.qc.duplicate[i];
  if (d >= 0) lines.push(['duplicate of', D.ids[d]]);
  const flagged = QC_FILTERS.slice(1).filter(([key]) => D.qc.flags[key].includes(i)).map(([, text]) => text.replace(/s$/, ''));
  if (flagged.length) lines.push(['qc', flagged.join(', ')]);
  return lines;
}

// Fills the filter menu (with the number of points each keeps) and shows the section.
export function setupQc(D, select, onChange) {
  if (!D.qc) return;
  for (const [value, text] of QC_FILTERS) {
    const count = value === 'all' ? D.n : D.qc.flags[value].length;
    select.append(Object.assign(document.createElement('option'), { value, textContent: `${text} (${count.toLocaleString('en')})` }));
  }
  select.onchange = () => onChange(select.value);
  select.closest('section').hidden = false;
}
