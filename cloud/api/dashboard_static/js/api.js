// The API client: the bearer token (sessionStorage: it ends with the tab), JSON requests,
// problem+json errors, paging through `next_cursor`, and a 429 retry that honours Retry-After.

const TOKEN_KEY = "wattrail.token";
const API = new URL("../v1/", new URL(".", document.baseURI)).pathname; // "/v1/" next to /dashboard/

export class ApiError extends Error {
  constructor(status, problem, path) {
    const detail = (problem && (problem.detail || problem.title)) || `HTTP ${status}`;
    super(`${detail} (${status} on ${path})`);
    this.status = status;
    this.problem = problem;
    this.path = path;
  }
}

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (t) => sessionStorage.setItem(TOKEN_KEY, t),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** GET `path` (relative to /v1/) with query `params` (null/undefined values left out). */
export async function get(path, params = {}, { tokenOverride = null } = {}) {
  const url = new URL(API + path, location.origin);
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== "") url.searchParams.set(k, String(v));
  }
  const secret = tokenOverride || token.get();
  for (let attempt = 0; ; attempt++) {
    const res = await fetch(url, {
      headers: { Accept: "application/json", Authorization: `Bearer ${secret}` },
    });
    if (res.status === 429 && attempt < 3) {
      const wait = Math.min(10, Number(res.headers.get("Retry-After")) || 1);
      await sleep(wait * 1000);
      continue;
    }
    const type = res.headers.get("Content-Type") || "";
    const body = type.includes("json") ? await res.json() : await res.text();
    if (!res.ok) {
      const err = new ApiError(res.status, typeof body === "object" ? body : null, url.pathname);
      if (res.status === 401 && !tokenOverride) onUnauthorized(err);
      throw err;
    }
    return body;
  }
}

/** Every item of a paged listing, following next_cursor for at most `maxPages` pages. */
export async function all(path, params = {}, { maxPages = 20, limit = 1000 } = {}) {
  const items = [];
  let cursor = null;
  for (let i = 0; i < maxPages; i++) {
    const page = await get(path, { ...params, limit, cursor });
    items.push(...page.items);
    cursor = page.next_cursor;
    if (!cursor) return { items, truncated: false };
  }
  return { items, truncated: true };
}

/** A GeoJSON layer, following the FeatureCollection's next_cursor. */
export async function features(path, params = {}, { maxPages = 10 } = {}) {
  const out = [];
  let cursor = null;
  for (let i = 0; i < maxPages; i++) {
    const fc = await get(path, { ...params, cursor });
    out.push(...fc.features);
    cursor = fc.next_cursor;
    if (!cursor) break;
  }
  return out;
}

/** Run `fn` over `items` with at most `n` requests in flight (the API rate-limits per token). */
export async function pool(items, n, fn) {
  const out = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const i = next++;
      try { out[i] = { ok: true, value: await fn(items[i]) }; } catch (e) { out[i] = { ok: false, error: e }; }
    }
  }
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  return out;
}
