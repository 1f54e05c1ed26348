/** The plain page served at / when no built web app exists: sessions, join links, API docs. */
import type { SessionInfo } from '../src/federated/protocol';

const escape = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export function statusPage(baseUrl: string, sessions: ReadonlyArray<{ info: SessionInfo; joinCode: string }>): string {
  const rows = sessions
    .map(({ info, joinCode }) => {
      const link = `${baseUrl}/?join=${joinCode}`;
      const round = info.round ? `round ${info.round.round} (${info.round.state}, ${info.round.accepted}/${info.round.participants.length} updates)` : 'no round yet';
      return `<tr><td>${escape(info.config.name)}</td><td><code>${escape(info.id)}</code></td><td><code>${joinCode}</code><br><a href="${escape(link)}">${escape(link)}</a></td>`
        + `<td>${info.currentVersion ?? '—'}</td><td>${info.clients}</td><td>${info.passages}</td><td>${escape(round)}</td></tr>`;
    })
    .join('\n');
  return `<!doctype html><html><head><meta charset="utf-8"><title>CoRAG coordinator</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.4rem .6rem;text-align:left}</style></head>
<body><h1>CoRAG coordinator</h1>
<p>The web app is not built (run <code>npm run build</code>); this page lists the sessions. API: <a href="/api/openapi.json">/api/openapi.json</a></p>
<table><tr><th>Session</th><th>Id</th><th>Join code / link</th><th>Model version</th><th>Clients</th><th>Passages</th><th>Round</th></tr>
${rows || '<tr><td colspan="7">no sessions</td></tr>'}</table></body></html>`;
}
