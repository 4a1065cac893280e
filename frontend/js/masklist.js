// What the side list of masks says about each one: pure functions, unit-tested under Node.

/**
 * Who made a mask, as the list shows it: the annotator's name (`annotator_name` from the API, or a
 * nested `{username}`); the page's own user by name when only their id came (`me` = the config's
 * `user`); "model" for masks no person made; never a bare database id.
 */
export function maskAuthor(mask, me = null) {
  if (mask?.annotator_name) return String(mask.annotator_name);
  const annotator = mask?.annotator;
  if (annotator == null || annotator === "") return mask?.source === "auto" || mask?.source === "semi" ? "model" : "–";
  if (typeof annotator === "object") return annotator.username ? String(annotator.username) : `user #${annotator.id}`;
  if (me?.id != null && me.username && String(annotator) === String(me.id)) return String(me.username);
  if (typeof annotator === "string" && !/^\d+$/.test(annotator)) return annotator;
  return `user #${annotator}`; // only an id (a server that sends no names): still not a bare number
}
