// 用户管理: each account's buttons (停用/启用, 改角色, 重置密码, 强制下线) call /api/users/{name}/…
// with the page's session and CSRF token (postJson, review.js), each after a confirmation in Chinese.
"use strict";

const MIN_PASSWORD_LENGTH = 10;

document.addEventListener("DOMContentLoaded", () => {
  const table = document.getElementById("users"), errorBox = document.getElementById("users-error");
  if (!table) return;
  const showError = (text) => { errorBox.textContent = text; errorBox.classList.remove("hidden"); };
  table.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const cell = button.closest("[data-name]"), action = button.dataset.action;
    let question = button.dataset.confirm, body = {};
    if (action === "role") {
      const choice = cell.querySelector(".role-choice");
      body = { role: choice.value };
      question = question.replace("{role}", choice.selectedOptions[0].textContent);
    } else if (action === "password") {
      const password = cell.querySelector(".reset-password").value;
      if (password.length < MIN_PASSWORD_LENGTH) {
        showError(`临时密码至少需要 ${MIN_PASSWORD_LENGTH} 个字符`);
        return;
      }
      body = { password, must_change: true };
    }
    if (!window.confirm(question)) return;
    button.disabled = true;
    try {
      await postJson(`/api/users/${encodeURIComponent(cell.dataset.name)}/${action}`, body);
      window.location.reload();
    } catch (error) {
      showError(`操作失败：${error.message}`);
      button.disabled = false;
    }
  });
});
