// The served document read by ajv (JSON Schema 2020-12, strict mode), as JavaScript validators read it.
// Usage: node ajv.mjs openapi.json. Prints one JSON summary; exits 1 when anything failed.
import { readFileSync } from "node:fs";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const ID = "https://dmarket.invalid/openapi.json";
const document = JSON.parse(readFileSync(process.argv[2], "utf8"));

// Strict mode (unknown keywords, conflicting types, `required` without its property... all refused),
// relaxed only by naming as annotations what OpenAPI 3.1 puts where ajv reads keywords: the OpenAPI
// Object's fields (the whole document is added as the schema that `#/components/...` resolves in),
// the Schema Object's own keywords (`example`, `discriminator`, `xml`, `externalDocs`) and the `x-`
// extensions the document uses (found below, today `x-enum-varnames`).
const ajv = new Ajv2020({ strict: true, allErrors: true });
addFormats(ajv);
const openapiFields = ["openapi", "info", "jsonSchemaDialect", "servers", "paths", "webhooks", "components", "security", "tags"];
const schemaKeywords = ["discriminator", "xml", "externalDocs", "example"];
const extensions = new Set();
const visit = (node, fn) => {
  if (Array.isArray(node)) node.forEach((value) => visit(value, fn));
  else if (node && typeof node === "object") {
    fn(node);
    Object.values(node).forEach((value) => visit(value, fn));
  }
};
visit(document, (node) => Object.keys(node).filter((k) => k.startsWith("x-")).forEach((k) => extensions.add(k)));
ajv.addVocabulary([...openapiFields, ...schemaKeywords, ...extensions]);
ajv.addSchema({ ...document, $id: ID });

const failures = [];
const escape = (key) => String(key).replaceAll("~", "~0").replaceAll("/", "~1");
const compiled = new Map();
const compile = (pointer) => {
  if (!compiled.has(pointer)) {
    let validate;
    try {
      validate = ajv.getSchema(`${ID}#${pointer}`);
      if (!validate) failures.push({ pointer, error: "not found" });
    } catch (error) {
      failures.push({ pointer, error: String(error.message ?? error) });
    }
    compiled.set(pointer, validate);
  }
  return compiled.get(pointer);
};
const check = (pointer, value, expected, what) => {
  const validate = compile(pointer);
  if (validate && validate(value) !== expected) {
    failures.push({ pointer, what, value, expected, errors: validate.errors });
  }
};

// Every schema: named ones, and every parameter, header, request and response schema under paths.
const schemas = [];
const examples = [];
const subschemas = (schema, pointer) => {
  if (!schema || typeof schema !== "object") return;
  if ("example" in schema) examples.push([pointer, schema.example]);
  if (Array.isArray(schema.examples)) schema.examples.forEach((value) => examples.push([pointer, value]));
  for (const key of ["items", "not", "additionalProperties", "contains", "if", "then", "else", "propertyNames"]) {
    subschemas(schema[key], `${pointer}/${key}`);
  }
  for (const key of ["allOf", "anyOf", "oneOf", "prefixItems"]) {
    (schema[key] ?? []).forEach((sub, i) => subschemas(sub, `${pointer}/${key}/${i}`));
  }
  for (const key of ["properties", "patternProperties", "$defs", "dependentSchemas"]) {
    for (const [name, sub] of Object.entries(schema[key] ?? {})) subschemas(sub, `${pointer}/${key}/${escape(name)}`);
  }
};
// A parameter, header or media type: its schema, and its `example` or `examples` (Example Objects).
const holder = (node, pointer) => {
  if (!node?.schema) return;
  schemas.push(`${pointer}/schema`);
  subschemas(node.schema, `${pointer}/schema`);
  if ("example" in node) examples.push([`${pointer}/schema`, node.example]);
  for (const example of Object.values(node.examples ?? {})) examples.push([`${pointer}/schema`, example.value]);
};
for (const [name, schema] of Object.entries(document.components?.schemas ?? {})) {
  schemas.push(`/components/schemas/${escape(name)}`);
  subschemas(schema, `/components/schemas/${escape(name)}`);
}
for (const [path, item] of Object.entries(document.paths ?? {})) {
  const at = `/paths/${escape(path)}`;
  (item.parameters ?? []).forEach((p, i) => holder(p, `${at}/parameters/${i}`));
  for (const [method, operation] of Object.entries(item)) {
    if (typeof operation !== "object" || Array.isArray(operation)) continue;
    const op = `${at}/${method}`;
    (operation.parameters ?? []).forEach((p, i) => holder(p, `${op}/parameters/${i}`));
    for (const [type, media] of Object.entries(operation.requestBody?.content ?? {})) {
      holder(media, `${op}/requestBody/content/${escape(type)}`);
    }
    for (const [status, response] of Object.entries(operation.responses ?? {})) {
      for (const [type, media] of Object.entries(response.content ?? {})) {
        holder(media, `${op}/responses/${status}/content/${escape(type)}`);
      }
      for (const [name, header] of Object.entries(response.headers ?? {})) {
        holder(header, `${op}/responses/${status}/headers/${escape(name)}`);
      }
    }
  }
}
schemas.forEach(compile);
for (const [pointer, value] of examples) check(pointer, value, true, "example");

// Every cent price from 0.01 to 1,000.00, as a number and (where the schema takes strings) as strings.
const prices = {};
for (const body of ["ProductIn", "ProductUpdate"]) {
  const pointer = `/components/schemas/${body}/properties/price`;
  const validate = compile(pointer);
  if (!validate) continue;
  const price = document.components.schemas[body].properties.price;
  const takesStrings = (price.anyOf ?? price.oneOf ?? [price]).some((branch) => [branch.type].flat().includes("string"));
  const forms = { number: (n) => n / 100 };
  if (takesStrings) Object.assign(forms, { fixed: (n) => (n / 100).toFixed(2), shortest: (n) => String(n / 100) });
  for (const [form, make] of Object.entries(forms)) {
    const rejected = [];
    for (let n = 1; n <= 100_000; n++) if (!validate(make(n))) rejected.push(make(n));
    prices[`${body} ${form}`] = { checked: 100_000, rejected: rejected.length, first: rejected.slice(0, 5) };
    if (rejected.length) failures.push({ pointer, what: `cent prices as ${form}`, ...prices[`${body} ${form}`] });
  }
}

// The admin target is exactly one of its variants. Product bodies take unknown fields as the
// server does (pydantic `extra="ignore"`: a body's `user_id` is dropped, the owner is the caller).
const target = "/components/schemas/AdminTarget";
check(target, {}, false, "AdminTarget {}");
check(target, { email: "a@example.com", user_id: "auth0|a" }, false, "AdminTarget with both fields");
check(target, { email: "a@example.com" }, true, "AdminTarget by email");
check(target, { user_id: "auth0|a" }, true, "AdminTarget by user id");
const product = document.components.schemas.ProductIn.example;
check("/components/schemas/ProductIn", product, true, "ProductIn example");
check("/components/schemas/ProductIn", { ...product, user_id: "auth0|someone-else" }, true, "ProductIn with user_id");

console.log(JSON.stringify({ schemas: schemas.length, examples: examples.length, prices, failures }, null, 1));
process.exitCode = failures.length ? 1 : 0;
