// The one page-side helper of the interpreter (crates/browser/src/interp.rs). It is evaluated as
// `(HELPER)(ARGS)` with ARGS a JSON object built from the bank definition — selectors and
// patterns, never a credential or a code (those are typed with Input.insertText).
(function (a) {
  "use strict";
  var ROLES = {
    button: "button,input[type=submit],input[type=button],[role=button]",
    link: "a[href],[role=link]",
    textbox: "input:not([type]),input[type=text],input[type=email],input[type=password],input[type=tel],textarea,[role=textbox]",
    checkbox: "input[type=checkbox],[role=checkbox]",
    tab: "[role=tab]",
    menuitem: "[role=menuitem]"
  };
  function all(root, css) {
    try { return Array.prototype.slice.call(root.querySelectorAll(css)); } catch (e) { return []; }
  }
  function deep(root, css, out) {
    all(root, css).forEach(function (e) { out.push(e); });
    all(root, "*").forEach(function (e) { if (e.shadowRoot) deep(e.shadowRoot, css, out); });
    return out;
  }
  function norm(s) { return (s || "").replace(/\s+/g, " ").trim(); }
  function find(loc) {
    if (loc.css !== undefined) return all(document, loc.css);
    if (loc.pierce !== undefined) return deep(document, loc.pierce, []);
    if (loc.text !== undefined) {
      var css = loc.text.role ? (ROLES[loc.text.role] || "[role=" + loc.text.role + "]") : "body *";
      var want = norm(loc.text.text);
      return all(document, css).filter(function (e) {
        if (norm(e.innerText || e.value) !== want) return false;
        // The innermost element with that text (not every ancestor).
        return loc.text.role || !Array.prototype.some.call(e.children, function (c) { return norm(c.innerText) === want; });
      });
    }
    if (loc.any !== undefined) {
      for (var i = 0; i < loc.any.length; i++) { var r = find(loc.any[i]); if (r.length) return r; }
      return [];
    }
    return [];
  }
  function visible(e) {
    if (!e || e.__rbkStale) return false;
    if (!e.getClientRects().length) return false;
    var s = getComputedStyle(e);
    return s.visibility !== "hidden" && s.display !== "none";
  }
  function first(loc) { var l = find(loc).filter(visible); return l.length ? l[0] : null; }
  function snap() {
    return { href: location.href, vis: (a.prims || []).map(function (p) { return find(p).some(visible); }) };
  }
  switch (a.op) {
    case "snap":
      return snap();
    case "wait":
      // Resolves at the first DOM change (or after `ms`), with a fresh snapshot: the interpreter
      // is woken by the page instead of polling it.
      return new Promise(function (resolve) {
        var done = false;
        var finish = function () { if (!done) { done = true; mo.disconnect(); resolve(snap()); } };
        var mo = new MutationObserver(finish);
        mo.observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
        setTimeout(finish, a.ms);
      });
    case "focus": {
      (a.mark || []).forEach(function (m) { find(m).forEach(function (x) { x.__rbkStale = true; }); });
      var e = a.nth !== undefined ? find(a.loc).filter(visible)[a.nth] : first(a.loc);
      if (!e) return false;
      // Already focused (the OTP field, focused while the login waited for its code): no
      // scrolling, no focus change, no layout between the code and the page.
      if (document.activeElement !== e) {
        e.scrollIntoView({ block: "center" });
        e.focus();
      }
      if ("value" in e && e.value !== "") {
        e.value = "";
        e.dispatchEvent(new Event("input", { bubbles: true }));
      }
      return document.activeElement === e;
    }
    case "point": {
      var t = first(a.loc);
      if (!t) return null;
      t.scrollIntoView({ block: "center" });
      var r = t.getBoundingClientRect();
      return { x: r.left + r.width / 2, y: r.top + r.height / 2 };
    }
    case "attr": {
      var x = first(a.loc) || find(a.loc)[0];
      return x ? x.getAttribute(a.attr) : null;
    }
    case "count":
      return find(a.loc).filter(visible).length;
    case "exists":
      return find(a.loc).length > 0;
    case "mark":
      find(a.loc).forEach(function (e) { e.__rbkStale = true; });
      return true;
    case "live": {
      // A control that can be used now: visible and not disabled (`next` of a paged list).
      var n = first(a.loc);
      return !!n && !n.disabled && n.getAttribute("aria-disabled") !== "true";
    }
    case "rows":
      // Rows marked as read (a previous page still in the DOM) are not read again.
      return find(a.loc).filter(function (row) { return !row.__rbkStale; }).map(function (row) {
        return a.fields.map(function (f) {
          if (f.attr !== undefined) return row.getAttribute(f.attr);
          var el = f.text ? row.querySelector(f.text) : row;
          return el ? el.textContent : null;
        });
      });
    case "dom": {
      // A snapshot for evidence: every input, textarea and select emptied.
      var root = document.documentElement.cloneNode(true);
      all(root, "input").forEach(function (i) { i.removeAttribute("value"); i.setAttribute("value", ""); });
      all(root, "textarea").forEach(function (t) { t.textContent = ""; });
      all(root, "option").forEach(function (o) { o.removeAttribute("selected"); });
      all(root, "script").forEach(function (s) { s.textContent = ""; });
      var html = root.outerHTML;
      return html.length > a.max ? html.slice(0, a.max) : html;
    }
    case "blank": {
      // Live inputs emptied before a failure screenshot (the page is failing anyway).
      all(document, "input,textarea").forEach(function (i) { if (i.type !== "hidden") i.value = ""; });
      return true;
    }
  }
  return null;
})
