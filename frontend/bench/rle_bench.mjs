// Times the page's RLE encode/decode on a raw mask file: node rle_bench.mjs MASK.u8 HEIGHT WIDTH REPEATS
// Prints JSON {encode_ms: [...], decode_ms: [...], counts} for rle_bench.py to compare with pycocotools.
import { readFileSync } from "node:fs";
import { decodeRle, encodeRle } from "../js/rle.js";

const [file, h, w, repeats] = process.argv.slice(2);
const height = Number(h);
const width = Number(w);
const mask = new Uint8Array(readFileSync(file));
const encode = [];
const decode = [];
let rle;
for (let i = 0; i < Number(repeats); i++) {
  let t = performance.now();
  rle = encodeRle(mask, height, width);
  encode.push(performance.now() - t);
  t = performance.now();
  decodeRle(rle);
  decode.push(performance.now() - t);
}
console.log(JSON.stringify({ encode_ms: encode, decode_ms: decode, counts: rle.counts }));
