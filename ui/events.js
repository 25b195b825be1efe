// HAVEN events page entry point (<body data-page="events">): see events-page.js.
// Plain ES modules, no build step, nothing fetched from anywhere but this server.
//
// The token and the alert banner this module used to hold live in api.js and alerts.js; they are
// re-exported here for anything that still imports them from events.js.

import { initEventsPage } from './events-page.js';
import { loadSession } from './session.js';

export { askToken, fetchWithToken, storedToken, TOKEN_KEY, withToken } from './api.js';
export { AlertSocket, startAlerts } from './alerts.js';
export { eventLabel, KIND_LABEL, REASON_LABEL, reasonLabel } from './event-labels.js';

if (globalThis.document?.body?.dataset.page === 'events') loadSession().then(initEventsPage);
