// The route of an answer in plain words, and what it cost against the strongest model.
// Plain ES module, no DOM: shared by the chat page (app.js) and the usage page (usage.js).
//
// Route strings are written by the server (baimo/chat.py and baimo/routing/*). Their shapes:
//   direct -> M                                              a model asked for by name
//   auto: easy prompt (d=-1.3); M P=0.76 ~$0.00001 is enough vs N P=0.97 ~$0.00310 -> M
//   auto: hard prompt (d=+1.2); most capable: M P=0.97 -> M  the hybrid (baimo/routing/auto.py)
//   rules:code -> M | rules:default -> M | rules:2 -> M      a rule by name, the default, or a rule by number
//   rules:code => learned:p=0.83,lam=0.1 -> M                a rule that hands over to another router
//   learned:p=0.83,lam=0.1 -> M                              a trained router's P(good answer)
//   cascade-prompt:p=0.62>=0.50 -> M                         a cascade judged from the prompt
//   cascade: A conf=0.30<0.50; B conf=0.91>=0.50 -> B        a cascade that ran A, then B
//   grounded: no passage with similarity >= 0.25 -> M       a grounded persona declined
//   <decided> | fallback: X failed (503), Y overflowed (400) -> M   the chosen model failed; M answered
//   private: phone number -> local only | <decided> | skipped remote X -> M    personal data: on premises only
//   private: person name (remote, as requested) | direct -> X                 (baimo/privacy.py)
// Anything else is shown as it is.

// who decided, when no single router of /v1/models has the strategy (or inside a hand-over: "rule 'x' → a cascade: …")
const STRATEGY_WORDS = { auto: "the hybrid", rules: "a rules router", learned: "a learned router", cascade: "a cascade" };

const NBSP = "\u00a0"; // "76 %" never breaks between the number and its sign

/** A share 0..1 as "76 %" (the SI style: a no-break space before the percent sign). */
export function pct(p) {
  return `${Math.round(Number(p) * 100)}${NBSP}%`;
}

/** USD with six decimals under $1 (per-answer costs are tiny), else cents: "$0.000012", "$1.25". */
export function usd(v) {
  const n = Number(v);
  return Math.abs(n) < 1 ? `$${n.toFixed(6)}` : `$${n.toFixed(2)}`;
}

function stripTarget(segment) {
  const i = segment.lastIndexOf(" -> ");
  return i === -1 ? segment.trim() : segment.slice(0, i).trim();
}

function targetOf(route) {
  const i = route.lastIndexOf(" -> ");
  return i === -1 ? null : route.slice(i + 4).trim();
}

// "X failed (503)" -> "X failed (HTTP 503)"; "X overflowed (400)" -> "X's context window was too small"
function failureWords(f) {
  let m = f.match(/^(\S+) overflowed \(\d+\)$/);
  if (m) return `${m[1]}'s context window was too small`;
  m = f.match(/^(\S+) failed \((\d+)\)$/);
  if (m) return `${m[1]} failed (HTTP ${m[2]})`;
  m = f.match(/^(\S+) cannot serve it \((.*)\)$/);
  if (m) return `${m[1]} cannot serve it (${m[2]})`;
  return f;
}

function autoWords(body) {
  // "<level> prompt (d=±x); most capable: M P=0.97"  |  "<level> prompt (d=±x); M P=0.76 ~$… is enough vs N P=0.97 ~$…"
  const level = body.match(/^(easy|average|hard) prompt/);
  const lead = level ? `${level[1]} prompt` : "prompt";
  let m = body.match(/most capable: (\S+) P=([\d.]+)/);
  if (m) return `${lead} → most capable model, ${m[1]} (${pct(m[2])} likely good)`;
  m = body.match(/; (\S+) P=([\d.]+) \S+ is enough vs /);
  if (m) return `${lead}, ${m[1]} is likely good enough (${pct(m[2])})`;
  return body;
}

function cascadeWords(body) {
  // "A conf=0.30<0.50; A2 failed (503); B conf=0.91>=0.50"  (the last step may be absent: the last model answers)
  const notes = body.split(";").map((s) => s.trim()).filter(Boolean);
  const passed = [];
  let kept = null;
  for (const n of notes) {
    let m = n.match(/^(\S+) conf=([\d.]+)>=([\d.]+)$/);
    if (m) {
      kept = `${m[1]} was confident enough (${m[2]} ≥ ${m[3]})`;
      continue;
    }
    m = n.match(/^(\S+) conf=([\d.]+)<([\d.]+)(?: escalated)?$/);
    if (m) {
      passed.push(`${m[1]} was unsure (${m[2]})`);
      continue;
    }
    passed.push(failureWords(n));
  }
  const parts = [];
  if (passed.length) parts.push(`escalated after ${passed.join(", ")}`);
  if (kept) parts.push(kept);
  else if (!passed.length) parts.push("the only step");
  return parts.join("; ");
}

// One decided segment ("auto: …", "rules:code", …) in words, and its strategy.
function segmentWords(seg) {
  if (seg === "direct") return { strategy: "direct", words: null };
  let m = seg.match(/^auto:\s*(.*)$/);
  if (m) return { strategy: "auto", words: autoWords(m[1]) };
  m = seg.match(/^rules:(.*)$/);
  if (m) {
    const rule = m[1].trim();
    const words = rule === "default" ? "no rule matched, the default" : /^\d+$/.test(rule) ? `rule #${rule}` : `rule '${rule}'`;
    return { strategy: "rules", words };
  }
  m = seg.match(/^learned:p=([\d.]+)/);
  if (m) return { strategy: "learned", words: `likely good (${pct(m[1])})` };
  m = seg.match(/^cascade-prompt:p=([\d.]+)(>=|<)([\d.]+)/);
  if (m) {
    const words = m[2] === ">=" ? `the cheapest step likely good enough (${pct(m[1])} ≥ ${pct(m[3])})` : `no cheaper step was likely good enough (${pct(m[1])})`;
    return { strategy: "cascade", words };
  }
  m = seg.match(/^cascade(?::\s*(.*))?$/);
  if (m) return { strategy: "cascade", words: cascadeWords(m[1] || "") };
  m = seg.match(/^grounded: no passage with similarity >= ([\d.]+)/);
  if (m) return { strategy: "grounded", words: `no knowledge passage was relevant enough (≥ ${m[1]}): declined` };
  const colon = seg.match(/^([\w-]+):\s*(.*)$/);
  return colon ? { strategy: colon[1], words: colon[2] } : { strategy: null, words: seg };
}

// "private: phone number -> local only" (a router) | "private: person name (local)" (a model asked for by name)
function privacyWords(part) {
  const body = part.replace(/^private:\s*/, "").replace(/\s*->\s*local only$/, "");
  const m = body.match(/^(.*) \((local|remote, as requested)\)$/);
  if (m && m[2] !== "local") return `Private (${m[1]}), sent to a remote model as asked`;
  return `Private (${m ? m[1] : body}): kept on premises`;
}

/**
 * The route string of an answer in plain words.
 *
 * route: the stored `route` (see the top of this file); its parts are separated by " | ": an optional privacy
 * note, the decision, then skipped remote models, fallbacks or failures. routers: the router entries of
 * /v1/models ({id, baimo: {kind: "router", strategy}}), used to name the router that decided when exactly one
 * router has that strategy. model: the model that answered (else the route's last "-> model").
 * Returns {text, model, routed, fallback, private}: text like "Routed by baimo/auto: easy prompt, local/x is
 * likely good enough (76 %)", the serving model, whether a router decided, whether a fallback answered, and
 * whether the request was kept private.
 */
export function describeRoute(route, { routers = [], model = null } = {}) {
  if (!route) return { text: model ? `Answered by ${model}` : "", model, routed: false, fallback: false, private: false };
  const served = model || targetOf(route);
  let decided = null;
  const lead = [];
  const tail = [];
  let fallback = false;
  for (const part of route.split(" | ").map((p) => p.trim())) {
    if (part.startsWith("private:")) {
      lead.push(privacyWords(part));
    } else if (part.startsWith("fallback: ")) {
      const failures = stripTarget(part.slice(10)).split(/,\s(?=\S+ (?:failed|overflowed|cannot))/);
      tail.push(`fell back to ${served} after ${failures.map(failureWords).join(", ")}`);
      fallback = true;
    } else if (part.startsWith("skipped remote ")) {
      tail.push(`skipped ${stripTarget(part.slice(15))} (not on premises)`);
    } else if (decided === null && !/^\S+ (failed|overflowed|cannot serve it) \(/.test(part)) {
      decided = part;
    } else if (/^\S+ (failed|overflowed|cannot serve it) \(/.test(part)) {
      // a request no model could answer (usage rows): "… | M failed (503); N failed (503)"
      tail.push(`no model answered: ${part.split(/;\s*/).map(failureWords).join(", ")}`);
    } else {
      tail.push(part);
    }
  }
  const segments = stripTarget(decided || "direct").split(" => ").map((seg) => segmentWords(stripTarget(seg)));
  const first = segments[0];
  // a router that hands over to another (rules => auto): name the inner one's kind
  const parts = segments
    .map((seg, i) => (i && seg.words && STRATEGY_WORDS[seg.strategy] ? `${STRATEGY_WORDS[seg.strategy]}: ${seg.words}` : seg.words))
    .filter(Boolean);
  let text;
  if (first.strategy === "direct") {
    text = fallback ? null : "Asked for by name";
  } else if (!first.strategy) {
    text = parts.join(" → ");
  } else if (first.strategy === "grounded") {
    text = `Grounded persona: ${parts.join(" → ")}`;
  } else {
    const named = routers.filter((r) => r && r.baimo && r.baimo.strategy === first.strategy);
    const who = named.length === 1 ? named[0].id : STRATEGY_WORDS[first.strategy] || first.strategy;
    text = `Routed by ${who}: ${parts.join(" → ")}`;
  }
  let out = [text, ...tail].filter(Boolean).join("; ");
  out = out.charAt(0).toUpperCase() + out.slice(1);
  if (lead.length) out = `${lead.join("; ")} · ${out}`;
  return { text: out, model: served, routed: !["direct", null].includes(first.strategy), fallback, private: lead.length > 0 };
}

/**
 * What an answer cost against the strongest model its router could have used.
 *
 * m: a stored message or usage row with `cost`, `baseline_cost` (USD), `baseline_model` and `model` (the one
 * that answered).
 * Returns null when there is nothing to compare (no baseline, or a baseline of 0), else
 * {text, change}: text like "$0.000012 · vs $0.003100 on remote/gpt-4o (−99 %)", change the relative
 * difference (cost - baseline) / baseline (negative = a saving).
 */
export function describeSaving(m) {
  const base = Number(m && m.baseline_cost);
  if (!m || m.baseline_cost == null || !(base > 0)) return null;
  const cost = Number(m.cost || 0);
  const change = (cost - base) / base;
  if (m.model && m.model === m.baseline_model && cost === base) {
    return { text: `${usd(cost)} · the strongest model itself, no saving`, change };
  }
  const on = m.baseline_model ? ` on ${m.baseline_model}` : "";
  const rounded = Math.trunc(change * 100); // toward zero: a 99.6 % saving is not "100 %" unless it was free
  let rel;
  if (rounded === 0) rel = cost === base ? "the same" : `±0${NBSP}%`;
  else rel = `${rounded < 0 ? "−" : "+"}${Math.abs(rounded)}${NBSP}%`;
  return { text: `${usd(cost)} · vs ${usd(base)}${on} (${rel})`, change };
}
