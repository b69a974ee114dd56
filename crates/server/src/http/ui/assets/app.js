// Reconbanker dashboard (issue 10): behaviour shared by every page. No inline script anywhere:
// the Content-Security-Policy allows scripts from this origin only.
'use strict';
document.addEventListener('DOMContentLoaded', () => {
  // Times are shown in the browser's zone.
  for (const el of document.querySelectorAll('time[datetime]')) {
    const d = new Date(el.getAttribute('datetime'));
    if (!Number.isNaN(d.getTime())) el.textContent = d.toLocaleString();
  }
  // Copy buttons (the API key shown once).
  for (const btn of document.querySelectorAll('button[data-copy]')) {
    btn.addEventListener('click', async () => {
      const input = document.getElementById(btn.dataset.copy);
      const status = document.querySelector(`[data-copied="${btn.dataset.copy}"]`);
      try {
        await navigator.clipboard.writeText(input.value);
        if (status) status.textContent = 'Copied.';
      } catch (_) {
        input.select();
        if (status) status.textContent = 'Select the key and copy it (Ctrl+C).';
      }
    });
  }
});
