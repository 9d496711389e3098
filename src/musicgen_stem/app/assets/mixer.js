// musicgen-stem web app: a small stem mixer. Plays the <audio> elements of one .mgs-mixer in
// sync, with per-stem mute and solo. Uses document-level event delegation, so it works for mixers
// that Gradio renders (or re-renders) after this script ran.
(function () {
  "use strict";
  if (window.__mgsMixer) return;
  window.__mgsMixer = true;

  function tracks(mixer) {
    return Array.from(mixer.querySelectorAll(".mgs-track"));
  }

  function applyGains(mixer) {
    var rows = tracks(mixer);
    var anySolo = rows.some(function (r) { return r.classList.contains("mgs-solo"); });
    rows.forEach(function (r) {
      var audio = r.querySelector("audio");
      if (!audio) return;
      audio.muted = anySolo ? !r.classList.contains("mgs-solo") : r.classList.contains("mgs-muted");
      r.classList.toggle("mgs-silent", audio.muted);
    });
  }

  function allAudio(mixer) {
    return Array.from(mixer.querySelectorAll(".mgs-track audio"));
  }

  function play(mixer) {
    var list = allAudio(mixer);
    if (!list.length) return;
    var t = list[0].currentTime;
    if (list[0].ended) t = 0;
    applyGains(mixer);
    list.forEach(function (a) { a.currentTime = t; });
    list.forEach(function (a) {
      var p = a.play();
      if (p && p.catch) p.catch(function () {});
    });
  }

  function pause(mixer) {
    allAudio(mixer).forEach(function (a) { a.pause(); });
  }

  function stop(mixer) {
    allAudio(mixer).forEach(function (a) { a.pause(); a.currentTime = 0; });
  }

  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest ? ev.target.closest("[data-mgs-action]") : null;
    if (!btn) return;
    var mixer = btn.closest(".mgs-mixer");
    if (!mixer) return;
    ev.preventDefault();
    var action = btn.getAttribute("data-mgs-action");
    var row = btn.closest(".mgs-track");
    if (action === "play") play(mixer);
    else if (action === "pause") pause(mixer);
    else if (action === "stop") stop(mixer);
    else if (action === "solo" && row) {
      row.classList.toggle("mgs-solo");
      btn.setAttribute("aria-pressed", row.classList.contains("mgs-solo") ? "true" : "false");
      applyGains(mixer);
    } else if (action === "mute" && row) {
      row.classList.toggle("mgs-muted");
      btn.setAttribute("aria-pressed", row.classList.contains("mgs-muted") ? "true" : "false");
      applyGains(mixer);
    }
  }, true);

  // Seeking one stem while the mixer plays moves the others with it.
  document.addEventListener("seeked", function (ev) {
    var a = ev.target;
    if (!(a instanceof HTMLMediaElement)) return;
    var mixer = a.closest ? a.closest(".mgs-mixer") : null;
    if (!mixer || a.__mgsSyncing) return;
    allAudio(mixer).forEach(function (o) {
      if (o !== a && Math.abs(o.currentTime - a.currentTime) > 0.05) {
        o.__mgsSyncing = true;
        o.currentTime = a.currentTime;
        setTimeout(function () { o.__mgsSyncing = false; }, 0);
      }
    });
  }, true);

  // Gradio may reuse <audio> elements when it re-renders a mixer: re-apply the rows' state.
  ["emptied", "loadedmetadata"].forEach(function (type) {
    document.addEventListener(type, function (ev) {
      var a = ev.target;
      var mixer = a && a.closest ? a.closest(".mgs-mixer") : null;
      if (mixer) applyGains(mixer);
    }, true);
  });

  window.mgsMixer = { play: play, pause: pause, stop: stop, applyGains: applyGains };
})();
