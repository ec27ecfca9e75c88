// FedMarket dashboard: live refresh of the server-rendered fragment on index changes (SSE),
// and the accuracy chart (chart.js served by this server from node_modules). No inline script:
// the Content-Security-Policy forbids it.
"use strict";
(function () {
  const live = document.getElementById("live");
  const badge = document.getElementById("live-state");
  let chart = null;
  let pending = false;
  let again = false;

  function drawChart() {
    const canvas = document.getElementById("accuracy");
    if (!canvas || typeof Chart === "undefined") return;
    fetch(canvas.dataset.src, { cache: "no-store" })
      .then((r) => r.json())
      .then((data) => {
        if (chart) { chart.destroy(); chart = null; }
        if (!data.available) {
          canvas.style.display = "none";
          document.body.dataset.chartAt = String(performance.now());
          return;
        }
        chart = new Chart(canvas, {
          type: "line",
          data: {
            labels: data.labels,
            datasets: [
              { label: "running total (" + data.metric + ")", data: data.cumulative, borderColor: "#2563eb", tension: 0.2 },
              { label: "round gain", data: data.gain, borderColor: "#16a34a", borderDash: [4, 3], tension: 0.2 },
            ],
          },
          options: { animation: false, responsive: true, scales: { x: { title: { display: true, text: "round" } } } },
        });
        canvas.dataset.ready = "1";
        document.body.dataset.chartAt = String(performance.now());  // for scripts/bench_dashboard.py
      })
      .catch(() => {});
  }

  function refresh() {
    if (pending) { again = true; return; }
    pending = true;
    fetch(live.dataset.live, { cache: "no-store" })
      .then((r) => (r.ok ? r.text() : Promise.reject(r.status)))
      .then((html) => {
        // The fragment is server-rendered with every value escaped; scripts in it never run.
        live.innerHTML = html;
        drawChart();
        document.body.dataset.refreshed = String(Date.now());
      })
      .catch(() => {})
      .finally(() => {
        pending = false;
        if (again) { again = false; refresh(); }
      });
  }

  function connect() {
    if (!window.EventSource || !live) return;
    const source = new EventSource("/events");
    let first = true;
    source.addEventListener("index", () => {
      badge.textContent = "live";
      if (first) { first = false; return; }  // the page was rendered from this state
      refresh();
    });
    source.onerror = () => { badge.textContent = "reconnecting…"; };
  }

  drawChart();
  connect();
  document.body.dataset.ready = "1";
})();
