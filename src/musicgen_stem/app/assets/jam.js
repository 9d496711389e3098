// musicgen-stem web app: the Jam tab's player. #mgs-jam-feed holds the last cycles handed out,
// as JSON [{"i": cycle, "url": "...", "s": seconds}]; each new cycle is fetched, decoded and
// started on one AudioContext right where the previous one ends: gapless, on the audio clock
// (the first half a second late, so that a later cycle delivered a little late is still in time).
// window.__mgsJam.scheduled counts the cycles scheduled (the browser test reads it); t0 is where
// the session's time 0 (cycle 0's start) lies on the audio clock, moved on by any gap, so that the
// microphone (jam_mic.js) stamps what it hears on the session's clock; micRate: the feed's "mic".
(function () {
  "use strict";
  if (window.__mgsJam) return;
  var jam = (window.__mgsJam = {
    ctx: null, next: 0, seen: -1, scheduled: 0, t0: null, micRate: 0, chain: Promise.resolve()
  });

  function context() {
    if (!jam.ctx) jam.ctx = new (window.AudioContext || window.webkitAudioContext)();
    if (jam.ctx.state === "suspended") jam.ctx.resume();
    return jam.ctx;
  }

  // Start is a user gesture: the audio context may begin there; a new jam starts from cycle 0.
  document.addEventListener(
    "click",
    function (e) {
      if (e.target.closest && e.target.closest("#mgs-jam-start")) {
        context();
        jam.seen = -1;
        jam.next = 0;
        jam.t0 = null;
        jam.micRate = 0;
      }
    },
    true
  );

  function schedule(cycle) {
    jam.chain = jam.chain
      .then(function () { return fetch(cycle.url); })
      .then(function (r) { return r.arrayBuffer(); })
      .then(function (bytes) { return context().decodeAudioData(bytes); })
      .then(function (buffer) {
        var ctx = context();
        var src = ctx.createBufferSource();
        src.buffer = buffer;
        src.connect(ctx.destination);
        // the first cycle starts half a second late: slack for the cycles after it to arrive
        var at = jam.next ? Math.max(jam.next, ctx.currentTime + 0.05) : ctx.currentTime + 0.5;
        if (jam.t0 === null) jam.t0 = at;
        else jam.t0 += at - jam.next; // a cycle that came late: the session's clock waited for it
        src.start(at);
        jam.next = at + buffer.duration;
        jam.scheduled += 1;
      })
      .catch(function (err) { console.warn("musicgen-stem jam: a cycle could not play", err); });
  }

  setInterval(function () {
    var el = document.querySelector("#mgs-jam-feed textarea, #mgs-jam-feed input");
    if (!el || !el.value) return;
    var cycles;
    try { cycles = JSON.parse(el.value); } catch (e) { return; }
    cycles.forEach(function (c) {
      if (c.i > jam.seen) {
        jam.seen = c.i;
        if (c.mic) jam.micRate = c.mic; // play along live: the microphone at the model's rate
        schedule(c);
      }
    });
  }, 100);
})();
