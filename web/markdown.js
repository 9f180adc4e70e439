// A small Markdown renderer that is safe for model output: the text is HTML-escaped FIRST, and
// only then are a few Markdown forms turned into tags. Nothing the model writes can become a tag
// or an attribute of its own (links must be http(s) and are built from escaped text).
// Supported: fenced code blocks, inline code, **bold**, *italic*, # headings, - / 1. lists, links.
'use strict';
(function () {
  function escapeHtml(s) {
    return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
      .replace(/"/g, '&quot;').replace(/'/g, '&#39;');
  }

  // `s` is already escaped.
  function inline(s) {
    const codes = [];
    s = s.replace(/`([^`\n]+)`/g, (m, c) => { codes.push(c); return '\u0000' + (codes.length - 1) + '\u0000'; });
    s = s.replace(/\*\*([^*\n]+)\*\*/g, '<strong>$1</strong>');
    s = s.replace(/(^|[^*\w])\*([^*\n]+)\*(?!\w)/g, '$1<em>$2</em>');
    s = s.replace(/\[([^\]\n]+)\]\((https?:\/\/[^\s)]+)\)/g,
      '<a href="$2" rel="noopener noreferrer nofollow" target="_blank">$1</a>');
    return s.replace(/\u0000(\d+)\u0000/g, (m, i) => '<code>' + (codes[+i] || '') + '</code>');
  }

  function render(text) {
    const lines = escapeHtml(String(text).replace(/\u0000/g, '')).split('\n');
    const out = [];
    let code = null, list = null, para = [];
    const flushPara = () => { if (para.length) { out.push('<p>' + para.map(inline).join('<br>') + '</p>'); para = []; } };
    const flushList = () => { if (list) { out.push('<' + list.tag + '>' + list.items.map(i => '<li>' + inline(i) + '</li>').join('') + '</' + list.tag + '>'); list = null; } };
    for (const line of lines) {
      if (code) {
        if (/^\s*```/.test(line)) { out.push('<pre><code>' + code.join('\n') + '</code></pre>'); code = null; }
        else code.push(line);
        continue;
      }
      if (/^\s*```/.test(line)) { flushPara(); flushList(); code = []; continue; }
      let m;
      if ((m = /^(#{1,4})\s+(.*)$/.exec(line))) {
        flushPara(); flushList();
        const n = m[1].length + 2;
        out.push('<h' + n + '>' + inline(m[2]) + '</h' + n + '>');
      } else if ((m = /^\s*[-*]\s+(.*)$/.exec(line)) || (m = /^\s*\d+[.)]\s+(.*)$/.exec(line))) {
        flushPara();
        const tag = /^\s*\d/.test(line) ? 'ol' : 'ul';
        if (list && list.tag !== tag) flushList();
        if (!list) list = { tag, items: [] };
        list.items.push(m[1]);
      } else if (line.trim() === '') {
        flushPara(); flushList();
      } else {
        flushList();
        para.push(line);
      }
    }
    if (code) out.push('<pre><code>' + code.join('\n') + '</code></pre>');  // still streaming
    flushPara(); flushList();
    return out.join('');
  }

  window.aigcMarkdown = { render, escapeHtml };
})();
