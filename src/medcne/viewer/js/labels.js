// The labels of the map's points: the run's own, the user's annotations, and
// suggested labels for the points that have neither (by k nearest labelled neighbours on the map).
//
// Three layers, the first that has a label for a point wins:
//   manual    labels the user gave (kept in the browser's storage);
//   pending   suggestions not yet reviewed (not stored: one click makes them again);
//   accepted  suggestions the user accepted (stored);
// then the run's own label. `cur` holds the winner per point as an index into
// `names`, which is what the map colours by and the legend counts.
import { knnVote } from './knn.js';
import { packIndices, unpackIndices } from './store.js';

export const K_NEIGHBOURS = 5;

export class Labels {
  constructor(D) {
    this.D = D;
    this.n = D.n;
    // The run's class that means "no label" (build.py: an unlabelled run's only class, or the
    // class 'unlabelled'), -1 for none: its points are the only ones a suggestion may label.
    this.noLabel = D.noLabel ?? -1;
    this.runLabelled = D.labels.some((k) => k !== this.noLabel);
    this.reset();
  }

  reset() {
    const D = this.D;
    this.names = [...D.classNames];
    this.palette = [...D.palette];
    this.manual = new Map(); // point index -> label index
    this.pending = null; // {label: Int32Array (-1: none), agree: Float32Array} per point
    this.accepted = null;
    this.cur = Int32Array.from(D.labels);
  }

  // The index of a label name, adding the name (with a colour of its own) if new.
  nameIndex(name) {
    let k = this.names.indexOf(name);
    if (k < 0) {
      k = this.names.push(name) - 1;
      const spare = this.D.spare;
      this.palette.push(spare[(k - this.D.classNames.length) % spare.length]);
    }
    return k;
  }

  // The labels a name typed or picked in the label box may mean: the label of that name as written; else
  // the label named by the text without the spaces around it; else every label whose own name is that
  // text with spaces around it (the class ' basophil' of a folder so named: one, or several to choose
  // from); else a new label, the text. [] for an empty name. medcne.runs.evaluate.as_class_names reads
  // an exported CSV by the same rule. No label that differs from another only in the spaces around it
  // is made by accident.
  namesMeant(typed) {
    const text = typed.trim();
    if (!text) return [];
    if (this.names.includes(typed)) return [typed];
    if (this.names.includes(text)) return [text];
    const spaced = this.names.filter((n) => n.trim() === text);
    return spaced.length > 0 ? spaced : [text];
  }

  label(indices, name) {
    const k = this.nameIndex(name);
    for (const i of indices) this.manual.set(i, k);
    this.refresh();
  }

  // Whether there is a label to learn from: one of the run's, or one given by hand.
  canSuggest() {
    return this.runLabelled || this.manual.size > 0;
  }

  // Suggests a label for every point that has none (neither the run's, being of its "no label"
  // class, nor one given by hand) from the k nearest points that have one: the run's labels and
  // the manual ones, a manual label in place of the run's. A point the run labelled is never a
  // query: replacing a dataset's own label is the curator's call (qc.csv's suggestions point
  // at doubtful ones). Returns how many points got a suggestion; with none (every point has a
  // label, or none has) the suggestions under review are dropped.
  suggest(x, y) {
    const seeds = [];
    const seedLabels = [];
    const queries = [];
    for (let i = 0; i < this.n; i++) {
      const hand = this.manual.get(i);
      const k = hand ?? this.D.labels[i];
      if (k !== this.noLabel) {
        seeds.push(i);
        seedLabels.push(k);
      } else if (hand === undefined) queries.push(i); // labelled "no label" by hand: the curator's word
    }
    this.pending = null;
    if (seeds.length > 0 && queries.length > 0) {
      const { label, agree } = knnVote(x, y, Int32Array.from(seeds), Int32Array.from(seedLabels), queries, K_NEIGHBOURS);
      this.pending = emptyLayer(this.n);
      queries.forEach((i, q) => {
        this.pending.label[i] = label[q];
        this.pending.agree[i] = agree[q];
      });
    }
    this.refresh();
    return this.pending ? queries.length : 0;
  }

  // Pending suggestions become accepted ones (replacing those accepted before).
  accept() {
    if (!this.pending) return;
    this.accepted = this.pending;
    this.pending = null;
    this.refresh();
  }

  // Drops the suggestions under review; when none are, those accepted. A new round that the curator
  // does not want never takes the accepted ones with it.
  clearSuggestions() {
    if (this.pending) this.pending = null;
    else this.accepted = null;
    this.refresh();
  }

  // What a point carries beyond the run's label: null, or
  // {name, source: 'manual' | 'suggested', agree (suggested only), pending}.
  annotation(i) {
    if (this.manual.has(i)) return { name: this.names[this.manual.get(i)], source: 'manual', agree: null };
    for (const layer of [this.pending, this.accepted]) {
      if (layer && layer.label[i] >= 0) {
        return { name: this.names[layer.label[i]], source: 'suggested', agree: layer.agree[i], pending: layer === this.pending };
      }
    }
    return null;
  }

  count(layer) {
    if (!layer) return 0;
    let c = 0;
    for (let i = 0; i < this.n; i++) if (layer.label[i] >= 0 && !this.manual.has(i)) c++;
    return c;
  }

  refresh() {
    const cur = this.cur;
    cur.set(this.D.labels);
    for (const layer of [this.accepted, this.pending]) {
      if (!layer) continue;
      for (let i = 0; i < this.n; i++) if (layer.label[i] >= 0) cur[i] = layer.label[i];
    }
    for (const [i, k] of this.manual) cur[i] = k;
  }

  // ---- storage ---------------------------------------------------------------------
  // The record to store (see store.js); pending suggestions are left out on purpose.
  toRecord() {
    const names = this.names.slice(this.D.classNames.length);
    const byLabel = new Map();
    for (const [i, k] of this.manual) {
      if (!byLabel.has(k)) byLabel.set(k, []);
      byLabel.get(k).push(i);
    }
    const manual = [...byLabel].map(([k, idx]) => [this.names[k], packIndices(idx)]);
    const groups = new Map(); // "label agree" -> indices
    if (this.accepted) {
      for (let i = 0; i < this.n; i++) {
        const k = this.accepted.label[i];
        if (k < 0 || this.manual.has(i)) continue;
        const key = `${k} ${this.accepted.agree[i]}`;
        if (!groups.has(key)) groups.set(key, []);
        groups.get(key).push(i);
      }
    }
    const suggested = [...groups].map(([key, idx]) => {
      const [k, agree] = key.split(' ');
      return [this.names[+k], +agree, packIndices(idx)];
    });
    return { names, manual, suggested };
  }

  // Restores a stored record; points outside this map are skipped. A stored name is read as one typed
  // (namesMeant): an earlier page made 'basophil' beside the class ' basophil', and it is that class.
  fromRecord(record) {
    this.reset();
    const index = (name) => {
      const meant = this.namesMeant(String(name));
      return this.nameIndex(meant.length === 1 ? meant[0] : String(name));
    };
    for (const name of record.names || []) index(name);
    for (const [name, deltas] of record.manual || []) {
      const k = index(name);
      for (const i of unpackIndices(deltas)) if (i >= 0 && i < this.n) this.manual.set(i, k);
    }
    if ((record.suggested || []).length > 0) {
      this.accepted = emptyLayer(this.n);
      for (const [name, agree, deltas] of record.suggested) {
        const k = index(name);
        for (const i of unpackIndices(deltas)) {
          if (i < 0 || i >= this.n) continue;
          this.accepted.label[i] = k;
          this.accepted.agree[i] = agree;
        }
      }
    }
    this.refresh();
  }

  isEmpty() {
    return this.manual.size === 0 && !this.pending && !this.accepted;
  }
}

function emptyLayer(n) {
  return { label: new Int32Array(n).fill(-1), agree: new Float32Array(n) };
}
