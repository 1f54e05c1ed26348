/**
 * The plain page served at / when no built web app exists: how many sessions, their state, the
 * API docs. Anyone who can reach the coordinator can open it, so it shows no join code and no
 * session id: join links come from the session's organiser (npm start prints the demo session's).
 */
import type { SessionInfo } from '../src/federated/protocol';

const escape = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export function statusPage(sessions: readonly SessionInfo[]): string {
  const rows = sessions
    .map((info) => {
      const round = info.round
        ? `round ${info.round.round} (${info.round.state}, ${info.round.accepted}/${info.round.participants.length} updates)`
        : 'no round yet';
      return `<tr><td>${escape(info.config.name)}</td><td>${info.currentVersion ?? '—'}</td><td>${info.clients}</td><td>${info.passages}</td><td>${escape(round)}</td></tr>`;
    })
    .join('\n');
  return `<!doctype html><html><head><meta charset="utf-8"><title>CoRAG coordinator</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.4rem .6rem;text-align:left}</style></head>
<body><h1>CoRAG coordinator</h1>
<p>The web app is not built (run <code>npm run build</code>). ${sessions.length} session${sessions.length === 1 ? '' : 's'} on this coordinator.
Join codes are not listed here: ask the session's organiser for its join link (<code>npm start</code> prints the demo session's).
API: <a href="/api/openapi.json">/api/openapi.json</a></p>
<table><tr><th>Session</th><th>Model version</th><th>Clients</th><th>Passages</th><th>Round</th></tr>
${rows || '<tr><td colspan="5">no sessions</td></tr>'}</table></body></html>`;
}
