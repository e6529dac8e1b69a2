// One flow through the TypeScript client (openapi-typescript types + openapi-fetch), written only from
// docs/api.md: `node build/js/flow.mjs BASE_URL USER_TOKEN ADMIN_TOKEN`, after `tsc --strict`.
import createClient from "openapi-fetch";
import type { components, paths } from "./build/schema.js";

type ErrorOut = components["schemas"]["ErrorOut"];

function check(condition: boolean, what: string): asserts condition {
  if (!condition) throw new Error(`typescript flow: ${what}`);
}

function firstField(error: ErrorOut | undefined): string | undefined {
  return Array.isArray(error?.details) ? error.details[0]?.field : undefined;
}

const [baseUrl, userToken, adminToken] = process.argv.slice(2);
const user = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${userToken}` } });
const admin = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${adminToken}` } });

const listed = await user.GET("/products", { params: { query: { per_page: 5, sort: "-name" } } });
check(listed.response.status === 200 && Array.isArray(listed.data), "list");
const total = Number(listed.response.headers.get("X-Total-Count"));

// The README's create body: description is optional.
const created = await user.POST("/products", { body: { name: "Desk lamp", price: 19.99, quantity: 3 } });
check(created.response.status === 201 && created.data !== undefined, `create: ${created.response.status}`);
const product = created.data;
check(product.price === 19.99 && product.description === null, "created fields");
const again = await user.GET("/products");
check(Number(again.response.headers.get("X-Total-Count")) === total + 1, "the total counts the new product");

const path = { product_id: product.id };
const read = await user.GET("/products/{product_id}", { params: { path } });
check(read.data?.id === product.id, "get");
const etag = read.response.headers.get("ETag") ?? "";

const updated = await user.PUT("/products/{product_id}/update", {
  params: { path, header: { "If-Match": etag } },
  body: { price: "24.50" },
});
check(updated.data?.price === 24.5, `update: ${updated.response.status}`);
const stale = await user.PATCH("/products/{product_id}", {
  params: { path, header: { "If-Match": etag } },
  body: { name: "Lamp" },
});
check(stale.response.status === 412 && stale.error?.code === "precondition_failed", "a stale If-Match is 412");

const deleted = await user.DELETE("/products/{product_id}/delete", {
  params: { path, header: { "If-Match": updated.response.headers.get("ETag") ?? "" } },
});
check(deleted.response.status === 200 && deleted.data?.message !== undefined, `delete: ${deleted.response.status}`);

const missing = await user.GET("/products/{product_id}", { params: { path } });
check(missing.response.status === 404 && missing.error?.code === "not_found", "a deleted product is 404");

const invalid = await user.POST("/products/create", { body: { name: "Lamp", price: 1, quantity: -1 } });
check(invalid.response.status === 422 && firstField(invalid.error) === "quantity", "422 details name the field");

const me = await user.GET("/me");
check(me.data !== undefined && me.data.user_id.startsWith("auth0|"), "me");
const target = { user_id: me.data.user_id };
const granted = await admin.POST("/admin/set", { body: target });
check(granted.data?.updated.includes(target.user_id) === true, `grant admin: ${granted.response.status}`);
const users = await admin.GET("/admin/users", { params: { query: { q: "alice" } } });
check(Number(users.response.headers.get("X-Total-Count")) >= 1, "list users");
const revoked = await admin.POST("/admin/unset", { body: target });
check(revoked.response.status === 200, `revoke admin: ${revoked.response.status}`);
const refused = await user.GET("/admin/users");
check(refused.response.status === 403 && refused.error?.code === "forbidden", "a user is not an admin");
const trail = await admin.GET("/admin/audit", { params: { query: { target: target.user_id, per_page: 10 } } });
const actions = trail.data?.records.map((record) => `${record.action} ${record.outcome}`) ?? [];
check(actions.join(",") === "admin.revoke done,admin.grant done", `audit trail: ${actions.join(",")}`);
const mine = await user.GET("/me/audit", { params: { query: { action: "admin.grant" } } });
check(mine.data?.records.length === 1 && mine.data.records[0].target_id === target.user_id, "my audit");
console.log("typescript flow: ok");

// The admin target is exactly one of email or user_id: neither nor both compile.
type AdminTarget = components["schemas"]["AdminTarget"];
// @ts-expect-error: no field
export const neither: AdminTarget = {};
// @ts-expect-error: both fields
export const both: AdminTarget = { email: "a@example.com", user_id: "auth0|a" };
