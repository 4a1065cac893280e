// What the side list of masks says about each one: pure functions, unit-tested under Node.

/**
 * Who made a mask, as the list shows it: the annotator's name (`annotator_name` from the API, or
 * a nested `{username}`), "model" for masks no person made, and never a bare database id.
 * The unit tests: frontend/tests/masklist.test.mjs.
 */
export function maskAuthor(mask) {
  if (mask?.annotator_name) return String(mask.annotator_name);
  const annotator = mask?.annotator;
  if (annotator && typeof annotator === "object" && annotator.username) return String(annotator.username);
  if (typeof annotator === "string" && annotator && !/^\d+$/.test(annotator)) return annotator;
  if (annotator == null) return mask?.source === "auto" || mask?.source === "semi" ? "model" : "–";
  return `user #${annotator}`; // only an id (a server that sends no names): still not a bare number
}
