// Launcher for the commercetools emulator: @labdigital/commercetools-mock served over
// real HTTP on 127.0.0.1.
//
// Why a launcher and not the package's own runServer():
//  * runServer() binds 0.0.0.0; an emulator holding test data must stay on loopback.
//  * Version 4.4.0's services drop the `sort` query parameter before they query
//    storage, so `sort=id asc` + `where=id > "<last id>"` cursor paging returns pages
//    in insertion order and skips records. We carry each request's `sort` through an
//    AsyncLocalStorage into a storage subclass that puts it back.
//  * A custom object draft with `version: 0` must only create (commercetools answers 409
//    ConcurrentModification when the object exists); 4.4.0 treats 0 as "no version" and
//    overwrites, which would let two writers of our delivery ledger lose each other's
//    entries. A preHandler restores the API's answer.
//  * Every query deep-copies the whole collection before filtering it (O(N) copies per
//    page), which makes paging 50,000 customers take minutes; our storage filters the
//    stored objects and copies only the page it returns.
//  * Every query also evaluates its predicate on every stored object, so a lookup of 100
//    ids or custom-object keys (`id in (...)`, `container="c" and key in (...)`) costs the
//    whole collection: a catalog sync's lookups then grow with the catalog (O(N) each,
//    O(N^2) per sync; issue 19). A predicate that is exactly such a lookup (optionally
//    with the id cursor) is evaluated on the listed objects only - the same predicate, so
//    the same objects (in the order listed, not stored: a query that sorts, as paging does
//    by id, is not affected). GET /_emulator/stats counts the objects predicates were evaluated on
//    (`scanned`), so tests can bound the emulator's work per record.
//  * Cursor paging (`sort=id asc`, `withTotal=false`, `where=... id > "<last id>"`) also
//    evaluated its predicate on every stored object and sorted all that followed the
//    cursor, per page: paging 1,000,000 customers was quadratic (issue 19). Such a page is
//    read from a sorted id index (rebuilt when ids were added or removed), on from the
//    cursor, until it is full; without `total`, as the API answers withTotal=false.
//  * Tokens are checked for existence only; a request outside the token's scopes gets
//    commercetools' 403 insufficient_scope here, so scope checks can be tested.
//  * Subscriptions accept only setKey in 4.4.0; changeDestination, setMessages and
//    setChanges are added so setup can update one in place.
//  * Seeding 50,000 records one HTTP call at a time dominates benchmarks, so a bulk
//    route creates many drafts through the same repositories the API uses (checking
//    customer email uniqueness once per batch, on the stored objects themselves, instead
//    of one scan per customer); `?objects=true` answers the created resources too (a
//    benchmark that needs them would otherwise page through the whole collection again).
//    The launcher raises Node's heap limit (6 GB) for the 1,000,000-customer population.
//  * Tests need commercetools down: POST /_emulator/faults {"unavailable": true} answers
//    every API request 503 (tokens are still issued) until cleared or reset; `"status":
//    502` answers that status instead, `"status": 0` drops the connection without an
//    answer (an API unreachable). GET /_emulator/stats counts those requests
//    (`unavailable`). POST /_emulator/expire-tokens revokes every token issued so far (a
//    token that expires mid-run: commercetools answers 401 invalid_token); stats count the
//    requests refused for it (`expired_tokens`).
//
// Usage: node server.mjs --port 8989 [--project demo] [--client-id x --client-secret y]

import { AsyncLocalStorage } from "node:async_hooks";
import { parseArgs } from "node:util";
import { CommercetoolsMock, InMemoryStorage } from "@labdigital/commercetools-mock";

const { values: args } = parseArgs({
	options: {
		port: { type: "string", default: "8989" },
		host: { type: "string", default: "127.0.0.1" },
		project: { type: "string", default: "demo" },
		"no-auth": { type: "boolean", default: false },
	},
});

// The request's `sort` and `withTotal` parameters, which 4.4.0's services do not hand over.
const requestSort = new AsyncLocalStorage();
const uncopiedScan = new AsyncLocalStorage();
// Inside our query only: the ids of the objects the predicate can match (null: all).
const candidateScan = new AsyncLocalStorage();
const copy = (value) => JSON.parse(JSON.stringify(value)); // the package's own cloneObject

// A predicate that can only match listed objects, as our client writes it (no escapes in
// the quoted values; anything else is evaluated on the whole collection, as before).
const quotedList = String.raw`"[^"\\]*"(?:\s*,\s*"[^"\\]*")*`;
const cursorTail = String.raw`(?:\s+and\s+id\s*>\s*"[^"\\]*")?`;
const idLookup = new RegExp(String.raw`^\(?\s*id\s+in\s*\((${quotedList})\)\s*\)?${cursorTail}$`);
const keyLookup = new RegExp(
	String.raw`^\(?\s*container\s*=\s*("[^"\\]*")\s+and\s+key\s+in\s*\((${quotedList})\)\s*\)?${cursorTail}$`,
);
const unquoted = (list) => Array.from(list.matchAll(/"([^"\\]*)"/g), (m) => m[1]);
// The id cursor our client ends a page's predicate with: alone, or after "(...) and ".
const cursorClause = /^(.*?)(?:^|\s+and\s+)id\s*>\s*"([^"\\]*)"$/s;
// Whether `text` is one parenthesised group, "(...)" (so the cursor after it is a bound
// of the whole predicate, not of one side of an `or`).
const oneGroup = (text) => {
	if (!text.startsWith("(") || !text.endsWith(")")) return false;
	let depth = 0;
	let quoted = false;
	for (let i = 0; i < text.length; i++) {
		const c = text[i];
		if (quoted) {
			if (c === "\\") i++;
			else if (c === '"') quoted = false;
		} else if (c === '"') quoted = true;
		else if (c === "(") depth++;
		else if (c === ")" && --depth === 0 && i < text.length - 1) return false;
	}
	return depth === 0;
};
// The id a `where` (one predicate or several, all of which must hold) puts every match
// after, or null: the largest cursor among them.
const cursorOf = (where) => {
	let cursor = null;
	for (const predicate of Array.isArray(where) ? where : [where]) {
		if (typeof predicate !== "string") continue;
		const match = cursorClause.exec(predicate.trim());
		if (!match || (match[1] !== "" && !oneGroup(match[1].trim()))) continue;
		if (cursor === null || match[2] > cursor) cursor = match[2];
	}
	return cursor;
};
// Each stored collection's ids in `sort=id asc` order (JS `<` on strings, as the package's
// sort and its `>` predicate compare), rebuilt when ids were added or removed.
const sortedIds = new WeakMap();
let removals = 0; // deletes and clears so far: a collection may lose an id and gain another
const firstAfter = (ids, cursor) => {
	let low = 0;
	let high = ids.length;
	while (low < high) {
		const middle = (low + high) >>> 1;
		if (ids[middle] > cursor) high = middle;
		else low = middle + 1;
	}
	return low;
};
const bulkCustomerCreate = new AsyncLocalStorage();

class EmulatorStorage extends InMemoryStorage {
	// Inside our query only: the stored objects themselves, not deep copies.
	async all(projectKey, typeId) {
		if (!uncopiedScan.getStore()) return super.all(projectKey, typeId);
		const store = (await this.forProjectKey(projectKey))[typeId];
		if (!store) return [];
		const candidates = candidateScan.getStore();
		const objects = candidates
			? candidates.map((id) => store._map.get(id)).filter((object) => object !== undefined)
			: Array.from(store._map.values());
		stats.scanned += objects.length;
		return objects;
	}

	// The ids of the only objects `where` can match, or null when it is not a lookup.
	candidates(projectKey, typeId, predicates) {
		// The service hands the `where` parameters over as a list (each one must hold).
		const where = Array.isArray(predicates) && predicates.length === 1 ? predicates[0] : predicates;
		if (typeof where !== "string") return null;
		const byId = idLookup.exec(where);
		if (byId) return [...new Set(unquoted(byId[1]))];
		const byKey = typeId === "key-value-document" ? keyLookup.exec(where) : null;
		if (!byKey) return null;
		const container = JSON.parse(byKey[1]);
		const index = this._customObjectIndex.get(projectKey);
		const ids = unquoted(byKey[2]).map((key) => index?.get(`${container}\0${key}`));
		return [...new Set(ids.filter((id) => id !== undefined))];
	}

	async delete(projectKey, typeId, id, params) {
		removals += 1;
		return super.delete(projectKey, typeId, id, params);
	}

	async clear() {
		removals += 1;
		return super.clear();
	}

	// The collection's ids in id order (see sortedIds).
	async sortedIds(projectKey, typeId) {
		const store = (await this.forProjectKey(projectKey))[typeId];
		if (!store) return [];
		let entry = sortedIds.get(store);
		if (!entry || entry.removals !== removals || entry.ids.length !== store._map.size) {
			entry = { ids: Array.from(store._map.keys()).sort(), removals };
			sortedIds.set(store, entry);
		}
		return entry.ids;
	}

	// The page of a `sort=id asc`, `withTotal=false` query (cursor paging, as our client
	// always pages), read in id order from the cursor on: the predicate is evaluated on
	// growing runs of ids until the page is full, instead of on the whole collection
	// followed by a sort of everything after the cursor (O(N) per page, O(N^2) per walk).
	// The same predicate on the same objects in the same order: the same page.
	async cursorPage(projectKey, typeId, params) {
		const ids = await this.sortedIds(projectKey, typeId);
		// (custom objects of a container come with the container's predicate appended)
		const cursor = cursorOf(params.where);
		let position = cursor === null ? 0 : firstAfter(ids, cursor);
		const limit = params.limit || 20;
		const results = [];
		let run = limit;
		let walked = 0; // objects the predicate was evaluated on so far, and how many matched
		let matched = 0;
		// At least one evaluation, even of an empty collection: a malformed predicate is
		// refused 400 InvalidInput whatever is stored.
		do {
			const candidates = ids.slice(position, position + run);
			position += candidates.length;
			const part = await candidateScan.run(candidates, () =>
				super.query(projectKey, typeId, { ...params, limit: limit - results.length, offset: 0 }),
			);
			results.push(...part.results);
			walked += candidates.length;
			matched += part.results.length;
			// The next run: what is still needed at the share matched so far (+20%), or twice
			// as long while nothing matched (a selective predicate: a delta window).
			const needed = limit - results.length;
			run = matched === 0 ? run * 2 : Math.max(needed, Math.ceil((1.2 * needed * walked) / matched));
		} while (results.length < limit && position < ids.length);
		return { count: results.length, offset: 0, limit, results };
	}

	async query(projectKey, typeId, params) {
		// The bulk route has already checked the batch's emails; the per-draft uniqueness
		// query would make seeding N customers cost N full scans.
		if (bulkCustomerCreate.getStore() && typeId === "customer") {
			return { count: 0, total: 0, offset: 0, limit: 20, results: [] };
		}
		const { sort, withTotal } = requestSort.getStore() ?? {};
		const effective =
			sort !== undefined && params.sort === undefined ? { ...params, sort } : params;
		// 4.4.0 deep-copies the whole collection on every query; filter and page the stored
		// objects instead and copy only the page that leaves (query does not mutate them).
		const candidates = this.candidates(projectKey, typeId, effective.where);
		const paging =
			candidates === null &&
			withTotal === "false" &&
			!effective.offset &&
			typeof effective.sort === "string" &&
			/^id\s+asc$/i.test(effective.sort.trim());
		const unexpanded = { ...effective, expand: undefined };
		const page = await uncopiedScan.run(true, () =>
			paging
				? this.cursorPage(projectKey, typeId, unexpanded)
				: candidateScan.run(candidates, () => super.query(projectKey, typeId, unexpanded)),
		);
		let results = page.results.map(copy);
		if (effective.expand !== undefined) {
			results = await Promise.all(
				results.map((resource) => this.expand(projectKey, resource, effective.expand)),
			);
		}
		return { ...page, results };
	}
}

const mock = new CommercetoolsMock({
	enableAuthentication: !args["no-auth"],
	// Tokens must be ones this server issued (any client id/secret may obtain one).
	validateCredentials: true,
	defaultProjectKey: args.project,
	silent: true,
	storage: new EmulatorStorage(),
});

const app = mock.app;

// 4.4.0 stores subscriptions but knows only their setKey action; `ct-insider setup
// commercetools` brings an existing one in line with the API's other update actions.
const subscriptionActions = mock._repositories.subscription.actions;
subscriptionActions.changeDestination = (_context, resource, { destination }) => {
	resource.destination = destination;
};
subscriptionActions.setMessages = (_context, resource, { messages }) => {
	resource.messages = messages ?? [];
};
subscriptionActions.setChanges = (_context, resource, { changes }) => {
	resource.changes = changes ?? [];
};

// The token endpoint answers with the scopes granted, which setup checks; 4.4.0 reads
// `scope` from the query string only (a client sends it in the form body) and answers
// "todo" without one, where commercetools grants every scope of the API client (here:
// the whole project).
app.addHook("preHandler", async (request) => {
	if (request.method !== "POST" || !request.url.startsWith("/oauth/token")) return;
	const asked = request.query?.scope || request.body?.scope;
	request.query.scope = asked || `manage_project:${args.project}`;
});

// 4.4.0 checks that a token exists, not what it may do; commercetools answers 403
// insufficient_scope. The resources the connector uses, by the scope name they need
// (view_<name> to read, manage_<name> to write; manage_project covers everything).
const resourceScopes = {
	customers: "customers",
	"customer-groups": "customer_groups",
	orders: "orders",
	payments: "payments",
	"discount-codes": "discount_codes",
	products: "products",
	"product-projections": "products",
	inventory: "products",
	categories: "categories",
	"standalone-prices": "standalone_prices",
	"custom-objects": "key_value_documents",
	subscriptions: "subscriptions",
};

function acceptedScopes(method, resource, staged) {
	const name = resourceScopes[resource];
	if (name === "subscriptions") return ["manage_subscriptions"];
	const accepted = [`manage_${name}`];
	if (method === "GET") accepted.push(`view_${name}`);
	if (method === "GET" && resource === "product-projections" && !staged) {
		accepted.push("view_published_products");
	}
	return accepted;
}

app.addHook("preHandler", async (request, reply) => {
	const [project, first, , inStoreResource] = request.url.split("?")[0].split("/").slice(1);
	const resource = first === "in-store" ? inStoreResource : first;
	if (!project || project === "oauth" || project === "_emulator" || !resourceScopes[resource]) {
		return;
	}
	const bearer = /^Bearer (.+)$/i.exec(request.headers.authorization ?? "")?.[1];
	const token = mock._oauth2.store.tokens.find((t) => t.access_token === bearer);
	if (!token) return; // the package's own check answers 401
	const granted = new Set(
		token.scope
			.split(" ")
			.filter((scope) => scope.endsWith(`:${project}`))
			.map((scope) => scope.slice(0, -(project.length + 1))),
	);
	const accepted = acceptedScopes(request.method, resource, request.query?.staged === "true");
	if (granted.has("manage_project") || accepted.some((scope) => granted.has(scope))) return;
	const message = `Insufficient scope. One of the following scopes is missing: ${accepted.join(", ")}`;
	return reply.status(403).send({
		statusCode: 403,
		message,
		errors: [{ code: "insufficient_scope", message }],
		error: "insufficient_scope",
		error_description: message,
	});
});

let faults = { unavailable: false, status: 503 };
const stats = { unavailable: 0, expired_tokens: 0, scanned: 0 };
// Tokens revoked by /_emulator/expire-tokens: refused 401 as commercetools refuses an
// expired one.
const expiredTokens = new Set();

app.addHook("onRequest", async (request, reply) => {
	const path = request.url.split("?")[0];
	if (!faults.unavailable || path.startsWith("/_emulator") || path.startsWith("/oauth")) return;
	stats.unavailable += 1;
	if (faults.status === 0) {
		// Unreachable: the connection ends without an answer.
		request.raw.socket.destroy();
		return reply;
	}
	const message = "Service unavailable (emulated outage)";
	return reply
		.status(faults.status)
		.send({ statusCode: faults.status, message, errors: [] });
});

app.addHook("onRequest", async (request, reply) => {
	if (expiredTokens.size === 0) return;
	const bearer = /^Bearer (.+)$/i.exec(request.headers.authorization ?? "")?.[1];
	if (!bearer || !expiredTokens.has(bearer)) return;
	stats.expired_tokens += 1;
	const message = "invalid_token";
	return reply.status(401).send({
		statusCode: 401,
		message,
		errors: [{ code: "invalid_token", message }],
		error: "invalid_token",
		error_description: "The access token expired",
	});
});

app.post("/_emulator/faults", async (request, reply) => {
	const status = request.body?.status ?? 503;
	if (![0, 500, 502, 503, 504].includes(status)) {
		return reply.status(400).send({ message: "status must be 0, 500, 502, 503 or 504" });
	}
	faults = { unavailable: Boolean(request.body?.unavailable), status };
	return reply.status(204).send();
});

app.post("/_emulator/expire-tokens", async (_request, reply) => {
	const tokens = mock._oauth2.store.tokens;
	for (const token of tokens) expiredTokens.add(token.access_token);
	return reply.status(200).send({ expired: tokens.length });
});

app.get("/_emulator/stats", async () => stats);

app.addHook("onRequest", (request, _reply, done) => {
	const { sort, withTotal } = request.query ?? {};
	requestSort.run({ sort, withTotal }, done);
});

const customObjectPath = /^\/([^/]+)\/custom-objects\/?(?:\?.*)?$/;

app.addHook("preHandler", async (request, reply) => {
	if (request.method !== "POST") return;
	const match = customObjectPath.exec(request.url);
	const draft = request.body;
	if (!match || !draft || draft.version !== 0) return;
	const repository = mock._repositories["key-value-document"];
	const current = await repository.getWithContainerAndKey(
		{ projectKey: match[1] },
		draft.container,
		draft.key,
	);
	if (!current) return;
	const message = `Object ${current.id} has a different version than expected. Expected: 0 - Actual: ${current.version}.`;
	return reply.status(409).send({
		statusCode: 409,
		message,
		errors: [{ code: "ConcurrentModification", message, currentVersion: current.version }],
	});
});

// The commercetools API reports `sequenceNumber`s per resource only through
// subscriptions, which the package cannot deliver; tests post those payloads
// themselves. What they do need is a fast way to create many resources.
const importers = {
	"order-import": async (repos, ctx, draft) => {
		const created = await repos.order.import(ctx, draft);
		if (!draft.completedAt) return created;
		// The API keeps an imported order's completedAt (its real date); 4.4.0 drops it.
		const dated = { ...created, completedAt: draft.completedAt };
		await mock._storage.add(ctx.projectKey, "order", dated);
		return dated;
	},
};

app.post("/_emulator/bulk/:projectKey/:typeId", async (request, reply) => {
	const { projectKey, typeId } = request.params;
	const drafts = request.body;
	if (!Array.isArray(drafts)) {
		return reply.status(400).send({ message: "body must be a JSON array of drafts" });
	}
	const repos = mock._repositories;
	const create = importers[typeId] ?? ((r, ctx, draft) => r[typeId]?.create(ctx, draft));
	if (!importers[typeId] && !repos[typeId]) {
		return reply.status(404).send({ message: `unknown resource type ${typeId}` });
	}
	const ctx = { projectKey };
	if (typeId === "customer") {
		// The batch's emails against each other, then one walk of the stored customers
		// (uncopied: a deep copy of the whole collection per batch made seeding 1,000,000
		// customers quadratic in copies).
		const emails = new Set();
		for (const draft of drafts) {
			const email = String(draft.email ?? "").toLowerCase();
			if (emails.has(email)) {
				return reply.status(400).send({ message: `duplicate customer email ${email}` });
			}
			emails.add(email);
		}
		let taken;
		for (const customer of (await mock._storage.forProjectKey(projectKey)).customer._map.values()) {
			if (emails.has(customer.lowercaseEmail)) {
				taken = customer;
				break;
			}
		}
		if (taken) {
			return reply.status(400).send({ message: `duplicate customer email ${taken.lowercaseEmail}` });
		}
	}
	const ids = [];
	const objects = [];
	const keep = request.query.objects === "true";
	await bulkCustomerCreate.run(typeId === "customer", async () => {
		for (const draft of drafts) {
			const created = await create(repos, ctx, draft);
			ids.push(created.id);
			if (keep) objects.push(created);
		}
	});
	const answer = { count: ids.length, ids };
	return reply.status(201).send(keep ? { ...answer, objects } : answer);
});

app.post("/_emulator/reset", async (_request, reply) => {
	await mock.clear();
	faults = { unavailable: false, status: 503 };
	stats.unavailable = 0;
	stats.scanned = 0;
	stats.expired_tokens = 0;
	expiredTokens.clear();
	return reply.status(204).send();
});

app.get("/_emulator/health", async () => ({ status: "ok", project: args.project }));

await app.listen({ port: Number(args.port), host: args.host });
process.stdout.write(`commercetools emulator listening on http://${args.host}:${args.port}\n`);

for (const signal of ["SIGINT", "SIGTERM"]) {
	process.on(signal, () => {
		app.close().finally(() => process.exit(0));
	});
}
