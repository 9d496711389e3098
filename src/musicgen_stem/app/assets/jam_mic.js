// musicgen-stem web app: the Jam tab's "Play along live (microphone)". The microphone is captured
// on the AudioContext that plays the cycles (jam.js): an AudioWorklet (its module from a Blob URL,
// nothing fetched) hands over blocks stamped with their frame on that clock, so each sample's
// place in the session is exact: session time = context time - t0 (cycle 0's start) - latency,
// where latency is how late the musician hears the cycles (output + base latency of the context)
// plus how late the input hears them play (the track's latency). The session's samples are
// resampled (linear) to the model's rate and sent in CHUNK-second chunks, JSON {"start": session
// sample, "pcm": base64 of little-endian int16, "latency": ms}, through the hidden #mgs-jam-mic
// textbox (its change event: Gradio's textbox fires "input" on key presses only).
// window.__mgsJam.mic: state, latency (ms taken off), sent (chunks), rate.
(function () {
  "use strict";
  var jam = window.__mgsJam;
  if (!jam || jam.mic) return;
  var CHUNK = 0.25; // s of audio a chunk
  var mic = (jam.mic = { state: "off", latency: null, sent: 0, rate: 32000, error: null });
  var cap = null; // the capture under way
  var outbox = []; // chunks waiting to be sent: one message a tick (each its own change event)
  var asked = false; // this jam's capture was started (once a jam)

  // The worklet: blocks of up to 2048 frames (channels mixed down), each with the context frame
  // of its first sample.
  var WORKLET =
    "registerProcessor('mgs-mic', class extends AudioWorkletProcessor {" +
    " constructor() { super(); this.buf = new Float32Array(2048); this.n = 0; this.at = 0; }" +
    " flush() { if (this.n) this.port.postMessage({ at: this.at, x: this.buf.slice(0, this.n) }); this.n = 0; }" +
    " process(inputs) {" +
    "  var ch = inputs[0] || [], x = ch[0]; if (!x) { this.flush(); return true; }" +
    "  if (ch.length > 1) { x = x.slice(0); for (var c = 1; c < ch.length; c++)" +
    "   for (var i = 0; i < x.length; i++) x[i] += (ch[c][i] - x[i]) / (c + 1); }" +
    "  if (this.n && currentFrame !== this.at + this.n) this.flush();" +
    "  if (this.n + x.length > this.buf.length) this.flush();" +
    "  if (!this.n) this.at = currentFrame;" +
    "  this.buf.set(x, this.n); this.n += x.length; return true; } });";

  function wanted() {
    var el = document.querySelector("#mgs-jam-live input");
    var v = el ? (el.value || "").trim() : "";
    return v !== "" && v !== "none";
  }

  function start() {
    var ctx = jam.ctx;
    if (cap || !ctx) return;
    asked = true;
    if (!navigator.mediaDevices || !window.AudioWorkletNode) {
      mic.state = "unavailable (the microphone needs https or localhost)";
      return;
    }
    cap = { buf: new Float32Array(0), at: 0, m: -1, pcm: new Int16Array(0), n: 0, first: 0, began: Date.now() };
    var c = cap;
    mic.state = "starting";
    mic.sent = 0;
    mic.latency = null;
    var constraints = { echoCancellation: false, noiseSuppression: false, autoGainControl: false };
    if (!jam.micModule) { // once a context: a processor's name is registered once
      var url = URL.createObjectURL(new Blob([WORKLET], { type: "application/javascript" }));
      jam.micModule = ctx.audioWorklet.addModule(url).finally(function () { URL.revokeObjectURL(url); });
    }
    Promise.all([navigator.mediaDevices.getUserMedia({ audio: constraints }), jam.micModule])
      .then(function (got) {
        if (cap !== c) return got[0].getTracks().forEach(function (t) { t.stop(); });
        c.stream = got[0];
        c.inLatency = got[0].getAudioTracks()[0].getSettings().latency || 0;
        c.source = ctx.createMediaStreamSource(c.stream);
        c.node = new AudioWorkletNode(ctx, "mgs-mic", { numberOfOutputs: 1 });
        c.node.port.onmessage = function (e) { heard(c, e.data.at, e.data.x); };
        c.source.connect(c.node);
        c.node.connect(ctx.destination); // silent: keeps the worklet pulled
        mic.state = "on";
      })
      .catch(function (err) {
        mic.state = "failed";
        mic.error = String(err);
        console.warn("musicgen-stem jam: no microphone", err);
        if (cap === c) cap = null;
      });
  }

  // A block from the worklet: appended to the frames kept, then every session sample whose
  // context time is covered is interpolated and queued.
  function heard(c, at, x) {
    var ctx = jam.ctx;
    if (jam.t0 === null) return; // before the jam plays: nothing to stamp it on
    if (c.lat === undefined) {
      c.lat = (ctx.outputLatency || 0) + (ctx.baseLatency || 0) + c.inLatency; // fixed for the session
      mic.latency = Math.round(c.lat * 10000) / 10;
      mic.rate = jam.micRate || mic.rate;
    }
    var end = c.at + c.buf.length;
    if (!c.buf.length || at > end + ctx.sampleRate) { c.buf = new Float32Array(0); c.at = at; end = at; }
    if (at > end) x = concat(new Float32Array(at - end), x); // a dropout: silence
    else if (at < end) x = x.subarray(end - at); // overlap: already there
    c.buf = concat(c.buf, x);
    var sr = ctx.sampleRate, rate = mic.rate;
    if (c.m < 0) c.m = Math.max(0, Math.ceil((c.at / sr - jam.t0 - c.lat) * rate));
    for (;;) {
      var pos = (jam.t0 + c.lat + c.m / rate) * sr - c.at;
      if (pos < 0) { // after a long dropout: on from the first sample heard again
        flush(c);
        c.m += Math.ceil((-pos * rate) / sr);
        continue;
      }
      var i = Math.floor(pos);
      if (i + 1 >= c.buf.length) break;
      var v = c.buf[i] + (c.buf[i + 1] - c.buf[i]) * (pos - i);
      queue(c, c.m, v);
      c.m += 1;
    }
    var drop = Math.max(0, Math.min(i - 1, c.buf.length));
    c.buf = c.buf.slice(drop);
    c.at += drop;
  }

  function concat(a, b) {
    var out = new Float32Array(a.length + b.length);
    out.set(a);
    out.set(b, a.length);
    return out;
  }

  function queue(c, m, v) {
    if (!c.pcm.length) c.pcm = new Int16Array(Math.round(CHUNK * mic.rate));
    if (!c.n) c.first = m;
    c.pcm[c.n++] = Math.max(-32768, Math.min(32767, Math.round(v * 32768)));
    if (c.n === c.pcm.length) flush(c);
  }

  function flush(c) {
    if (!c.n) return;
    outbox.push({ start: c.first, pcm: c.pcm.slice(0, c.n) });
    c.n = 0;
  }

  // The next message: the first chunk waiting and those right after it (a tab whose timers were
  // slowed catches up), up to a second of audio.
  function message() {
    var first = outbox.shift(), parts = [first.pcm], n = first.pcm.length;
    while (outbox.length && outbox[0].start === first.start + n && n + outbox[0].pcm.length <= mic.rate) {
      var next = outbox.shift();
      parts.push(next.pcm);
      n += next.pcm.length;
    }
    var bytes = new Uint8Array(2 * n), view = new DataView(bytes.buffer), at = 0, s = "";
    parts.forEach(function (pcm) {
      for (var k = 0; k < pcm.length; k++, at += 2) view.setInt16(at, pcm[k], true); // little-endian
    });
    for (var j = 0; j < bytes.length; j += 8192) s += String.fromCharCode.apply(null, bytes.subarray(j, j + 8192));
    return JSON.stringify({ start: first.start, pcm: btoa(s), latency: mic.latency });
  }

  function stop() {
    var c = cap;
    if (!c) return;
    cap = null;
    flush(c);
    if (c.stream) c.stream.getTracks().forEach(function (t) { t.stop(); });
    if (c.source) c.source.disconnect();
    if (c.node) { c.node.port.onmessage = null; c.node.disconnect(); }
    mic.state = "off";
  }

  // Start asks for the microphone at once (a user gesture) when a stem is to be played along.
  document.addEventListener(
    "click",
    function (e) {
      if (!(e.target.closest && e.target.closest("#mgs-jam-start"))) return;
      stop();
      asked = false;
      if (wanted()) start();
    },
    true
  );

  setInterval(function () {
    if (jam.micRate && !asked) start(); // the feed asks for it (no click seen)
    // the jam over: stop once what was scheduled has played (and come back through the input),
    // or when no jam began within a minute
    if (cap && jam.t0 !== null && jam.ctx.currentTime > jam.next + (cap.lat || 0) + 1.0) stop();
    if (cap && jam.t0 === null && Date.now() - cap.began > 60000) stop();
    var el = document.querySelector("#mgs-jam-mic textarea, #mgs-jam-mic input");
    if (el && outbox.length) {
      el.value = message();
      el.dispatchEvent(new Event("input", { bubbles: true }));
      mic.sent += 1;
    }
  }, 50);
})();
