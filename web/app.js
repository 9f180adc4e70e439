// The chat page, the tabs, the API key and the model lists. Plain JS, no framework.
'use strict';

const api = {
  key: localStorage.getItem('aigc.apiKey') || '',
  headers(extra) {
    const h = Object.assign({}, extra || {});
    if (this.key) h['Authorization'] = 'Bearer ' + this.key;
    return h;
  },
  async fetch(path, opts) {
    opts = opts || {};
    opts.headers = this.headers(opts.headers);
    const res = await fetch(path, opts);
    if (res.status === 401) {
      const k = prompt('This server needs an API key (aigc serve --api-key):', this.key);
      if (k !== null) { this.key = k.trim(); localStorage.setItem('aigc.apiKey', this.key); }
    }
    return res;
  },
  async error(res) {
    try { const j = await res.json(); return (j.error && j.error.message) || res.statusText; }
    catch (e) { return res.status + ' ' + res.statusText; }
  },
  // Reads a server-sent event stream; calls onEvent(parsed JSON) per event until [DONE].
  async events(res, onEvent) {
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const ev = buf.slice(0, i); buf = buf.slice(i + 2);
        for (const line of ev.split('\n')) {
          if (!line.startsWith('data: ')) continue;
          const data = line.slice(6);
          if (data === '[DONE]') return;
          onEvent(JSON.parse(data));
        }
      }
    }
  },
};

async function modelsLoad() {
  const res = await api.fetch('/v1/models');
  if (!res.ok) { document.getElementById('chat-status').textContent = 'Models: ' + await api.error(res); return; }
  const list = (await res.json()).data;
  for (const [id, kind] of [['chat-model', 'text'], ['img-model', 'image']]) {
    const sel = document.getElementById(id);
    const keep = sel.value;
    sel.replaceChildren();
    for (const m of list.filter(m => (m.kind || 'text') === kind)) {
      const o = document.createElement('option');
      o.value = m.id; o.textContent = m.id + (m.loaded ? '' : ' (not loaded)');
      sel.append(o);
    }
    if (keep) sel.value = keep;
    if (!sel.options.length) {
      const o = document.createElement('option');
      o.value = ''; o.textContent = 'no ' + kind + ' models'; sel.append(o);
    }
  }
}

// ---- tabs (arrow keys move between them, as the ARIA tabs pattern says) ----
function tabsInit() {
  const tabs = [...document.querySelectorAll('[role=tab]')];
  const select = (t) => {
    for (const x of tabs) {
      const on = x === t;
      x.setAttribute('aria-selected', on); x.tabIndex = on ? 0 : -1;
      document.getElementById(x.getAttribute('aria-controls')).hidden = !on;
    }
    t.focus();
  };
  tabs.forEach((t, i) => {
    t.addEventListener('click', () => select(t));
    t.addEventListener('keydown', (e) => {
      if (e.key === 'ArrowRight') select(tabs[(i + 1) % tabs.length]);
      if (e.key === 'ArrowLeft') select(tabs[(i + tabs.length - 1) % tabs.length]);
    });
  });
  document.getElementById('key-button').addEventListener('click', () => {
    const k = prompt('API key (empty for none):', api.key);
    if (k !== null) { api.key = k.trim(); localStorage.setItem('aigc.apiKey', api.key); modelsLoad(); }
  });
}

// ---- chat ----
const chat = { history: [], controller: null };

function chatBubble(role, text) {
  const div = document.createElement('div');
  div.className = 'msg ' + role;
  if (role === 'assistant') div.innerHTML = window.aigcMarkdown.render(text);  // escaped inside render()
  else div.textContent = text;
  const log = document.getElementById('chat-log');
  log.append(div);
  log.scrollTop = log.scrollHeight;
  return div;
}

async function chatSend(text) {
  const status = document.getElementById('chat-status');
  const send = document.getElementById('chat-send'), stop = document.getElementById('chat-stop');
  chat.history.push({ role: 'user', content: text });
  chatBubble('user', text);
  const bubble = chatBubble('assistant', '');
  const messages = [];
  const system = document.getElementById('chat-system').value.trim();
  if (system) messages.push({ role: 'system', content: system });
  messages.push(...chat.history);
  const body = {
    model: document.getElementById('chat-model').value || undefined,
    messages, stream: true, stream_options: { include_usage: true },
    temperature: Number(document.getElementById('chat-temp').value),
    max_tokens: Number(document.getElementById('chat-max').value),
  };
  chat.controller = new AbortController();
  send.disabled = true; stop.disabled = false;
  status.textContent = 'Generating…';
  let reply = '', t0 = performance.now(), usage = null, finish = null;
  try {
    const res = await api.fetch('/v1/chat/completions', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body), signal: chat.controller.signal,
    });
    if (!res.ok) throw new Error(await api.error(res));
    await api.events(res, (ev) => {
      if (ev.error) throw new Error(ev.error.message);
      if (ev.usage) usage = ev.usage;
      const c = ev.choices && ev.choices[0];
      if (!c) return;
      if (c.delta && c.delta.content) {
        reply += c.delta.content;
        bubble.innerHTML = window.aigcMarkdown.render(reply);
        const log = document.getElementById('chat-log');
        log.scrollTop = log.scrollHeight;
      }
      if (c.finish_reason) finish = c.finish_reason;
    });
    chat.history.push({ role: 'assistant', content: reply });
    const secs = (performance.now() - t0) / 1000;
    status.textContent = usage
      ? `${usage.completion_tokens} tokens in ${secs.toFixed(1)} s (${(usage.completion_tokens / secs).toFixed(1)} tok/s), finish: ${finish}`
      : 'Done';
  } catch (e) {
    if (e.name === 'AbortError') {
      chat.history.push({ role: 'assistant', content: reply });
      status.textContent = 'Stopped';
    } else {
      bubble.classList.add('error');
      bubble.textContent = 'Error: ' + e.message;
      chat.history.pop();
      status.textContent = '';
    }
  } finally {
    send.disabled = false; stop.disabled = true; chat.controller = null;
    document.getElementById('chat-input').focus();
    modelsLoad();  // "(not loaded)" marks change after first use
  }
}

function chatInit() {
  const input = document.getElementById('chat-input');
  document.getElementById('chat-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text || chat.controller) return;
    input.value = '';
    chatSend(text);
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      document.getElementById('chat-form').requestSubmit();
    }
  });
  const stop = () => { if (chat.controller) chat.controller.abort(); };
  document.getElementById('chat-stop').addEventListener('click', stop);
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape') stop(); });
  document.getElementById('chat-clear').addEventListener('click', () => {
    stop();
    chat.history = [];
    document.getElementById('chat-log').replaceChildren();
    document.getElementById('chat-status').textContent = '';
    input.focus();
  });
}

window.aigcApi = api;
document.addEventListener('DOMContentLoaded', () => {
  tabsInit();
  chatInit();
  modelsLoad();
  document.getElementById('chat-input').focus();
});
