/* Upgrade Chat web widget: a dependency-free script the host product includes with the signed-in
 * user's identity:
 *   <script src="https://<upgrade chat>/embed.js" data-user-id="u-dana" data-account="acme-clinic"
 *           data-user-hash="<hex HMAC-SHA256(WEB_CHAT_SECRET, user id)>"></script>
 * It lives in a shadow root (the host's CSS cannot reach it), polls /webchat/v1/thread with a
 * cursor (3 s, backing off to 30 s while nothing happens; optional data-poll-min / data-poll-max
 * in milliseconds) and sends the buyer's words and buttons through POST /webchat/v1/messages.
 * The case card's words (summary, sentences, crossings, button labels) come from the server, in
 * the account's vertical's words; the card collapses to its summary line, remembered per thread.
 * The newest message always shows from its first line, whatever room the card leaves the log.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) { return; }
  var cfg = {
    user: script.getAttribute("data-user-id") || "",
    account: script.getAttribute("data-account") || "",
    hash: script.getAttribute("data-user-hash") || "",
    base: new URL(script.src, location.href).origin,
    pollMin: millis("data-poll-min", 3000),
    pollMax: millis("data-poll-max", 30000)
  };
  if (cfg.pollMax < cfg.pollMin) { cfg.pollMax = cfg.pollMin; }

  // A poll interval from the tag, never below 100 ms (a 0 or a typo must not poll nonstop).
  function millis(attr, fallback) {
    var n = parseInt(script.getAttribute(attr) || "", 10);
    return isFinite(n) && n >= 100 ? n : fallback;
  }
  var storeKey = "upgrade-chat:" + cfg.account + ":" + cfg.user;

  var CSS = [
    ":host{all:initial}",
    "*{box-sizing:border-box;font-family:system-ui,-apple-system,'Segoe UI',sans-serif;letter-spacing:normal}",
    ".launcher{position:fixed;right:20px;bottom:20px;width:56px;height:56px;border-radius:50%;border:0;",
    " background:#4f46e5;color:#fff;font-size:24px;cursor:pointer;box-shadow:0 4px 14px #0004;z-index:2147483000;",
    " display:flex;align-items:center;justify-content:center}",
    ".launcher .dot{position:absolute;top:6px;right:6px;width:12px;height:12px;border-radius:50%;background:#ef4444;display:none}",
    ".launcher.unread .dot{display:block}",
    ".panel{position:fixed;right:20px;bottom:88px;width:380px;max-width:calc(100vw - 40px);height:560px;",
    " max-height:calc(100vh - 110px);background:#fff;border-radius:14px;box-shadow:0 10px 30px #0004;",
    " display:none;flex-direction:column;overflow:hidden;z-index:2147483000;color:#111827;font-size:14px;line-height:1.4}",
    ".panel.open{display:flex}",
    ".head{background:#4f46e5;color:#fff;padding:12px 14px;display:flex;justify-content:space-between;align-items:center}",
    ".head b{font-size:15px}.close{background:none;border:0;color:#fff;font-size:20px;cursor:pointer;padding:0 4px}",
    ".head,.actions,form,.status{flex:none}",
    // The log takes what the card leaves, but never less than room for the newest message's first
    // lines: on a short screen the card shrinks (and scrolls) instead.
    ".log{flex:1 1 0;min-height:96px;overflow-y:auto;padding:12px;background:#f9fafb;display:flex;flex-direction:column;gap:8px}",
    ".msg{max-width:85%;padding:8px 11px;border-radius:12px;white-space:pre-wrap;word-wrap:break-word}",
    ".msg.out{align-self:flex-start;background:#fff;border:1px solid #e5e7eb}",
    ".msg.in{align-self:flex-end;background:#4f46e5;color:#fff}",
    ".msg .via{display:block;font-size:11px;opacity:.65;margin-top:3px}",
    ".card-slot{flex:0 1 auto;min-height:0;overflow-y:auto;padding:8px 12px 0;border-top:1px solid #e5e7eb}",
    ".card-slot:empty{display:none}",
    ".card{border:1px solid #c7d2fe;background:#eef2ff;border-radius:10px;padding:5px 10px 7px;font-size:12px;line-height:1.35}",
    ".card .top{display:flex;align-items:center;gap:8px;min-height:24px}",
    ".card h4{flex:1;min-width:0;margin:0;font-size:13px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}",
    ".card .toggle{flex:none;border:0;background:none;color:#4338ca;font-size:12px;font-weight:600;cursor:pointer;padding:2px 0 2px 6px}",
    ".card .chev{display:inline-block;margin-left:3px;transition:transform .15s}",
    ".card .toggle[aria-expanded=true] .chev{transform:rotate(180deg)}",
    ".card .body p{margin:2px 0 0}",
    ".card .why{color:#4338ca}",
    ".card.collapsed .body{display:none}",
    ".card.collapsed h4{font-size:12px;font-weight:600}",
    ".actions{display:flex;gap:8px;padding:8px 12px}",
    ".actions:empty{display:none}",
    ".actions button{flex:1;border:0;border-radius:8px;padding:9px;font-size:14px;font-weight:600;cursor:pointer;background:#4f46e5;color:#fff}",
    ".actions button.confirm{background:#059669}",
    ".actions button.call{flex:0 0 auto;background:#fff;color:#4f46e5;border:1px solid #4f46e5}",
    ".actions button[disabled]{opacity:.5;cursor:default}",
    "form{display:flex;gap:6px;padding:10px;border-top:1px solid #e5e7eb;background:#fff}",
    "input{flex:1;border:1px solid #d1d5db;border-radius:8px;padding:8px 10px;font-size:14px}",
    "form button{border:0;border-radius:8px;background:#111827;color:#fff;padding:0 12px;font-size:14px;cursor:pointer}",
    ".status{font-size:12px;color:#b91c1c;padding:0 12px 6px;display:none}.status.on{display:block}"
  ].join("");

  var host = document.createElement("div");
  host.id = "upgrade-chat-widget";
  document.body.appendChild(host);
  var root = host.attachShadow({ mode: "open" });
  root.innerHTML =
    "<style>" + CSS + "</style>" +
    "<button class='launcher' part='launcher' aria-label='Open chat'><svg viewBox='0 0 24 24' width='26' height='26' aria-hidden='true'><path fill='currentColor' d='M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H10l-5 4v-4H4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z'/></svg><span class='dot'></span></button>" +
    "<section class='panel' role='dialog' aria-label='Upgrade Chat'>" +
    "<div class='head'><b>Chat with us</b><button class='close' aria-label='Close chat'>\u00D7</button></div>" +
    "<div class='log' role='log' aria-live='polite'></div>" +
    "<div class='card-slot'></div>" +
    "<div class='actions'></div>" +
    "<div class='status' role='status'></div>" +
    "<form><input name='text' autocomplete='off' placeholder='Type a message\u2026' aria-label='Message'>" +
    "<button type='submit'>Send</button></form></section>";

  var $ = function (sel) { return root.querySelector(sel); };
  var launcher = $(".launcher"), panel = $(".panel"), log = $(".log"), cardSlot = $(".card-slot");
  var actions = $(".actions"), form = $("form"), input = $("input"), statusLine = $(".status");

  var cursor = 0, delay = cfg.pollMin, timer = null, busy = false, state = null, lastCase = null;
  var forbidden = false, sending = false, seen = {}, threadId = null, cardKey = null;
  var actionsKey = null;
  var follow = true; // keep the newest message in view until the buyer scrolls away from it

  function dismissed() {
    try { return localStorage.getItem(storeKey + ":dismissed") || ""; } catch (e) { return ""; }
  }
  function setDismissed(id) {
    try { localStorage.setItem(storeKey + ":dismissed", String(id)); } catch (e) { /* private mode */ }
  }
  // The card's collapsed state, per thread: the id of the thread whose card the buyer collapsed.
  function cardCollapsed(thread) {
    try { return thread != null && localStorage.getItem(storeKey + ":collapsed") === String(thread); }
    catch (e) { return false; }
  }
  function setCardCollapsed(thread, collapsed) {
    try {
      if (collapsed) { localStorage.setItem(storeKey + ":collapsed", String(thread)); }
      else { localStorage.removeItem(storeKey + ":collapsed"); }
    } catch (e) { /* private mode */ }
  }
  var currentOpening = null;

  // Scroll the newest message into view: to the bottom, unless the message is taller than the
  // log, then its first line at the top (never under the header, whatever the card's height).
  function showNewest() {
    if (!panel.classList.contains("open")) { return; }
    log.scrollTop = log.scrollHeight;
    var last = log.lastElementChild;
    if (last) {
      var over = log.getBoundingClientRect().top + 10 - last.getBoundingClientRect().top;
      if (over > 0) { log.scrollTop = Math.max(0, log.scrollTop - over); }
    }
    follow = true;
  }
  // Where showNewest leaves the log: at the bottom, or a tall newest message from its first line.
  function atNewest() {
    var last = log.lastElementChild;
    if (!last || log.scrollHeight - log.scrollTop - log.clientHeight < 24) { return true; }
    var top = last.getBoundingClientRect().top - log.getBoundingClientRect().top;
    return top >= -1 && top <= 16;
  }
  log.addEventListener("scroll", function () {
    if (panel.classList.contains("open")) { follow = atNewest(); }
  });
  // The card opening, collapsing or changing, or the window resizing, changes the log's height.
  if (window.ResizeObserver) {
    new ResizeObserver(function () { if (follow) { showNewest(); } }).observe(log);
  }
  function openPanel() {
    panel.classList.add("open");
    launcher.classList.remove("unread");
    showNewest(); // messages added while the panel was hidden did not scroll it
    input.focus({ preventScroll: true });
  }
  function closePanel() {
    panel.classList.remove("open");
    if (currentOpening) { setDismissed(currentOpening); }
  }
  launcher.addEventListener("click", function () {
    if (panel.classList.contains("open")) { closePanel(); } else { openPanel(); }
  });
  $(".close").addEventListener("click", closePanel);

  function headers(json) {
    var h = { "X-User-Id": cfg.user, "X-Account": cfg.account, "X-User-Hash": cfg.hash };
    if (json) { h["Content-Type"] = "application/json"; }
    return h;
  }

  function showStatus(text) {
    statusLine.textContent = text || "";
    statusLine.classList.toggle("on", !!text);
  }

  var CHANNEL_NAMES = { sms: "SMS", whatsapp: "WhatsApp", voice: "phone call", web: "" };

  function addMessage(m) {
    if (seen[m.id]) { return; }
    seen[m.id] = true;
    var div = document.createElement("div");
    div.className = "msg " + (m.direction === "in" ? "in" : "out");
    div.setAttribute("data-id", m.id);
    div.setAttribute("data-kind", m.kind);
    div.setAttribute("data-channel", m.channel);
    div.textContent = m.body;
    var via = CHANNEL_NAMES[m.channel];
    if (via) {
      var small = document.createElement("span");
      small.className = "via";
      small.textContent = "via " + via;
      div.appendChild(small);
    }
    log.appendChild(div);
  }

  function title(plan) { return plan ? plan.charAt(0).toUpperCase() + plan.slice(1) : ""; }
  function para(parent, text, cls) {
    var p = document.createElement("p");
    if (cls) { p.className = cls; }
    p.textContent = text;
    parent.appendChild(p);
  }

  // The case card: its title (or, collapsed, its summary line) and a Details toggle; expanded,
  // why now (the crossings) and the server's sentences. Drawn again only when something changed,
  // so a poll does not take the focus from the toggle.
  function renderCard(c) {
    var collapsed = !!c && cardCollapsed(threadId);
    var key = c ? JSON.stringify([threadId, collapsed, c]) : null;
    if (key === cardKey) { return; }
    cardKey = key;
    cardSlot.textContent = "";
    if (!c) { return; }
    var headline = c.title || (title(c.current_plan) + " \u2192 " + title(c.target_plan));
    var summary = c.summary || headline;
    var card = document.createElement("div");
    card.className = "card" + (collapsed ? " collapsed" : "");
    card.setAttribute("data-direction", c.direction);
    var top = document.createElement("div");
    top.className = "top";
    var h = document.createElement("h4");
    h.textContent = collapsed ? summary : headline;
    h.title = collapsed ? headline + ": " + summary : headline;
    top.appendChild(h);
    var toggle = document.createElement("button");
    toggle.type = "button";
    toggle.className = "toggle";
    toggle.setAttribute("aria-expanded", collapsed ? "false" : "true");
    toggle.setAttribute("aria-controls", "upgrade-chat-card-body");
    toggle.textContent = "Details";
    var chev = document.createElement("span");
    chev.className = "chev";
    chev.setAttribute("aria-hidden", "true");
    chev.textContent = "\u25BE";
    toggle.appendChild(chev);
    toggle.addEventListener("click", function () {
      setCardCollapsed(threadId, !collapsed);
      renderCard(lastCase);
      var again = cardSlot.querySelector(".toggle");
      if (again) { again.focus(); }
    });
    top.appendChild(toggle);
    card.appendChild(top);
    var body = document.createElement("div");
    body.className = "body";
    body.id = "upgrade-chat-card-body";
    if (c.crossed && c.crossed.length) { para(body, "Why now: " + c.crossed.join("; "), "why"); }
    (c.lines || []).forEach(function (line) { para(body, line); });
    card.appendChild(body);
    cardSlot.appendChild(card);
  }

  function button(label, cls, text) {
    var b = document.createElement("button");
    b.type = "button";
    b.className = cls;
    b.textContent = label;
    b.addEventListener("click", function () {
      if (b.disabled) { return; }
      b.disabled = true; // one click, one message; the thread state decides what comes next
      send(text);
    });
    actions.appendChild(b);
  }

  // One button, saying what it does ("Move to Starter", "Confirm upgrade to Growth"); it sends
  // "yes" or "confirm": the thread's state decides what that does.
  // Redrawn only when what it shows changes: a button replaced under the pointer by a poll
  // would swallow the buyer's click (and a test's).
  function renderActions() {
    var labels = (lastCase && lastCase.buttons) || {};
    var key = JSON.stringify([!!lastCase, sending, state, labels]);
    if (key === actionsKey) { return; }
    actionsKey = key;
    actions.textContent = "";
    if (!lastCase || sending) { return; }
    if (state === "offered") { button(labels.offered || "Yes", "upgrade", "yes"); }
    else if (state === "awaiting_confirmation") {
      button(labels.awaiting_confirmation || "Confirm", "confirm", "confirm");
    }
    // Rather talk it over: books a call back at the next allowed minute (the reply says when).
    if (labels.call && (state === "offered" || state === "awaiting_confirmation")) {
      button(labels.call, "call", "Please call me");
    }
  }

  function schedule(ms) {
    if (timer) { clearTimeout(timer); }
    if (forbidden) { return; }
    timer = setTimeout(poll, ms);
  }

  function poll() {
    if (busy || forbidden) { return; }
    busy = true;
    fetch(cfg.base + "/webchat/v1/thread?after=" + encodeURIComponent(cursor), { headers: headers(false) })
      .then(function (r) {
        if (r.status === 403) { forbidden = true; host.setAttribute("data-state", "forbidden"); throw new Error("forbidden"); }
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.json();
      })
      .then(function (data) {
        busy = false;
        showStatus("");
        var fresh = data.messages.length > 0 || data.state !== state;
        data.messages.forEach(addMessage);
        cursor = data.cursor;
        state = data.state;
        threadId = data.thread_id;
        lastCase = data.case;
        host.setAttribute("data-state", state || "none");
        renderCard(lastCase);
        renderActions();
        // The card and buttons take room from the log: keep the newest message in view, unless
        // the buyer scrolled away from it to read and nothing new arrived.
        if (follow || data.messages.length) { showNewest(); }
        if (data.open && data.opening_id && String(data.opening_id) !== dismissed()) {
          currentOpening = data.opening_id;
          openPanel();
        } else if (data.messages.length && !panel.classList.contains("open")) {
          launcher.classList.add("unread");
        }
        delay = fresh ? cfg.pollMin : Math.min(cfg.pollMax, Math.round(delay * 1.5));
        schedule(data.more ? 0 : delay);
      })
      .catch(function (e) {
        busy = false;
        if (forbidden) { showStatus(""); return; }
        delay = Math.min(cfg.pollMax, delay * 2);
        schedule(delay);
      });
  }

  function newId() {
    if (window.crypto && crypto.randomUUID) { return "web-" + crypto.randomUUID(); }
    return "web-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 10);
  }

  function send(text, id, attempt) {
    id = id || newId();
    attempt = attempt || 1;
    sending = true;
    renderActions();
    return fetch(cfg.base + "/webchat/v1/messages", {
      method: "POST", headers: headers(true), body: JSON.stringify({ text: text, id: id })
    }).then(function (r) {
      if (r.status === 403) { forbidden = true; throw new Error("forbidden"); }
      if (!r.ok && r.status >= 500 && attempt < 3) {
        // The same id: a retry that reached the server already is answered once.
        return new Promise(function (ok) { setTimeout(ok, 800 * attempt); })
          .then(function () { return send(text, id, attempt + 1); });
      }
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.json();
    }).then(function () {
      sending = false;
      delay = cfg.pollMin;
      schedule(0);
    }).catch(function () {
      sending = false;
      renderActions();
      showStatus(forbidden ? "This chat is unavailable." : "Could not send; please try again.");
    });
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var text = input.value.trim();
    if (!text || forbidden) { return; }
    input.value = "";
    send(text);
  });

  // Coming back to a tab polls at once (the backoff may have reached its slowest pace).
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) { delay = cfg.pollMin; schedule(0); }
  });

  poll();
})();
