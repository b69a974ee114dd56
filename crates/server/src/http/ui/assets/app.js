// Reconbanker dashboard (issue 10): behaviour shared by every page. No inline script anywhere:
// the Content-Security-Policy allows scripts from this origin only.
'use strict';
document.addEventListener('DOMContentLoaded', () => {
  // Times are shown in the browser's zone.
  for (const el of document.querySelectorAll('time[datetime]')) {
    const d = new Date(el.getAttribute('datetime'));
    if (!Number.isNaN(d.getTime())) el.textContent = d.toLocaleString();
  }
});
