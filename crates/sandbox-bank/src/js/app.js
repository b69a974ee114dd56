// The JavaScript sandbox bank (sandbox-js): a small single-page app. Nothing useful is in the
// HTML; every form is rendered here and the movements arrive as JSON from an XMLHttpRequest.
// Markup contract: crates/sandbox-bank/src/js.rs.
(function () {
  "use strict";
  var app = document.getElementById("app");

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    (children || []).forEach(function (c) {
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }

  function show(page, nodes) {
    document.body.setAttribute("data-page", page);
    while (app.firstChild) app.removeChild(app.firstChild);
    nodes.forEach(function (n) { app.appendChild(n); });
  }

  function errorP(code, text, extra) {
    var attrs = { "class": "error", "data-error": code };
    Object.keys(extra || {}).forEach(function (k) { attrs[k] = extra[k]; });
    return el("p", attrs, [text]);
  }

  // fetch() for the forms, XMLHttpRequest for the movements (as older bank portals do).
  function api(method, path, body) {
    var init = { method: method, credentials: "same-origin", headers: {} };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (res) {
      return res.text().then(function (text) {
        var json = {};
        try { json = text ? JSON.parse(text) : {}; } catch (e) { json = {}; }
        return { status: res.status, body: json };
      });
    });
  }

  // "Remember this device": the bank's token, kept in localStorage after an accepted code.
  var DEVICE_KEY = "sandbox_device_token";

  var MESSAGES = {
    bad_credentials: "Wrong username or password.",
    account_locked: "This account is locked. Please contact your branch.",
    unavailable: "Service unavailable. Please try again in a moment.",
    csrf: "The form expired. Reload the page.",
    bad_request: "The form could not be read."
  };

  function renderLogin(csrf, error) {
    var user = el("input", { type: "text", name: "username", autocomplete: "username" });
    var pass = el("input", { type: "password", name: "password", autocomplete: "current-password" });
    // A redesigned bank (`SandboxBank::set_js_redesign`) submits with an <input type=submit>.
    var redesigned = document.body.getAttribute("data-design") === "2";
    var submit = redesigned
      ? el("input", { type: "submit", "class": "redesigned-submit", value: "Log in" })
      : el("button", { type: "submit" }, ["Log in"]);
    var form = el("form", { id: "login-form" }, [
      el("label", {}, ["Username ", user]),
      el("label", {}, ["Password ", pass]),
      submit
    ]);
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var old = app.querySelector(".error");
      if (old) old.remove();
      // A remembered device: the token kept in localStorage when a code was last accepted.
      var device = null;
      try { device = window.localStorage.getItem(DEVICE_KEY); } catch (e) { device = null; }
      api("POST", "/js/api/login", { username: user.value, password: pass.value, csrf: csrf, device: device })
        .then(function (r) {
          if (r.status === 200 && r.body.next === "otp") {
            history.pushState({}, "", "/js/otp");
            loadOtp(null);
          } else if (r.status === 200) {
            location.assign("/js/movements");
          } else {
            var code = r.body.error || "unavailable";
            renderLogin(csrf, code);
          }
        }, function () { renderLogin(csrf, "unavailable"); });
    });
    var nodes = [el("h2", {}, ["Log in"])];
    if (error) nodes.push(errorP(error, MESSAGES[error] || "Something went wrong."));
    nodes.push(form);
    show("login", nodes);
  }

  function loadLogin() {
    api("GET", "/js/api/session").then(function (r) {
      if (r.status !== 200) { show("error", [errorP("unavailable", MESSAGES.unavailable)]); return; }
      renderLogin(r.body.csrf, null);
    });
  }

  function renderOtp(challenge, wrong) {
    var input = el("input", {
      type: "text", name: "code", maxlength: String(challenge.length),
      autocomplete: "one-time-code",
      inputmode: challenge.type === "numeric" ? "numeric" : "text"
    });
    var form = el("form", {
      id: "otp-form",
      "data-length": String(challenge.length),
      "data-type": challenge.type,
      "data-purpose": challenge.purpose,
      "data-attempts-left": String(challenge.attemptsLeft)
    }, [el("label", {}, ["Code ", input]), el("button", { type: "submit" }, ["Confirm"])]);
    // When the code was typed (reported with it, for the browser benchmark).
    var typedAt = null;
    input.addEventListener("input", function () { typedAt = Date.now(); });
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var old = app.querySelector(".error");
      if (old) old.remove();
      api("POST", "/js/api/otp", { code: input.value, csrf: challenge.csrf, typedAt: typedAt }).then(function (r) {
        if (r.status === 200) {
          if (r.body.device) {
            try { window.localStorage.setItem(DEVICE_KEY, r.body.device); } catch (e) { /* private mode */ }
          }
          location.assign("/js/movements");
        } else if (r.body.error === "wrong_code") {
          challenge.attemptsLeft = r.body.attemptsLeft;
          renderOtp(challenge, r.body.attemptsLeft);
        } else if (r.body.error === "otp_locked") {
          show("error", [el("h2", {}, ["Login locked"]),
            errorP("otp_locked", "Too many wrong codes: this login is locked. Log in again to start over.")]);
        } else {
          location.replace("/js/login");
        }
      });
    });
    var nodes = [el("h2", {}, ["Confirm it is you"]),
      el("p", {}, ["Enter the " + challenge.length + "-character code we sent you."])];
    if (wrong !== null) {
      nodes.push(errorP("wrong_code", "Wrong code. " + wrong + " attempt" + (wrong === 1 ? "" : "s") + " left.",
        { "data-attempts-left": String(wrong) }));
    }
    nodes.push(form);
    show("otp", nodes);
  }

  function loadOtp(wrong) {
    api("GET", "/js/api/otp").then(function (r) {
      if (r.status !== 200) { location.replace("/js/login"); return; }
      renderOtp(r.body, wrong);
    });
  }

  function cell(cls, text) { return el("td", { "class": cls }, [text]); }

  function renderMovements(body) {
    var tbody = el("tbody");
    body.movements.forEach(function (m) {
      tbody.appendChild(el("tr", { "data-id": m.id }, [
        cell("date", m.date), cell("amount", m.amount), cell("currency", m.currency),
        cell("name", m.name || ""), cell("description", m.description)
      ]));
    });
    var older = [];
    if (body.nextPage) {
      var next = el("button", { id: "next-page", type: "button", "data-page": String(body.nextPage) }, ["Older movements"]);
      next.addEventListener("click", function () { loadMovements(body.nextPage); });
      older.push(next);
    }
    var logout = el("button", { id: "logout", type: "button" }, ["Log out"]);
    logout.addEventListener("click", function () {
      api("POST", "/js/api/logout").then(function () { location.assign("/js/login"); });
    });
    show("movements", [
      el("h2", {}, ["Movements"]),
      el("p", { id: "account", "data-username": body.account }, ["Logged in as " + body.account]),
      el("table", { id: "movements" }, [
        el("thead", {}, [el("tr", {}, ["Date", "Amount", "Currency", "Name", "Description"].map(function (h) {
          return el("th", {}, [h]);
        }))]),
        tbody
      ])
    ].concat(older, [logout]));
    armIdle();
  }

  // The bearer token /js/api/session hands the app once logged in; the movements API wants it.
  var apiToken = null;
  // The idle timeout /js/api/session announces for some users: {warnMs, logoutMs}.
  var idle = null;
  var idleTimer = null;

  // "Your session is about to expire": shown after idle.warnMs on the movements page; answered
  // with "stay", the bank hears of it and the wait starts over; unanswered, the app logs out.
  function armIdle() {
    if (!idle) return;
    clearTimeout(idleTimer);
    idleTimer = setTimeout(function () {
      var stay = el("button", { id: "stay", type: "button" }, ["Stay signed in"]);
      var dialog = el("div", {
        id: "session-timeout", role: "dialog", "aria-label": "Session timeout",
        style: "position:fixed;top:10px;left:10px;background:#fff;border:1px solid #000;padding:8px"
      }, [el("p", {}, ["Your session is about to expire."]), stay]);
      var logoutTimer = setTimeout(function () {
        api("POST", "/js/api/logout?idle=1").then(function () { location.assign("/js/login"); });
      }, idle.logoutMs);
      stay.addEventListener("click", function () {
        clearTimeout(logoutTimer);
        dialog.remove();
        api("GET", "/js/api/session?stay=1").then(armIdle, armIdle);
      });
      document.body.appendChild(dialog);
    }, idle.warnMs);
  }

  function loadMovements(page) {
    var xhr = new XMLHttpRequest();
    xhr.open("GET", page ? "/js/api/movements?page=" + page : "/js/api/movements");
    if (apiToken) xhr.setRequestHeader("Authorization", "Bearer " + apiToken);
    xhr.onload = function () {
      if (xhr.status === 401) { location.replace("/js/login"); return; }
      if (xhr.status !== 200) {
        show("error", [errorP("bad_gateway", "Bad gateway. Please try again.")]);
        return;
      }
      renderMovements(JSON.parse(xhr.responseText));
    };
    xhr.onerror = function () { show("error", [errorP("unavailable", MESSAGES.unavailable)]); };
    xhr.send();
  }

  // "Are you still there?": answered before the movements load (set per user by the tests).
  function startMovements() {
    api("GET", "/js/api/session").then(function (r) {
      apiToken = r.body.token || null;
      idle = r.body.idle || null;
      if (!r.body.interrupt) { loadMovements(null); return; }
      var stay = el("button", { id: "stay", type: "button" }, ["Stay signed in"]);
      stay.addEventListener("click", function () { loadMovements(null); });
      show("interrupted", [
        el("div", { id: "session-timeout", role: "dialog", "aria-label": "Session timeout" }, [
          el("p", {}, ["Are you still there?"]), stay
        ])
      ]);
    }, function () { loadMovements(null); });
  }

  var path = location.pathname;
  if (path === "/js/movements") startMovements();
  else if (path === "/js/otp") loadOtp(null);
  else loadLogin();
})();
