// The annotation export: one CSV row per annotated or selected point, in the
// columns `medcne evaluate RUN --labels FILE` reads (id and new_label; rows with
// an empty new_label, points only selected, are skipped there).
//   source      manual (labelled by the user) or suggested (by nearest labelled points)
//   confidence  for a suggestion, the share of its k nearest labelled points that agree

export const COLUMNS = ['id', 'x', 'y', 'old_label', 'new_label', 'source', 'confidence'];

// A spreadsheet runs a cell that starts with = + - @, a tab or CR as a formula: such a cell that is
// not a number gets a leading ' (OWASP), as does one that already starts with ' and then one of
// those or another ', so that medcne's readers (medcne.io.csv_value) give back the exact text.
const FORMULA = /^[=+\-@\t\r]/;
// A number a spreadsheet reads as a number (as medcne.io.NUMBER): digits, an optional point and exponent.
const NUMBER = /^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$/;

export function csvCell(v) {
  const s = String(v);
  const escaped = s.length > 1 && s[0] === "'" && (FORMULA.test(s.slice(1)) || s[1] === "'");
  const number = NUMBER.test(s);
  return escaped || (FORMULA.test(s) && !number) ? `'${s}` : s;
}

function csvField(v) {
  const s = csvCell(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function annotationsCsv(D, labels, selection) {
  const rows = new Set(selection);
  for (let i = 0; i < D.n; i++) if (labels.annotation(i)) rows.add(i);
  const lines = [COLUMNS.join(',')];
  for (const i of [...rows].sort((a, b) => a - b)) {
    const old = D.labeled ? D.classNames[D.labels[i]] : '';
    const a = labels.annotation(i);
    const confidence = a && a.source === 'suggested' ? a.agree.toFixed(2) : '';
    lines.push([D.ids[i], D.x[i], D.y[i], old, a ? a.name : '', a ? a.source : '', confidence].map(csvField).join(','));
  }
  return lines.join('\n') + '\n';
}

export function download(text, filename) {
  const url = URL.createObjectURL(new Blob([text], { type: 'text/csv' }));
  const a = Object.assign(document.createElement('a'), { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
