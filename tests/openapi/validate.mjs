// Validates an OpenAPI 3.1 document (default: docs/openapi.json) and exits non-zero on any error.
//
//   node tests/openapi/validate.mjs [FILE]     (after `npm ci` in tests/openapi)
//
// Two checks:
//  1. the document against the OpenAPI 3.1 schema, every $ref resolved
//     (@seriousme/openapi-schema-validator);
//  2. every Schema Object in it (components, parameters, headers, media types, and the
//     x-json-schema / x-sse-events extensions) compiled as JSON Schema 2020-12 by Ajv in strict
//     mode, which the OpenAPI schema does not do: a misspelt keyword ("requried"), a wrong
//     "type" or an unknown "format" fails here.
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { Validator } from "@seriousme/openapi-schema-validator";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const here = dirname(fileURLToPath(import.meta.url));
const file = resolve(process.argv[2] ?? resolve(here, "../../docs/openapi.json"));
let failures = 0;

function fail(what, detail) {
  failures++;
  console.error(`${file}: ${what}`);
  if (detail !== undefined) console.error(JSON.stringify(detail, null, 2));
}

const validator = new Validator();
const res = await validator.validate(file);
if (!res.valid) {
  fail("does not match the OpenAPI schema", res.errors);
} else if (validator.version !== "3.1") {
  fail(`is OpenAPI ${validator.version}, not 3.1`);
}

const doc = JSON.parse(readFileSync(file, "utf8"));

// The document's component schemas as one schema of $defs, so that "#/components/schemas/X"
// can be rewritten to a reference Ajv resolves.
const BASE = "urn:sqlfs:openapi";
function rewrite(node) {
  if (Array.isArray(node)) return node.map(rewrite);
  if (node === null || typeof node !== "object") return node;
  const out = {};
  for (const [k, v] of Object.entries(node)) {
    if (k === "$ref" && typeof v === "string" && v.startsWith("#/components/schemas/")) {
      out[k] = `${BASE}#/$defs/${v.slice("#/components/schemas/".length)}`;
    } else {
      out[k] = rewrite(v);
    }
  }
  return out;
}

const ajv = new Ajv2020({ strict: true, allowUnionTypes: true, allErrors: true });
addFormats(ajv);
try {
  ajv.addSchema({ $id: BASE, $defs: rewrite(doc.components?.schemas ?? {}) });
} catch (e) {
  fail("components.schemas cannot be loaded", e.message);
}

// Every Schema Object outside components.schemas, with where it is.
function* schemaObjects(node, where) {
  if (Array.isArray(node)) {
    for (let i = 0; i < node.length; i++) yield* schemaObjects(node[i], `${where}/${i}`);
    return;
  }
  if (node === null || typeof node !== "object") return;
  for (const [k, v] of Object.entries(node)) {
    const at = `${where}/${k.replaceAll("~", "~0").replaceAll("/", "~1")}`;
    if ((k === "schema" || k === "x-json-schema") && v && typeof v === "object") {
      yield [at, v];
    } else if (k === "x-sse-events") {
      for (const [event, s] of Object.entries(v)) yield [`${at}/${event}`, s];
    } else {
      yield* schemaObjects(v, at);
    }
  }
}

const targets = Object.keys(doc.components?.schemas ?? {}).map((name) => [
  `#/components/schemas/${name}`,
  { $ref: `${BASE}#/$defs/${name}` },
]);
for (const [at, s] of schemaObjects({ paths: doc.paths, components: doc.components }, "#")) {
  targets.push([at, rewrite(s)]);
}
for (const [at, schema] of targets) {
  try {
    ajv.compile(schema);
  } catch (e) {
    fail(`${at}: not a valid JSON Schema 2020-12 schema`, e.message);
  }
}

if (failures) {
  console.error(`${failures} error(s)`);
  process.exit(1);
}
console.log(`${file}: valid OpenAPI 3.1 (${targets.length} schemas compiled)`);
