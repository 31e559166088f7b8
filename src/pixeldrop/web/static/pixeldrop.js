// The account pages need no framework: two small behaviours.

// <button data-copy="ID"> copies the text of the element with that id (the new API key).
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  try {
    await navigator.clipboard.writeText(source.textContent.trim());
  } catch {
    // No clipboard API (plain http on another host): select the text and use the old command.
    const range = document.createRange();
    range.selectNodeContents(source);
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    document.execCommand("copy");
  }
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = "Copy"; }, 2000);
});

// <form data-busy-label="..."> shows that the server is working once sent (the playground).
document.addEventListener("submit", (event) => {
  const label = event.target.dataset.busyLabel;
  const button = event.target.querySelector("button[type=submit]");
  if (!label || !button) return;
  button.textContent = label;
  button.setAttribute("aria-disabled", "true");
  button.classList.add("busy");
});
