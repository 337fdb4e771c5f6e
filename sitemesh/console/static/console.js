// Live pages: the server sends "change" over SSE when the site's records change;
// the page then re-fetches its own live region (the same URL, fragment only).
(function () {
  const live = document.body.dataset.live;
  if (!live || !window.EventSource) return;
  const region = document.getElementById("live");
  const state = document.getElementById("livestate");
  let busy = false, again = false;
  function typing() {
    const a = document.activeElement;
    if (a && region.contains(a) && (a.tagName === "INPUT" || a.tagName === "SELECT")) return true;
    return Array.from(region.querySelectorAll("input[name=reason]")).some((i) => i.value);
  }
  async function refresh() {
    if (busy) { again = true; return; }
    if (typing()) { again = true; setTimeout(refresh, 1000); return; }
    busy = true;
    try {
      const r = await fetch(location.href, { headers: { "X-Sitemesh-Fragment": "1" }, credentials: "same-origin" });
      if (r.ok) { region.innerHTML = await r.text(); if (state) state.textContent = "live · updated " + new Date().toLocaleTimeString(); }
    } finally { busy = false; if (again) { again = false; refresh(); } }
  }
  const es = new EventSource("/events");
  es.addEventListener("change", refresh);
  es.onerror = () => { if (state) state.textContent = "live updates reconnecting"; };
  // on (re)connecting, catch up once: a change between rendering the page and opening
  // the stream (or while it was down) would otherwise be missed
  es.onopen = () => { if (state) state.textContent = "live"; refresh(); };
  // the health page also shows the bus (workers, queues, breakers), which changes
  // without a record changing: it re-reads it every 5 s as well
  if (live === "health") setInterval(() => { if (!document.hidden) refresh(); }, 5000);
})();
