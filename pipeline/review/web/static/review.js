// Keyboard triage for the officers' page. Decisions go to the JSON API with the session cookie
// and the session's CSRF token (from <meta name="csrf-token">) in X-CSRF-Token.
"use strict";

const csrfToken = () => document.querySelector('meta[name="csrf-token"]').content;

function typingInField(event) {
  const tag = event.target.tagName;
  return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT";
}

async function postJson(url, body) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() },
    body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = Array.isArray(data.detail) ? data.detail.map((d) => d.msg).join("; ") : data.detail;
    throw new Error(detail || `HTTP ${response.status}`);
  }
  return data;
}

// ---- case list: J/K select, Enter opens, N/P pages, / searches -------------------------------
function setUpList() {
  const cards = Array.from(document.querySelectorAll("#case-cards .card"));
  let selected = cards.length ? 0 : -1;
  const select = (index) => {
    if (!cards.length) return;
    selected = Math.max(0, Math.min(cards.length - 1, index));
    cards.forEach((card, i) => card.classList.toggle("selected", i === selected));
    cards[selected].scrollIntoView({ block: "nearest" });
  };
  select(0);
  document.addEventListener("keydown", (event) => {
    if (event.key === "/" && !typingInField(event)) {
      event.preventDefault();
      document.getElementById("search").focus();
      return;
    }
    if (typingInField(event) || event.ctrlKey || event.metaKey || event.altKey) return;
    const go = (id) => { const link = document.getElementById(id); if (link) link.click(); };
    switch (event.key) {
      case "j": select(selected + 1); break;
      case "k": select(selected - 1); break;
      case "Enter": case "o": if (selected >= 0) cards[selected].querySelector("a").click(); break;
      case "n": go("next-page"); break;
      case "p": go("prev-page"); break;
      default: return;
    }
    event.preventDefault();
  });
}

// ---- one case: C confirm, R reject (1-5 reason, Enter), E escalate, D duplicate, U reopen ------
function setUpCase(root) {
  const caseId = root.dataset.caseId;
  const status = root.dataset.status;
  const olderUrl = root.dataset.olderUrl;
  const api = `/api/cases/${encodeURIComponent(caseId)}`;
  const errorBox = document.getElementById("action-error");
  const pickers = ["reject-picker", "duplicate-picker", "reopen-picker"].map((id) => document.getElementById(id));
  let busy = false;

  const showError = (message) => { errorBox.textContent = `操作失败：${message}`; errorBox.classList.remove("hidden"); };
  const closePickers = () => pickers.forEach((picker) => picker && picker.classList.add("hidden"));
  const openPicker = (id, focusId) => {
    closePickers();
    document.getElementById(id).classList.remove("hidden");
    if (focusId) document.getElementById(focusId).focus();
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
      await postJson(`${api}/${action}`, body);
      afterDecision(action);
    } catch (error) {
      showError(error.message);
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
  const reopenPicker = document.getElementById("reopen-picker");
  reopenPicker.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await postJson(`${api}/reopen`, { note: document.getElementById("reopen-note").value });
      window.location.reload();
    } catch (error) { showError(error.message); }
  });
  const acknowledgeButton = document.getElementById("btn-ack-tamper");
  if (acknowledgeButton) {
    acknowledgeButton.addEventListener("click", async () => {
      try {
        await postJson(`${api}/acknowledge-tampering`, {});
        window.location.reload();
      } catch (error) { showError(error.message); }
    });
  }
  const assignForm = document.getElementById("assign-form");
  if (assignForm) {
    assignForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        await postJson(`${api}/assign`, { assignee: document.getElementById("assignee").value || null });
        window.location.reload();
      } catch (error) { showError(error.message); }
    });
  }

  const actions = {
    confirm: () => decide("confirm", { note: "" }),
    reject: () => openPicker("reject-picker", null),
    escalate: () => decide("escalate", { note: "" }),
    duplicate: () => openPicker("duplicate-picker", "duplicate-of"),
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
    } else if (event.key === "u" && status !== "new" && root.dataset.supervisor === "yes") {
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
