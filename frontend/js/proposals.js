// Reviewing the model's proposals (semi-automatic pre-fill, or automatic masks a project stores as
// proposed): which masks are proposals, the order the annotator walks through them, where the
// selection goes after a decision, and which label a one-key accept uses. Pure functions, no DOM.

/** A mask still waiting for a decision: status "proposed", not being deleted, with a segmentation. */
export function isProposal(mask) {
  return Boolean(mask) && mask.status === "proposed" && !mask.pendingDelete && mask.segmentation != null;
}

export function proposalCount(masks) {
  return masks.filter(isProposal).length;
}

/**
 * Reading order on the image: top to bottom by the top edge of the box (COCO [x, y, w, h]), then
 * left to right, then by id, so the walk is predictable and the annotator's eye moves steadily
 * down the image. Masks without a box go last.
 */
export function compareReadingOrder(a, b) {
  const [ax, ay] = a.bbox ?? [Infinity, Infinity];
  const [bx, by] = b.bbox ?? [Infinity, Infinity];
  if (ay !== by) return ay < by ? -1 : 1;
  if (ax !== bx) return ax < bx ? -1 : 1;
  return (a.id ?? Infinity) - (b.id ?? Infinity);
}

/** The proposals of `masks` in reading order. */
export function proposalOrder(masks) {
  return masks.filter(isProposal).sort(compareReadingOrder);
}

/**
 * Key of the proposal after (`step` 1) or before (-1) the mask `fromKey`, wrapping around; null
 * when no proposal is left. `fromKey` need not be a proposal any more: after a decision the walk
 * goes on from where the decided mask sits in reading order instead of starting over. With no
 * (known) `fromKey` it starts at the first proposal (or the last one, going back).
 */
export function nextProposalKey(masks, fromKey, step = 1) {
  const from = fromKey == null ? null : masks.find((m) => m.key === fromKey) ?? null;
  const walk = masks.filter((m) => isProposal(m) || m === from).sort(compareReadingOrder);
  const n = walk.length;
  const index = from ? walk.indexOf(from) : -1;
  if (index < 0) {
    const ordered = walk.filter(isProposal);
    if (!ordered.length) return null;
    return (step >= 0 ? ordered[0] : ordered[ordered.length - 1]).key;
  }
  const direction = step >= 0 ? 1 : -1;
  for (let k = 1; k <= n; k++) {
    const candidate = walk[(((index + k * direction) % n) + n) % n];
    if (isProposal(candidate)) return candidate.key;
  }
  return null;
}

function labelIdOf(label) {
  return label && typeof label === "object" ? label.id ?? null : label ?? null;
}

/**
 * The label a one-key accept gives a proposal, fastest first: the proposal's own label; else the
 * label the annotator used last on this page; else no label when the project has none, the only
 * label when it has one. Returns {label} or null when the annotator has to choose (label picker).
 */
export function quickLabel(mask, lastLabelId, labels) {
  const own = labelIdOf(mask?.label);
  if (own != null) return { label: own };
  if (lastLabelId != null && labels.some((l) => String(l.id) === String(lastLabelId))) return { label: lastLabelId };
  if (!labels.length) return { label: null };
  if (labels.length === 1) return { label: labels[0].id };
  return null;
}
