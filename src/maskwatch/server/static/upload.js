// The upload page: one photo to /v1/detect?with_image=true: the JSON for the table and the annotated picture
// from one inference.
"use strict";

document.getElementById("upload").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = document.getElementById("photo").files[0], error = document.getElementById("upload-error");
  if (!file) return;
  error.textContent = "";
  try {
    const form = new FormData();
    form.append("file", file);
    const result = await (await api("/v1/detect?with_image=true", { method: "POST", body: form })).json();
    document.getElementById("annotated").src = "data:image/jpeg;base64," + result.annotated_jpeg;
    const counts = { mask: 0, no_mask: 0, incorrect: 0 };
    for (const f of result.faces) counts[f.label] += 1;
    const n = result.faces.length;
    document.getElementById("summary").textContent = `${n} face${n === 1 ? "" : "s"}: ${counts.mask} mask, ` +
      `${counts.no_mask} no_mask, ${counts.incorrect} incorrect` +
      (n ? ` (${percent(counts.mask / n)} properly masked)` : "");
    document.getElementById("faces").replaceChildren(...result.faces.map((f, i) => el("tr", { class: f.label },
      el("td", { text: String(i + 1) }), el("td", { text: f.label }), el("td", { text: percent(f.confidence) }),
      el("td", { text: f.box.map((v) => Math.round(v)).join(", ") }))));
    document.getElementById("result").hidden = false;
  } catch (e) {
    error.textContent = e.message;
    document.getElementById("result").hidden = true;
  }
});

setupKeyField();
