// Audit trail (auditor and admin tokens): the hash chain of every agent (stored envelopes,
// committed prefix, missing seqs and their ranges, verdicts, envelopes not yet in the
// transparency log, conflicts) and the quarantine by reason.

import { ApiError, all, get, pool } from "../api.js";
import { card, fmt, h, note, table } from "../dom.js";
import { COLOURS, barChart } from "../charts.js";

export const needsRun = false; // the audit trail exists before any analysis

export async function render(view, ctx) {
  let agents;
  try {
    agents = await all("audit/agents", {}, { maxPages: 5, limit: 200 });
  } catch (err) {
    if (err instanceof ApiError && err.status === 403) {
      sessionStorage.setItem("wattrail.auditDenied", "1");
      document.getElementById("nav-audit").hidden = true;
      view.replaceChildren(note("This token's role may not read the audit trail: it needs an auditor or admin token.", "warn"));
      view.dataset.denied = "1";
      return;
    }
    throw err;
  }
  // one chain request per agent, a few at a time (the API rate-limits each token)
  const shown = agents.items.slice(0, 200);
  const chains = await pool(shown, 4, (a) => get(`audit/agents/${encodeURIComponent(a.agent_id)}/chain`));
  const quarantine = await all("audit/quarantine", {}, { maxPages: 5, limit: 1000 });
  if (ctx.stale()) return;
  const rows = shown.map((a, i) => ({ agent: a, chain: chains[i].ok ? chains[i].value : null, error: chains[i].ok ? null : chains[i].error }));
  const healthy = rows.filter((r) => r.chain && r.chain.missing_envelopes === 0 && r.chain.conflicts.length === 0).length;
  const chainCard = card(`Hash chains: ${healthy} of ${rows.length} agents complete`, table([
    { label: "Agent", value: (r) => r.agent.agent_id },
    { label: "Status", value: (r) => status(r) },
    { label: "Stored", class: "num", value: (r) => r.chain?.stored_envelopes ?? "–" },
    { label: "Committed 1..N", class: "num", value: (r) => r.agent.committed_upto },
    { label: "Last seq", class: "num", value: (r) => r.chain?.last_seq ?? "–" },
    { label: "Missing", class: "num", value: (r) => r.chain?.missing_envelopes ?? "–" },
    { label: "Gaps (seq ranges)", value: (r) => (r.chain ? gaps(r.chain) : r.error.message) },
    { label: "Not yet logged", class: "num", value: (r) => r.chain?.unlogged_envelopes ?? "–" },
    { label: "Verdicts", value: (r) => (r.chain ? Object.entries(r.chain.verdicts).map(([k, v]) => `${k} ${v}`).join(", ") || "–" : "–") },
    { label: "Quarantined", value: (r) => (r.chain ? Object.entries(r.chain.quarantined_by_reason).map(([k, v]) => `${k} ${v}`).join(", ") || "0" : "–") },
    { label: "Last received", value: (r) => fmt.time(r.chain?.last_received_at) },
    { label: "Keys", class: "num", value: (r) => r.agent.keys },
  ], rows, { testid: "chains-table" }), agents.truncated || agents.items.length > shown.length
    ? note(`Only the first ${shown.length} agents are shown.`, "warn") : null);

  const reasons = {};
  for (const q of quarantine.items) reasons[q.reason] = (reasons[q.reason] || 0) + q.count;
  const qCard = card(`Quarantine: ${quarantine.items.length} distinct messages`);
  if (quarantine.items.length) {
    const labels = Object.keys(reasons).sort();
    barChart(qCard, { title: "Quarantined messages by reason (including repeats)", testid: "quarantine-chart", labels,
      yLabel: "messages", series: [{ label: "messages", values: labels.map((k) => reasons[k]), colour: COLOURS.ntl, digits: 0 }] });
    qCard.append(table([
      { label: "Id", class: "num", value: (q) => q.id },
      { label: "Reason", value: (q) => q.reason },
      { label: "Detail", value: (q) => q.detail ?? "–" },
      { label: "Claimed agent", value: (q) => q.claimed_agent_id ?? "–" },
      { label: "Seq", class: "num", value: (q) => q.seq ?? "–" },
      { label: "Times seen", class: "num", value: (q) => q.count },
      { label: "Last seen", value: (q) => fmt.time(q.last_seen) },
      { label: "SHA-256", value: (q) => h("code", { title: q.sha256 }, q.sha256.slice(0, 16) + "…") },
    ], quarantine.items, { testid: "quarantine-table" }));
  } else {
    qCard.append(note("Nothing quarantined: every message verified."));
  }
  view.replaceChildren(chainCard, qCard,
    h("p", { class: "hint" }, "The claimed agent of a quarantined message is what the message said: untrusted. "
      + "Export the evidence for offline verification with /v1/audit/export (docs/api.md)."));
}

function status(r) {
  if (!r.chain) return h("span", { class: "badge bad" }, "error");
  const c = r.chain;
  if (c.conflicts.length) return h("span", { class: "badge bad" }, "conflict");
  if (c.missing_envelopes) return h("span", { class: "badge warn" }, "gaps");
  return h("span", { class: "badge ok" }, "complete");
}

function gaps(c) {
  if (!c.gaps.length) return "none";
  const text = c.gaps.slice(0, 5).map((g) => (g.from_seq === g.to_seq ? `${g.from_seq}` : `${g.from_seq}–${g.to_seq}`)).join(", ");
  return text + (c.gaps.length > 5 || c.gaps_truncated ? ` … (${c.gaps.length}${c.gaps_truncated ? "+" : ""})` : "");
}
