// Triage beyond one case at a time, for review.js: the list's bulk decisions (setUpBulk) and the case
// page's suggested duplicates (suggestDuplicates). Loaded before review.js's DOMContentLoaded handler runs.
"use strict";

// ---- bulk decisions on the list: tick cards (X ticks the highlighted one), then 批量确认 or 批量驳回 ------
// Each case is decided on its own (claims, evidence checks, an audit entry each): the answer says which were
// done, and why any were not, without holding up the others.
function setUpBulk(list) {
  const bar = document.getElementById("bulk-bar");
  if (!bar) return { toggle: () => {}, restore: () => {} };
  const picked = new Set();
  const all = document.getElementById("bulk-all");
  const buttons = ["bulk-confirm", "bulk-reject"].map((id) => document.getElementById(id));
  const result = document.getElementById("bulk-result");
  const boxes = () => Array.from(list.querySelectorAll("input.bulk-pick"));
  const cardOf = (caseId) => list.querySelector(`.card[data-case-id="${CSS.escape(caseId)}"]`);
  const refresh = () => {
    const shown = new Set(boxes().map((box) => box.value));
    [...picked].filter((caseId) => !shown.has(caseId)).forEach((caseId) => picked.delete(caseId));
    document.getElementById("bulk-count").textContent = picked.size;
    buttons.forEach((button) => { button.disabled = picked.size === 0; });
    list.querySelectorAll(".card").forEach((card) => card.classList.toggle("picked", picked.has(card.dataset.caseId)));
    all.checked = shown.size > 0 && picked.size === shown.size;
  };
  const set = (box, on) => {
    box.checked = on;
    if (on) picked.add(box.value); else picked.delete(box.value);
  };
  list.addEventListener("change", (event) => {
    if (!event.target.matches("input.bulk-pick")) return;
    set(event.target, event.target.checked);
    refresh();
  });
  all.addEventListener("change", () => {
    boxes().forEach((box) => set(box, all.checked));
    refresh();
  });
  const showResult = (text, kind) => {
    result.textContent = text;
    result.className = `banner ${kind}`;
  };
  // A decided card says so at once; the list's next poll greys it if it left the filter.
  const showDecided = (card, one) => {
    const badge = card.querySelector(".badge");
    badge.className = `badge s-${one.status}`;
    badge.textContent = one.status_label;
    const pick = card.querySelector(".pick");
    if (pick) pick.remove();
    card.classList.remove("refused");
  };
  const decide = async (action) => {
    const caseIds = [...picked];
    if (!caseIds.length) return;
    const versions = Object.fromEntries(caseIds.filter((caseId) => cardOf(caseId))
      .map((caseId) => [caseId, Number(cardOf(caseId).dataset.version)]));
    const body = { action, case_ids: caseIds, versions, note: document.getElementById("bulk-note").value };
    if (action === "reject") body.reason = document.getElementById("bulk-reason").value;
    buttons.forEach((button) => { button.disabled = true; });
    showResult("正在处理……", "warn");
    try {
      const answer = await postJson("/api/cases/bulk", body);
      answer.results.forEach((one) => {
        const card = cardOf(one.case_id);
        if (!card) return;
        if (one.done) {
          picked.delete(one.case_id);
          showDecided(card, one);
        } else {
          card.classList.add("refused");
          card.title = one.detail || "";
        }
      });
      showResult(answer.summary, answer.refused ? "warn" : "ok");
    } catch (error) {
      showResult(`操作失败：${error.message}`, "error");
    }
    refresh();
  };
  document.getElementById("bulk-confirm").addEventListener("click", () => decide("confirm"));
  document.getElementById("bulk-reject").addEventListener("click", () => decide("reject"));
  refresh();
  return {
    toggle: (card) => {
      const box = card.querySelector("input.bulk-pick");
      if (!box) return;
      set(box, !box.checked);
      refresh();
    },
    // A card redrawn by the poll keeps its tick while it can still be decided.
    restore: (card) => {
      const box = card.querySelector("input.bulk-pick");
      if (box && picked.has(box.value)) box.checked = true;
      refresh();
    },
  };
}

// ---- 重复: the cases this one may repeat, to choose from (1-9 or a click), or a case id typed ---------------
function suggestDuplicates(api, picker) {
  const typed = document.getElementById("duplicate-of");
  const choices = document.getElementById("duplicate-choices");
  const said = document.getElementById("duplicate-status");
  const choose = (radio) => {
    radio.checked = true;
    typed.value = radio.value;
  };
  picker.addEventListener("keydown", (event) => {
    if (event.target === typed) return;
    const radios = choices.querySelectorAll("input[type=radio]");
    const index = Number(event.key) - 1;
    if (index >= 0 && index < radios.length) {
      choose(radios[index]);
      radios[index].focus();
      event.preventDefault();
    } else if (event.key === "Enter") {
      event.preventDefault();
      picker.requestSubmit();
    }
  });
  let asked = false;
  return async () => {
    if (asked) return;
    asked = true;
    said.textContent = "正在查找疑似重复的案件……";
    try {
      const response = await fetch(`${api}/duplicates`, { credentials: "same-origin" });
      const answer = await response.json();
      if (!response.ok) throw new Error(answer.detail || `HTTP ${response.status}`);
      const found = answer.candidates;
      said.textContent = found.length
        ? `前后 ${answer.window_h} 小时内疑似重复的案件 ${found.length} 件（按数字键选择，Enter 提交）：`
        : `前后 ${answer.window_h} 小时内没有疑似重复的案件，请填写案件编号`;
      found.forEach((candidate, index) => choices.append(duplicateChoice(candidate, index, choose)));
      const first = choices.querySelector("input[type=radio]");
      if (first) first.focus();
    } catch (error) {
      said.textContent = `无法获取疑似重复的案件（${error.message}），请填写案件编号`;
    }
  };
}

function duplicateChoice(candidate, index, choose) {
  const element = (tag, className, text) => {
    const made = document.createElement(tag);
    if (className) made.className = className;
    if (text !== undefined) made.textContent = text;
    return made;
  };
  const shown = candidate.case;
  const item = element("li", "duplicate-choice");
  item.dataset.caseId = shown.case_id;
  const label = element("label");
  const radio = element("input");
  radio.type = "radio";
  radio.name = "duplicate-choice";
  radio.value = shown.case_id;
  radio.addEventListener("change", () => choose(radio));
  label.append(radio);
  if (shown.thumbnail_url) {
    const picture = element("img");
    picture.src = shown.thumbnail_url;
    picture.alt = `${shown.violation_label} 特写`;
    picture.loading = "lazy";
    label.append(picture);
  } else {
    label.append(element("span", "no-thumb", "无图片"));
  }
  const words = element("span", "choice-body");
  const head = element("span", "choice-line");
  head.append(element("kbd", "", String(index + 1)), " ", element("span", "mono", shown.case_id), " ",
              element("span", `badge s-${shown.status}`, shown.status_label));
  words.append(head);
  if (shown.current_plate) {
    const plate = element("span", "choice-line");
    plate.append(element("span", `plate plate-${shown.current_plate.colour}`, shown.current_plate.display), " ",
                 element("span", "muted", shown.current_plate.colour_label));
    words.append(plate);
  }
  words.append(element("span", "choice-line", `${candidate.confirmed_label}（${candidate.apart_label}）`),
               element("span", "choice-line muted", shown.camera_name),
               element("span", "choice-line reasons", candidate.reasons.join(" · ")));
  label.append(words);
  item.append(label);
  return item;
}
