//! The page a browser gets at `GET /`: a search form over `GET /logs`, nothing more.
//!
//! It is static and self-contained (no external script or style), and it renders
//! records with `textContent`, so a log line can never inject markup.

pub const HTML: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>log-aggregator</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 1.5rem; }
form { display: flex; flex-wrap: wrap; gap: .5rem; margin-bottom: 1rem; }
input, select, button { font: inherit; padding: .25rem .4rem; }
pre { background: #f5f5f5; padding: .4rem; margin: .2rem 0; white-space: pre-wrap; word-break: break-all; }
#status { color: #555; }
</style>
</head>
<body>
<h1>log-aggregator</h1>
<form id="f">
  <input name="q" placeholder="text search">
  <input name="service" placeholder="service">
  <input name="level" placeholder="level">
  <input name="request_id" placeholder="request id">
  <input name="limit" placeholder="limit" size="5">
  <select name="order"><option>desc</option><option>asc</option></select>
  <input name="token" type="password" placeholder="bearer token (if set)">
  <button>Search</button> <button type="button" id="more" disabled>Next page</button>
</form>
<div id="status"></div>
<div id="logs"></div>
<script>
let cursor = null;
const form = document.getElementById('f');
async function load(next) {
  const data = new FormData(form);
  const params = new URLSearchParams();
  for (const [k, v] of data) { if (v && k !== 'token') params.set(k, v); }
  if (next && cursor) params.set('cursor', cursor);
  const headers = {};
  if (data.get('token')) headers['Authorization'] = 'Bearer ' + data.get('token');
  const res = await fetch('/logs?' + params, { headers });
  const body = await res.json();
  const logs = document.getElementById('logs');
  if (!next) logs.replaceChildren();
  if (!res.ok) { document.getElementById('status').textContent = body.error; return; }
  document.getElementById('status').textContent = body.total + ' matching records';
  for (const log of body.logs) {
    const pre = document.createElement('pre');
    pre.textContent = JSON.stringify(log);
    logs.appendChild(pre);
  }
  cursor = body.next_cursor;
  document.getElementById('more').disabled = !cursor;
}
form.addEventListener('submit', e => { e.preventDefault(); load(false); });
document.getElementById('more').addEventListener('click', () => load(true));
load(false);
</script>
</body>
</html>
"#;
