// Keyboard triage for the officers' page. Decisions go to the JSON API with the session cookie
// and the session's CSRF token (from <meta name="csrf-token">) in X-CSRF-Token. The list keeps
// itself current by polling; a case page claims its case, so two officers never decide the same one.
"use strict";

const LIST_POLL_MS = 5000;

const csrfToken = () => document.querySelector('meta[name="csrf-token"]').content;

function typingInField(event) {
  const tag = event.target.tagName;
  return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT";
}

function postJson(url, body) {
  return post(url, { headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

// A FormData body goes as multipart (the browser writes its Content-Type): the field photos of a disposal.
async function post(url, { headers = {}, body }) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { ...headers, "X-CSRF-Token": csrfToken() },
    body,
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = Array.isArray(data.detail) ? data.detail.map((d) => d.msg).join("; ") : data.detail;
    const error = new Error(detail || `HTTP ${response.status}`);
    error.code = data.code;  // e.g. case_claimed, case_changed: what the page offers next
    throw error;
  }
  return data;
}

// ---- case list: J/K select, Enter opens, N/P pages, / searches, X ticks for a bulk decision -----
function setUpList() {
  const list = document.getElementById("case-cards");
  const cards = () => Array.from(list.querySelectorAll(".card"));
  let selected = null;  // a card, not a position: new cards above it must not move the selection
  const select = (card) => {
    if (!card) return;
    cards().forEach((each) => each.classList.toggle("selected", each === card));
    selected = card;
    card.scrollIntoView({ block: "nearest" });
  };
  const step = (by) => {
    const all = cards();
    select(all[Math.max(0, Math.min(all.length - 1, all.indexOf(selected) + by))]);
  };
  select(cards()[0]);
  const bulk = setUpBulk(list);
  keepListCurrent(list, {
    selected: () => selected,
    select,
    replace: (shown, fresh) => {
      shown.replaceWith(fresh);
      if (shown === selected) select(fresh);
      bulk.restore(fresh);
    },
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "/" && !typingInField(event)) {
      event.preventDefault();
      document.getElementById("search").focus();
      return;
    }
    if (typingInField(event) || event.ctrlKey || event.metaKey || event.altKey) return;
    const go = (id) => { const link = document.getElementById(id); if (link) link.click(); };
    switch (event.key) {
      case "j": step(1); break;
      case "k": step(-1); break;
      case "Enter": case "o": if (selected) selected.querySelector("a").click(); break;
      case "n": go("next-page"); break;
      case "p": go("prev-page"); break;
      case "x": if (selected) bulk.toggle(selected); break;
      default: return;
    }
    event.preventDefault();
  });
}

// Polls the list's changes (pages.py list_changes): a new case comes in at the top of the first page,
// a changed card is redrawn in place, one that left the filter (decided by someone else) is greyed,
// not removed, and the selected card stays where the officer sees it.
function keepListCurrent(list, selection) {
  let cursor = list.dataset.cursor;
  const firstPage = list.dataset.page === "1";
  const shownCard = (caseId) => list.querySelector(`.card[data-case-id="${CSS.escape(caseId)}"]`);
  const poll = async () => {
    const params = new URLSearchParams(window.location.search);
    params.delete("page");
    params.set("after", cursor);
    // Marked as a poll, so a list left open does not keep its session from going idle.
    const response = await fetch(`/list/changes?${params}`, { credentials: "same-origin",
                                                              headers: { "X-Patrol-Poll": "1" } });
    if (!response.ok || response.redirected) return false;  // logged out: the next click goes to the login page
    const changes = new DOMParser().parseFromString(await response.text(), "text/html").querySelector("ol");
    cursor = changes.dataset.cursor;
    const anchor = selection.selected();
    const anchorTop = anchor ? anchor.getBoundingClientRect().top : 0;
    const arrived = [];
    changes.querySelectorAll("template").forEach((template) => {
      const fresh = template.content.firstElementChild;
      const shown = shownCard(fresh.dataset.caseId);
      if (shown) selection.replace(shown, fresh);
      else if (template.dataset.change === "new" && firstPage) arrived.push(fresh);
    });
    arrived.reverse().forEach((card) => list.prepend(card));  // they come newest first
    changes.querySelectorAll('[data-change="gone"]').forEach((gone) => {
      const shown = shownCard(gone.dataset.caseId);
      if (shown) shown.classList.add("gone");
    });
    if (arrived.length) {
      const total = document.getElementById("total");
      total.textContent = Number(total.textContent) + arrived.length;
      const empty = document.getElementById("no-cases");
      if (empty) empty.remove();
      if (!anchor) selection.select(arrived[0]);
    }
    if (anchor) window.scrollBy(0, anchor.getBoundingClientRect().top - anchorTop);
    return true;
  };
  // A hidden tab skips its turn; a network hiccup only costs one.
  const next = () => setTimeout(async () => {
    const stillLoggedIn = document.hidden || await poll().catch(() => true);
    if (stillLoggedIn) next();
  }, LIST_POLL_MS);
  next();
}

// ---- the case's claim: taken on opening, renewed while the officer works, freed on leaving --------
function setUpClaim(api) {
  const banner = document.getElementById("claim-banner");
  if (!banner) return;  // a decided case is nobody's to claim
  let held = false;
  let active = false;  // the officer did something since the last renewal
  const show = (state) => { banner.dataset.state = state; };
  const clock = (iso) => new Date(iso).toLocaleTimeString("zh-CN", {
    timeZone: banner.dataset.timezone, hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  const claim = async (takeover) => {
    try {
      const answer = await postJson(`${api}/claim`, { takeover });
      document.getElementById("claim-until").textContent = clock(answer.claim.expires_at);
      held = true;
      show("mine");
    } catch (error) {
      held = false;
      document.getElementById("claim-refused").textContent = error.message;
      show("refused");
    }
  };
  if (banner.dataset.state !== "theirs") claim(false);
  ["keydown", "pointermove", "scroll"].forEach((kind) => {
    document.addEventListener(kind, () => { active = true; }, { passive: true });
  });
  // Renewed at half its length while the officer works; a screen left alone lets the case go.
  setInterval(() => {
    if (held && active) claim(false);
    active = false;
  }, Number(banner.dataset.claimS) * 500);
  document.getElementById("btn-release").addEventListener("click", async () => {
    await postJson(`${api}/release`, {});
    held = false;
    show("released");
  });
  const takeover = document.getElementById("btn-takeover");
  if (takeover) takeover.addEventListener("click", () => claim(true));
  // Leaving without a decision (J/K, back to the list) frees the case at once, not when the claim
  // runs out. A beacon carries no header, so the CSRF token goes as a form field.
  window.addEventListener("pagehide", () => {
    if (held) navigator.sendBeacon(`${api}/release`, new URLSearchParams({ csrf_token: csrfToken() }));
  });
}

// ---- one case: C confirm, R reject (1-5 reason, Enter), E escalate, D duplicate, U reopen, L plate
function setUpCase(root) {
  const caseId = root.dataset.caseId;
  const status = root.dataset.status;
  const olderUrl = root.dataset.olderUrl;
  const api = `/api/cases/${encodeURIComponent(caseId)}`;
  const errorBox = document.getElementById("action-error");
  const pickers = ["reject-picker", "duplicate-picker", "reopen-picker", "plate-picker"]
    .map((id) => document.getElementById(id));
  // The version this page shows: a decision on a case that changed since is refused (case_changed).
  const version = Number(root.dataset.version);
  let busy = false;

  const showError = (error) => {
    document.getElementById("action-error-text").textContent = `操作失败：${error.message}`;
    document.getElementById("reload-case").classList.toggle("hidden", error.code !== "case_changed");
    errorBox.classList.remove("hidden");
  };
  setUpClaim(api);
  const closePickers = () => pickers.forEach((picker) => picker && picker.classList.add("hidden"));
  const openPicker = (id, focusId) => {
    closePickers();
    document.getElementById(id).classList.remove("hidden");
    if (focusId) document.getElementById(focusId).focus();
  };

  // After a change made on this page (a 处置流程 step, reopen, assign): the case as it is now, without
  // the "案件 … 已确认" banner of the decision that brought the officer here, which would contradict it.
  const showCaseNow = () => {
    const url = new URL(window.location.href);
    ["done", "did"].forEach((name) => url.searchParams.delete(name));
    if (url.href === window.location.href) window.location.reload();
    else window.location.replace(url.href);
  };

  // After a decision the next case in the list opens, so triage never needs the mouse.
  const afterDecision = (action) => {
    const done = `done=${encodeURIComponent(caseId)}&did=${action}`;
    const next = olderUrl || `/cases/${encodeURIComponent(caseId)}?${root.dataset.query}`;
    window.location.assign(`${next}${next.includes("?") ? "&" : "?"}${done}`);
  };

  const decide = async (action, body) => {
    if (busy) return;
    busy = true;
    try {
      await postJson(`${api}/${action}`, { ...body, version });
      afterDecision(action);
    } catch (error) {
      showError(error);
      busy = false;
    }
  };

  const rejectPicker = document.getElementById("reject-picker");
  if (rejectPicker) {
    rejectPicker.addEventListener("submit", (event) => {
      event.preventDefault();
      const reason = rejectPicker.querySelector('input[name="reason"]:checked').value;
      decide("reject", { reason, note: document.getElementById("reject-note").value });
    });
    rejectPicker.addEventListener("keydown", (event) => {
      const radios = rejectPicker.querySelectorAll('input[name="reason"]');
      const index = Number(event.key) - 1;
      if (event.target.id !== "reject-note" && index >= 0 && index < radios.length) {
        radios[index].checked = true;
        event.preventDefault();
      } else if (event.key === "Enter") {
        event.preventDefault();
        rejectPicker.requestSubmit();
      }
    });
  }
  const duplicatePicker = document.getElementById("duplicate-picker");
  duplicatePicker.addEventListener("submit", (event) => {
    event.preventDefault();
    decide("duplicate", { duplicate_of: document.getElementById("duplicate-of").value.trim() });
  });
  const loadDuplicates = suggestDuplicates(api, duplicatePicker);
  const platePicker = document.getElementById("plate-picker");
  if (platePicker) {
    platePicker.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        await postJson(`${api}/plate`, { text: document.getElementById("plate-input").value,
                                        colour: document.getElementById("plate-colour-input").value,
                                        reason: document.getElementById("plate-reason").value });
        showCaseNow();
      } catch (error) { showError(error); }
    });
    document.getElementById("btn-plate").addEventListener("click", () => openPicker("plate-picker", "plate-input"));
  }
  const reopenPicker = document.getElementById("reopen-picker");
  reopenPicker.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await postJson(`${api}/reopen`, { note: document.getElementById("reopen-note").value, version });
      showCaseNow();
    } catch (error) { showError(error); }
  });
  const acknowledgeButton = document.getElementById("btn-ack-tamper");
  if (acknowledgeButton) {
    acknowledgeButton.addEventListener("click", async () => {
      try {
        await postJson(`${api}/acknowledge-tampering`, {});
        showCaseNow();
      } catch (error) { showError(error); }
    });
  }
  const assignForm = document.getElementById("assign-form");
  if (assignForm) {
    assignForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        await postJson(`${api}/assign`, { assignee: document.getElementById("assignee").value || null });
        showCaseNow();
      } catch (error) { showError(error); }
    });
  }

  // 处置流程: each step's form posts to its route and the page shows the case as the step left it.
  document.querySelectorAll("form.loop-step").forEach((form) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const fields = new FormData(form);
      try {
        if (form.dataset.step === "dispose") {
          await post(`${api}/dispose`, { body: fields });
        } else {
          const body = Object.fromEntries(fields);
          if (event.submitter && event.submitter.name === "accept") body.accept = event.submitter.value === "true";
          if (body.deadline === "") delete body.deadline;  // the deadline of the violation's kind
          await postJson(`${api}/${form.dataset.step}`, body);
        }
        showCaseNow();
      } catch (error) { showError(error); }
    });
  });

  const actions = {
    confirm: () => decide("confirm", { note: "" }),
    reject: () => openPicker("reject-picker", null),
    escalate: () => decide("escalate", { note: "" }),
    duplicate: () => {
      openPicker("duplicate-picker", "duplicate-of");
      loadDuplicates();
    },
    reopen: () => openPicker("reopen-picker", "reopen-note"),
  };
  document.querySelectorAll("#actions button[data-action]").forEach((button) => {
    button.addEventListener("click", () => actions[button.dataset.action]());
  });

  // The picker takes focus so its number keys and Enter reach it.
  rejectPicker && rejectPicker.setAttribute("tabindex", "-1");
  const keys = { c: "confirm", r: "reject", e: "escalate", d: "duplicate" };
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") { closePickers(); errorBox.classList.add("hidden"); return; }
    if (typingInField(event) || event.ctrlKey || event.metaKey || event.altKey) return;
    if (rejectPicker && !rejectPicker.classList.contains("hidden") && rejectPicker.contains(event.target)) return;
    const follow = (id) => { const link = document.getElementById(id); if (!link.classList.contains("disabled")) link.click(); };
    if (keys[event.key] && status === "new") {
      event.preventDefault();
      actions[keys[event.key]]();
      if (event.key === "r") rejectPicker.focus();
    } else if (event.key === "l" && platePicker) {
      event.preventDefault();
      openPicker("plate-picker", "plate-input");
    } else if (event.key === "u" && document.getElementById("btn-reopen")) {  // as the page offers it: not in 处置流程
      event.preventDefault();
      actions.reopen();
    } else if (event.key === "j") { follow("older"); } else if (event.key === "k") { follow("newer"); } else if (event.key === "b") {
      follow("back");
    }
  });

  const showViews = document.getElementById("show-views");
  showViews.addEventListener("change", () => {
    document.getElementById("audit").classList.toggle("hide-views", !showViews.checked);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("case");
  if (root) setUpCase(root);
  else if (document.getElementById("filters")) setUpList();
});
