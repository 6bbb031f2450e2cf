/// The web UI's files, compiled into the binary (no CDN, works offline): one page, one
/// script (hash routing), one style sheet. Edited here directly; docs/ui.md describes them.
enum UIAssets {
    static let indexHTML = """
    <!doctype html>
    <html lang="en"><head><meta charset="utf-8">
    <meta name="viewport" content="width=device-width,initial-scale=1">
    <title>Skywire visor</title><link rel="stylesheet" href="/app.css"></head>
    <body><header><b>Skywire</b><nav id="nav">
    <a href="#/overview">Overview</a><a href="#/vpn">VPN</a><a href="#/vpn-server">VPN server</a><a href="#/socks">SOCKS5</a><a href="#/chat">Chat</a>
    <a href="#" id="logout">Log out</a></nav></header>
    <main id="main"><p>Loading…</p></main><div id="toast" role="status"></div>
    <script src="/app.js"></script></body></html>
    """

    static let appCSS = """
    *{box-sizing:border-box}body{margin:0;font:15px/1.4 system-ui,sans-serif;background:#f4f5f7;color:#1c1e21}
    header{background:#16325c;color:#fff;padding:.6em 1em;display:flex;flex-wrap:wrap;gap:.6em;align-items:center}
    nav{display:flex;flex-wrap:wrap;gap:.2em}nav a{color:#fff;text-decoration:none;padding:.3em .6em;border-radius:4px}
    nav a.on{background:#2f5aa0}main{padding:1em;max-width:60em;margin:auto}
    section{background:#fff;border-radius:6px;padding:1em;margin-bottom:1em;box-shadow:0 1px 2px #0002}
    h2{margin:0 0 .5em;font-size:1.1em}table{border-collapse:collapse;width:100%}
    td,th{text-align:left;padding:.3em .4em;border-bottom:1px solid #e4e6ea;font-size:.92em}
    .scroll{overflow-x:auto}code{word-break:break-all}button{font:inherit;padding:.35em .8em;border-radius:4px;border:1px solid #2f5aa0;background:#2f5aa0;color:#fff;cursor:pointer}
    button.sec{background:#fff;color:#2f5aa0}button:disabled{opacity:.5}input,select,textarea{font:inherit;padding:.3em;max-width:100%}
    textarea{width:100%;min-height:5em}.ok{color:#137333;font-weight:bold}.bad{color:#b3261e;font-weight:bold}
    .row{display:flex;flex-wrap:wrap;gap:.5em;align-items:center;margin:.4em 0}
    #toast{position:fixed;bottom:1em;left:1em;right:1em;max-width:40em;margin:auto;background:#b3261e;color:#fff;padding:.6em;border-radius:4px;display:none}
    .msgs{max-height:24em;overflow-y:auto}.msg{margin:.3em 0;padding:.35em .6em;border-radius:6px;background:#eef1f5;max-width:85%;white-space:pre-wrap;word-break:break-word}
    .msg.out{margin-left:auto;background:#dbe7fb}.msg small{display:block;color:#5f6368;font-size:.78em}.unread{color:#b3261e;font-weight:bold}
    svg.chart{width:100%;height:160px;background:#fafbfc;border:1px solid #e4e6ea}
    svg.chart polyline{fill:none;stroke-width:2}.rx{stroke:#2f5aa0}.tx{stroke:#e37400}.rxl{color:#2f5aa0}.txl{color:#e37400}
    """

    static let appJS = #"""
    "use strict";
    // The visor's web UI (docs/ui.md). Everything comes from /api (the control socket's operations);
    // text from the visor or from discovery is only ever set with textContent, never parsed as HTML.
    const S = {csrf: null, timer: null, rates: {}, chart: [], last: null};
    const CHART_SECONDS = 300, POLL_MS = 2000;
    const $ = (id) => document.getElementById(id);
    function h(tag, attrs, ...kids) {
      const e = document.createElement(tag);
      for (const [k, v] of Object.entries(attrs || {})) {
        if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
        else if (v !== false && v != null) e.setAttribute(k, v === true ? "" : v);
      }
      for (const k of kids.flat()) if (k != null) e.append(k instanceof Node ? k : String(k));
      return e;
    }
    function toast(msg) { const t = $("toast"); t.textContent = msg; t.style.display = msg ? "block" : "none"; if (msg) setTimeout(() => toast(""), 6000); }
    async function api(method, path, body) {
      const opt = {method, headers: {}, credentials: "same-origin"};
      if (method !== "GET") { opt.headers["X-CSRF-Token"] = S.csrf || ""; }
      if (body !== undefined) { opt.headers["Content-Type"] = "application/json"; opt.body = JSON.stringify(body); }
      const r = await fetch(path, opt);
      let j = {};
      try { j = await r.json(); } catch (e) { }
      if (r.status === 401 && path !== "/api/login") { S.csrf = null; location.hash = "#/login"; throw new Error("log in first"); }
      if (!r.ok) throw new Error((j.error && j.error.message) || ("HTTP " + r.status));
      return j;
    }
    const get = (p) => api("GET", p).then((j) => j.result);
    const post = (p, b) => api("POST", p, b || {}).then((j) => j.result);
    function bytes(n) { n = n || 0; const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0; while (n >= 1024 && i < 4) { n /= 1024; i++; } return (i ? n.toFixed(1) : n) + " " + u[i]; }
    function rate(key, total, now) {
      const p = S.rates[key]; S.rates[key] = {t: now, v: total};
      return p && now > p.t ? Math.max(0, (total - p.v) / ((now - p.t) / 1000)) : 0;
    }
    function table(head, rows) {
      return h("div", {class: "scroll"}, h("table", {}, h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))),
        h("tbody", {}, rows.length ? rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c)))) : h("tr", {}, h("td", {colspan: head.length}, "none")))));
    }
    function act(label, fn, cls) {
      return h("button", {class: cls || "", onclick: async (ev) => { ev.target.disabled = true; try { await fn(); await render(); } catch (e) { toast(e.message); } finally { ev.target.disabled = false; } }}, label);
    }
    function section(title, ...kids) { return h("section", {}, h("h2", {}, title), ...kids); }
    function state(s) { return h("span", {class: s === "connected" || s === "running" || s === "up" ? "ok" : "bad", "data-state": s || "-"}, s || "-"); }

    // ---- pages ----
    async function overview() {
      const st = await get("/api/status"), now = Date.now();
      const copy = h("button", {class: "sec", onclick: () => navigator.clipboard && navigator.clipboard.writeText(st.pk).then(() => toast(""))}, "Copy");
      const tps = (st.transports || []).map((t) => [t.type, h("code", {}, t.remote_pk.slice(0, 16) + "…"), state(t.state),
        t.rtt_ms == null ? "-" : t.rtt_ms.toFixed(1) + " ms",
        bytes(rate("tx" + t.id, t.bytes_sent, now)) + "/s", bytes(rate("rx" + t.id, t.bytes_received, now)) + "/s",
        bytes(t.bytes_sent) + " / " + bytes(t.bytes_received)]);
      const apps = (st.apps || []).map((a) => [a.name, a.port, state(a.status), a.detail || "",
        a.status === "running" ? act("Stop", () => post("/api/apps/stop", {name: a.name}), "sec") : act("Start", () => post("/api/apps/start", {name: a.name}))]);
      return [section("Visor",
          h("div", {class: "row"}, "Key ", h("code", {id: "pk"}, st.pk), copy),
          h("div", {}, "Version " + st.version + " · up " + Math.floor(st.uptime_seconds / 60) + " min · stcpr " + (st.stcpr_addr || "off") + " · sudph " + (st.sudph_addr || "off"))),
        section("Transports", h("div", {id: "transports"}, table(["Type", "Remote", "State", "RTT", "Up", "Down", "Total up/down"], tps))),
        section("Apps", table(["App", "Port", "Status", "Detail", ""], apps))];
    }

    function chart() {
      const W = 600, H = 150, pts = S.chart, max = Math.max(1024, ...pts.map((p) => Math.max(p.up, p.down)));
      const line = (k) => pts.map((p, i) => ((W * (CHART_SECONDS - (pts[pts.length - 1].t - p.t) / 1000) / CHART_SECONDS).toFixed(1)) + "," + (H - H * p[k] / max).toFixed(1)).join(" ");
      const ns = "http://www.w3.org/2000/svg", svg = document.createElementNS(ns, "svg");
      svg.setAttribute("class", "chart"); svg.setAttribute("viewBox", "0 0 " + W + " " + H); svg.setAttribute("preserveAspectRatio", "none");
      svg.setAttribute("data-points", pts.length);
      for (const [k, c] of [["down", "rx"], ["up", "tx"]]) {
        const pl = document.createElementNS(ns, "polyline"); pl.setAttribute("class", c); pl.setAttribute("points", pts.length ? line(k) : ""); svg.append(pl);
      }
      return h("div", {}, svg, h("div", {class: "row"}, h("span", {class: "rxl"}, "— down"), h("span", {class: "txl"}, "— up"), "peak " + bytes(max) + "/s, last " + CHART_SECONDS / 60 + " min"));
    }

    async function vpn() {
      const app = await get("/api/vpn"), info = (app && app.info) || {}, now = Date.now();
      if (info.state) {
        S.chart.push({t: now, up: rate("vpnup", info.bytes_up, now), down: rate("vpndown", info.bytes_down, now)});
        while (S.chart.length && now - S.chart[0].t > CHART_SECONDS * 1000) S.chart.shift();
      }
      const running = app && app.status === "running";
      const kill = h("input", {type: "checkbox", id: "killswitch", checked: !!info.killswitch});
      const country = h("input", {id: "country", placeholder: "Country (DE)", size: 6, maxlength: 2, value: S.country || ""});
      const pk = h("input", {id: "exit-pk", placeholder: "Exit public key (64 hex)", size: 40, value: S.exit || ""});
      pk.addEventListener("input", () => { S.exit = pk.value; });
      const exitsBox = h("div", {id: "exits"}, S.exits ? exitsTable() : "");
      const status = section("Status",
        h("div", {id: "vpn-state"}, "State: ", state(running ? info.state : "stopped")),
        h("div", {}, "Exit: ", h("code", {}, info.server_pk || "-"), " via " + (info.transport || "-") + " " + (info.server_addr || "")),
        h("div", {}, "Tunnel " + (info.tunnel_ip || "-") + " · reconnects " + (info.reconnects || 0) + " · kill switch " + (info.killswitch ? "on" : "off")),
        h("div", {}, "Bytes " + bytes(info.bytes_up) + " up, " + bytes(info.bytes_down) + " down"),
        info.last_error ? h("div", {class: "bad"}, info.last_error) : null,
        chart(),
        running ? act("Disconnect", () => post("/api/vpn/stop"), "sec") : null);
      const connect = section("Connect",
        h("div", {class: "row"}, pk, h("label", {}, kill, " kill switch"),
          act("Connect", () => { const b = {pk: pk.value.trim(), killswitch: kill.checked}; S.chart = []; return post("/api/vpn/start", b); })),
        h("div", {class: "row"}, country, act("List exits", async () => {
          S.country = country.value.trim().toUpperCase();
          S.exits = await get("/api/vpn/exits" + (S.country ? "?country=" + encodeURIComponent(S.country) : ""));
        }, "sec")), exitsBox);
      const out = [status, connect];
      if (info.lan) out.push(gateway(info.lan));
      return out;
    }
    function exitsTable() {
      return table(["Key", "Country", "Version", "Label", ""], S.exits.map((e) => [h("code", {}, e.pk.slice(0, 16) + "…"), e.country, e.version, e.label || "",
        h("button", {class: "sec", onclick: () => { S.exit = e.pk; $("exit-pk").value = e.pk; }}, "Use")]));
    }
    function gateway(lan) {
      return section("Gateway (LAN " + (lan.interface || "-") + ")",
        h("div", {}, "Address " + (lan.address || "-") + " · DHCP " + (lan.dhcp || "-") + " · LAN fence " + (lan.killswitch ? "on" : "OFF") + " · " + (lan.dropped_packets || 0) + " packets dropped"),
        h("div", {}, "Through the tunnel " + bytes(lan.bytes_up) + " up, " + bytes(lan.bytes_down) + " down; bypassing " + bytes(lan.bytes_bypass)),
        table(["IP", "MAC", "Host", "Bypass"], (lan.clients || []).map((c) => [c.ip, c.mac, c.hostname || "-", c.bypass ? "yes" : ""])));
    }

    async function vpnServer() {
      const app = await get("/api/vpn-server"), info = (app && app.info) || {}, running = app && app.status === "running";
      const wl = h("textarea", {id: "whitelist", placeholder: "One client key per line, or: any"}, (app && app.access === "open" ? ["any"] : info.whitelist || []).join("\n"));
      const secure = h("input", {type: "checkbox", checked: info.secure !== false});
      const start = () => post("/api/vpn-server/start", {whitelist: wl.value.split(/[\s,]+/).filter((x) => x).join(","), secure: secure.checked});
      return [section("VPN server (exit)",
          h("div", {}, "Status: ", state(app ? app.status : "stopped"), " " + ((app && app.detail) || "")),
          h("div", {}, "Sessions " + (info.total_sessions || 0) + " · refused " + (info.refused || 0)),
          h("p", {}, "Whitelist (empty: everyone is refused; \"any\": every key):"), wl,
          h("div", {class: "row"}, h("label", {}, secure, " keep clients off private addresses"),
            running ? act("Apply whitelist (restart)", async () => { await post("/api/vpn-server/stop"); await start(); }) : act("Start", start),
            running ? act("Stop", () => post("/api/vpn-server/stop"), "sec") : null)),
        section("Clients", table(["Key", "Tunnel IP", "In", "Out", "Since"], (info.clients || []).map((c) => [h("code", {}, c.pk.slice(0, 16) + "…"), c.tunnel_ip, bytes(c.bytes_in), bytes(c.bytes_out), new Date(c.connected_unix * 1000).toLocaleString()])))];
    }

    async function socks() {
      const [client, apps] = await Promise.all([get("/api/socks"), get("/api/apps")]);
      const server = apps.find((a) => a.name === "skysocks") || {}, info = (client && client.info) || {}, sinfo = server.info || {};
      const pk = h("input", {placeholder: "Server public key (64 hex)", size: 40}), addr = h("input", {placeholder: "127.0.0.1:1080", size: 16});
      return [section("SOCKS5 client (skysocks-client)",
          h("div", {}, "Status: ", state(client ? client.status : "stopped"), " " + (info.listen_addr ? "listening on " + info.listen_addr : ""), " ", info.server_pk ? h("code", {}, info.server_pk) : ""),
          client && client.status === "running" ? act("Stop", () => post("/api/socks/stop"), "sec")
            : h("div", {class: "row"}, pk, addr, act("Start", () => { const b = {pk: pk.value.trim()}; if (addr.value.trim()) b.addr = addr.value.trim(); return post("/api/socks/start", b); }))),
        section("SOCKS5 server (skysocks)",
          h("div", {}, "Status: ", state(server.status || "stopped"), " " + (server.detail || "")),
          server.status === "running" ? h("div", {}, "Access: " + ({open: "every key (whitelist any)", closed: "no key (whitelist empty)", listed: (sinfo.whitelist || []).length + " key(s) whitelisted"}[server.access] || "-") + " · refused destinations " + (sinfo.refused_destinations || 0)) : null,
          server.status === "running" ? act("Stop", () => post("/api/apps/stop", {name: "skysocks"}), "sec") : act("Start", () => post("/api/apps/start", {name: "skysocks"})))];
    }

    // Skychat (docs/skychat.md): conversations, messages, a send box. Polls without rebuilding the
    // page, so typing is never interrupted; a peer's text is set with textContent only.
    async function chat() {
      const to = h("input", {id: "chat-to", placeholder: "Peer key (64 hex) or group id (g…)", size: 44, value: S.chatWith || ""});
      const text = h("input", {id: "chat-text", placeholder: "Message", size: 44, maxlength: 4096, autocomplete: "off"});
      const send = async (ev) => {
        ev.preventDefault();
        try { S.chatWith = to.value.trim(); const r = await post("/api/chat/send", {to: S.chatWith, text: text.value}); text.value = ""; if (r.last_error) toast(r.last_error); await chatRefresh(); }
        catch (e) { toast(e.message); }
      };
      const gname = h("input", {placeholder: "Group name", size: 14}), gmem = h("input", {placeholder: "Member keys, comma-separated", size: 40});
      const lpk = h("input", {id: "chat-list-pk", placeholder: "Visor key (64 hex)", size: 44});
      const listed = (path) => act(path[0].toUpperCase() + path.slice(1), () => post("/api/chat/" + path, {pk: lpk.value.trim()}), "sec");
      const access = await get("/api/chat/access");
      const page = [section("Conversations", h("div", {id: "chat-list"})),
        section("Messages", h("div", {id: "chat-title"}), h("div", {id: "chat-messages", class: "msgs"}),
          h("form", {class: "row", id: "chat-form", onsubmit: send}, to, text, h("button", {type: "submit", id: "chat-send"}, "Send"))),
        section("Groups", h("div", {id: "chat-groups"}), h("div", {class: "row"}, gname, gmem,
          act("Create group", async () => { const g = await post("/api/chat/groups/create", {name: gname.value.trim(), members: gmem.value.trim()}); S.chatWith = g.id; }))),
        section("Who may write to this visor",
          h("div", {}, "Access " + access.access + "; allowed " + access.allowed.length + ", blocked " + access.blocked.length + ". Messages from other keys are dropped unread."),
          h("div", {class: "row"}, lpk, listed("allow"), listed("disallow"), listed("block"), listed("unblock")))];
      setTimeout(chatRefresh, 0);
      return page;
    }
    async function chatRefresh() {
      const [convs, groups] = await Promise.all([get("/api/chat"), get("/api/chat/groups")]);
      const pick = (id) => () => { S.chatWith = id; $("chat-to").value = id; chatRefresh(); };
      const list = $("chat-list"); if (!list) return;
      list.replaceChildren(table(["Conversation", "Unread", "Queued", "Last"], convs.map((c) => [
        h("a", {href: "#/chat", "data-id": c.id, onclick: (ev) => { ev.preventDefault(); pick(c.id)(); }}, c.kind === "group" ? "Group: " + (c.name || c.id) : c.id.slice(0, 16) + "…"),
        h("span", {class: c.unread ? "unread" : ""}, c.unread), c.queued, c.last_text || ""])));
      $("chat-groups").replaceChildren(table(["Id", "Name", "Members"], groups.map((g) => [h("code", {}, g.id), g.name, g.members.length])));
      if (!S.chatWith) return;
      const c = await get("/api/chat/show?id=" + encodeURIComponent(S.chatWith));
      $("chat-title").textContent = (c.kind === "group" ? "Group " + (c.name || "") + " · " : "With ") + c.id;
      const box = $("chat-messages"), atEnd = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
      box.replaceChildren(...c.messages.map((m) => h("div", {class: "msg" + (m.outgoing ? " out" : ""), "data-state": m.state, "data-from": m.from},
        h("small", {}, (m.outgoing ? "me" : m.from.slice(0, 16) + "…") + " · " + new Date(m.time_ms).toLocaleString() + (m.state === "queued" ? " · queued" : "")), m.text)));
      if (atEnd) box.scrollTop = box.scrollHeight;
      if (c.unread) await post("/api/chat/read", {id: c.id});
    }
    async function chatLoop() { try { await chatRefresh(); } catch (e) { } S.timer = setTimeout(chatLoop, POLL_MS); }

    function loginPage(params) {
      const pw = h("input", {type: "password", id: "password", autocomplete: "current-password", placeholder: "UI password"});
      const go = async (body) => {
        try { const j = await api("POST", "/api/login", body); S.csrf = j.csrf; history.replaceState(null, "", "#/" + (params.get("next") || "overview")); await render(); }
        catch (e) { toast(e.message); }
      };
      if (params.get("token")) { const t = params.get("token"); history.replaceState(null, "", "#/login"); go({token: t}); return [section("Logging in…")]; }
      return [section("Log in",
        h("p", {}, "Run ", h("code", {}, "sudo skywire cli url"), " on the visor for a one-time login link, or use the UI password (",
          h("code", {}, "skywire cli ui password"), ")."),
        h("form", {class: "row", onsubmit: (ev) => { ev.preventDefault(); go({password: pw.value}); }}, pw, h("button", {type: "submit"}, "Log in")))];
    }

    const PAGES = {overview, vpn, "vpn-server": vpnServer, socks, chat};
    async function render() {
      const [route, q] = location.hash.replace(/^#\//, "").split("?");
      const params = new URLSearchParams(q || "");
      clearTimeout(S.timer);
      for (const a of document.querySelectorAll("nav a")) a.classList.toggle("on", a.getAttribute("href") === "#/" + route);
      let kids;
      if (route === "login") { $("nav").style.visibility = "hidden"; kids = loginPage(params); }
      else {
        if (!S.csrf) { try { S.csrf = (await api("GET", "/api/session")).csrf; } catch (e) { return; } }
        $("nav").style.visibility = "visible";
        const page = PAGES[route] || overview;
        try { kids = await page(); } catch (e) { kids = [section("Error", e.message)]; }
        if (route === "chat") S.timer = setTimeout(chatLoop, POLL_MS);
        else S.timer = setTimeout(() => { if (!document.activeElement || !["INPUT", "TEXTAREA"].includes(document.activeElement.tagName)) render(); else S.timer = setTimeout(render, POLL_MS); }, POLL_MS);
      }
      $("main").replaceChildren(...kids);
    }
    window.addEventListener("hashchange", render);
    $("logout").addEventListener("click", async (ev) => { ev.preventDefault(); try { await api("POST", "/api/logout"); } catch (e) { } S.csrf = null; location.hash = "#/login"; });
    render();
    """#
}
