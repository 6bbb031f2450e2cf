/// The web UI's files, compiled into the binary (no CDN, works offline): one page, one
/// script (hash routing), one style sheet. Edited here directly; docs/ui.md describes them.
enum UIAssets {
    static let indexHTML = """
    <!doctype html>
    <html lang="en"><head><meta charset="utf-8">
    <meta name="viewport" content="width=device-width,initial-scale=1">
    <title>Skywire visor</title><link rel="stylesheet" href="/app.css"></head>
    <body><header><b>Skywire</b><nav id="nav">
    <a href="#/overview">Overview</a><a href="#/vpn">VPN</a><a href="#/vpn-server">VPN server</a><a href="#/socks">SOCKS5</a>
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
    svg.chart{width:100%;height:160px;background:#fafbfc;border:1px solid #e4e6ea}
    svg.chart polyline{fill:none;stroke-width:2}.rx{stroke:#2f5aa0}.tx{stroke:#e37400}
    """

    static let appJS = #"""
    "use strict";
    """#
}
