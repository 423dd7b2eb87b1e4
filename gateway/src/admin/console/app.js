// mft-gateway console: plain JavaScript, no library, no inline script
// (the Content-Security-Policy allows only files from this origin).
// Every change is sent with the session's CSRF token; the server checks
// it and the role on every call, the hidden buttons are only a courtesy.
"use strict";

const TEXT = {
  en: {
    skip: "Skip to content", title: "mft-gateway console", keys: "API keys", apiDocs: "Admin API",
    partners: "Trust network", language: "Language", signOut: "Sign out", signIn: "Sign in",
    name: "Name", password: "Password", code: "Code",
    codeHint: "Six digits from your authenticator app, or a recovery code. Leave empty at your first sign-in.",
    enrolTitle: "Set up two-factor sign-in",
    enrolText: "Scan the QR code with an authenticator app (TOTP), then enter the code it shows.",
    enrolKey: "Or enter this key by hand:", confirm: "Confirm",
    recoveryTitle: "Recovery codes",
    recoveryText: "Each code signs you in once without the app. They are shown only now: store them safely.",
    recoveryDone: "I have stored them", newKey: "New key", account: "Service account", scopes: "Scopes",
    expiryDays: "Expires after (days, empty: never)",
    rateLimit: "Rate limit (e.g. 10/s burst 20, empty: default)", rateLimitColumn: "Rate limit",
    allowedSenders: "Allowed senders (e.g. ops@ourcorp.example, *@billing.ourcorp.example; empty: any)", create: "Create key",
    keyOnce: "The key is shown only now. Copy it into the client's configuration.", copy: "Copy",
    copied: "Copied.", keysCaption: "Service-account keys", id: "Id", created: "Created",
    lastUsed: "Last used", expires: "Expires", status: "Status", actions: "Actions",
    revoke: "Revoke", revoked: "Key {id} revoked; gateways refuse it within 5 seconds.",
    never: "never", partnersCaption: "Connections to partner organisations", url: "URL",
    domains: "E-mail domains", connection: "Connection", test: "Test connection",
    connected: "connected", notConnected: "not connected", testing: "testing…",
    noPartners: "No partner connections yet.",
    viewer: "viewer (read only)", admin: "admin", signedOut: "Signed out.",
    expired: "Your session ended. Please sign in again.",
    status_active: "active", status_revoked: "revoked", status_expired: "expired",
    overview: "Overview",
    overviewHint: "The last hour from this gateway's own metrics, one point every 10 seconds; refreshed while this page is open.",
    health: "Health", healthCaption: "Backend, bridges, partners, connectors and certificates",
    part: "Part", detail: "Detail", chartRequests: "Requests per second", chartErrors: "Errors (5xx) per second",
    chartBytes: "Bytes per second (in / out)", chartP99: "p99 duration (ms)", noData: "no data yet",
    latest: "latest", part_backend: "Backend", part_bridge: "Bridge", part_partner: "Partner",
    part_connector: "Connector", part_certificate: "Certificate", expiresIn: "expires in {d} days",
    failedRelays: "{n} failed relays",
    newPartner: "Connect a partner organisation", partnerUrl: "Their gateway's URL (https)",
    partnerDomains: "Their e-mail domains (comma-separated)", addPartner: "Add partner",
    partnerKeyOnce: "Our key for this partner, shown only now: send it to their administrator over a trusted channel. They paste it into their console.",
    theirKey: "Their key", pasteKey: "Paste the key they sent", saveKey: "Save key",
    keySaved: "Key for {name} stored (encrypted). Press \u201cTest connection\u201d.",
    relays: "Relay queue", relaysCaption: "Deliveries to partner organisations, newest first",
    delivery: "Delivery", partner: "Partner", recipients: "Recipients", attempts: "Attempts",
    lastError: "Last error", retry: "Retry", retried: "Relay of {id} queued again.", noRelays: "No relays yet.",
    state_queued: "queued", state_delivered: "delivered", state_failed: "failed",
    audit: "Audit log", event: "Event", principal: "Principal", decision: "Decision", any: "any",
    clientIp: "Client IP", since: "From (RFC 3339, e.g. 2026-01-31T12:00:00Z)", until: "Until",
    apply: "Apply filters", export: "Export this page as JSON lines",
    auditCaption: "Audit records, newest first", time: "Time", request: "Request", reason: "Reason",
    newer: "Newer", older: "Older",
    webhooks: "Webhooks", newWebhook: "New webhook", whUrl: "Target URL", events: "Events",
    allowPrivate: "Allow a private or loopback target", addWebhook: "Add webhook",
    whSecretOnce: "The signing secret is shown only now: give it to the receiver (Standard Webhooks).",
    webhooksCaption: "Webhook subscriptions", whTest: "Send test event", deliveredCount: "Delivered", remove: "Remove",
    sent: "delivered ({status})", notSent: "not delivered: {reason}", removed: "Webhook {id} removed.",
    receipts: "Receipts", receiptsOf: "{n} of {m} files confirmed", receiptNone: "none yet",
    bridges: "Bridges", smtpCaption: "SMTP sessions, messages and refusals since the start",
    kind: "Kind", outcome: "Outcome", count: "Count", kind_session: "session", kind_message: "message", kind_refusal: "refusal",
    smtpRecent: "Recent SMTP sessions (sign-ins and deliveries from the audit trail)",
    smtpOff: "SMTP bridge not configured.", smtpOn: "Listening on {listen}; spool depth {depth} (messages waiting for the backend).",
    mailboxes: "Mailboxes", mailboxesCaption: "IMAP and POP3 mailboxes polled by this gateway",
    protocol: "Protocol", server: "Server", lastPoll: "Last poll", lastSuccess: "Last success",
    noMailboxes: "No mailboxes configured.", mb_ok: "ok", mb_failing: "failing", mb_waiting: "waiting",
    connectedNow: "connected",
    sftpCaption: "SFTP users and their open sessions",
    sftpOff: "SFTP bridge not configured.", sftpOn: "Listening on {listen}; {open} open sessions; {failures} refused sign-ins since the start.",
    sftpHint: "Users added here are stored in the gateway's database and can log in at once; removing one refuses its next login and closes its sessions. Users from the config file ([[sftp.users]]) change with the file and a restart.",
    newSftpUser: "New SFTP user", suFolder: "Folder in the backend (the user's root)",
    suPassword: "Password (at least 12 characters; empty: public key only)",
    suKeys: "Public keys (OpenSSH, one per line; empty: password only)", addSftpUser: "Add SFTP user",
    perm_upload: "upload", perm_download: "download", perm_list: "list", perm_delete: "delete",
    source: "Source", source_config: "config file", source_store: "added here", lastLogin: "Last login",
    sftpAdded: "SFTP user {name} added; it can log in now.", sftpRemoved: "SFTP user {name} removed; its sessions are closed.",
    login_publickey: "public key", login_password: "password", login_apikey: "api key",
    folder: "Folder", login: "Sign-in", permissions: "Permissions", openSessions: "Open sessions",
    transports: "Transport providers", transportsHint: "Providers that send notifications (docs/transports.md). Add and remove them with mft-gateway transports or the admin API.",
    transportsCaption: "Transport providers, where they are used and their credit",
    type: "Type", usedBy: "Used by", credit: "Credit", tpTest: "Test", tpTo: "Recipient", tpSend: "Send test",
    tpSent: "sent: {answer}", tpNotSent: "not sent: {reason}", noTransports: "No transport providers yet.",
    notUsed: "not used", checkedAt: "checked {at}", tp_ready: "ready", "tp_not ready": "not ready",
    config: "Configuration", cfgSource: "Running config from",
    cfgDrift: "The file was edited since the gateway last loaded it: what runs differs from what is shown. Reload to apply it.",
    cfgRedacted: "Every secret is shown as <redacted>; env: and file: references are shown as written.",
    cfgValidate: "Validate a candidate config",
    cfgPaste: "Paste the TOML here (it is checked as if it replaced the running file; nothing is written)",
    cfgCheck: "Validate", cfgValid: "Valid: the gateway would start with this config.", cfgInvalid: "Invalid:",
    warnings: "Warnings:", reload: "Reload", reloadHint: "Reads the config file again and applies it; an invalid file changes nothing.",
    reloaded: "Reloaded.", changed: "In force now:", needsRestart: "Needs a restart:", nothingChanged: "nothing changed",
    reloadFailed: "Not reloaded:",
  },
  de: {
    skip: "Zum Inhalt springen", title: "mft-gateway Konsole", keys: "API-Schlüssel", apiDocs: "Admin-API",
    partners: "Vertrauensnetz", language: "Sprache", signOut: "Abmelden", signIn: "Anmelden",
    name: "Name", password: "Passwort", code: "Code",
    codeHint: "Sechs Ziffern aus der Authenticator-App oder ein Wiederherstellungscode. Bei der ersten Anmeldung leer lassen.",
    enrolTitle: "Zwei-Faktor-Anmeldung einrichten",
    enrolText: "Scannen Sie den QR-Code mit einer Authenticator-App (TOTP) und geben Sie den angezeigten Code ein.",
    enrolKey: "Oder geben Sie diesen Schlüssel von Hand ein:", confirm: "Bestätigen",
    recoveryTitle: "Wiederherstellungscodes",
    recoveryText: "Jeder Code erlaubt eine Anmeldung ohne App. Sie werden nur jetzt angezeigt: sicher aufbewahren.",
    recoveryDone: "Ich habe sie gespeichert", newKey: "Neuer Schlüssel", account: "Dienstkonto",
    scopes: "Berechtigungen", expiryDays: "Läuft ab nach (Tagen, leer: nie)",
    rateLimit: "Ratenlimit (z. B. 10/s burst 20, leer: Standard)", rateLimitColumn: "Ratenlimit",
    allowedSenders: "Erlaubte Absender (z. B. ops@ourcorp.example, *@billing.ourcorp.example; leer: alle)",
    create: "Schlüssel erstellen",
    keyOnce: "Der Schlüssel wird nur jetzt angezeigt. Kopieren Sie ihn in die Konfiguration des Clients.",
    copy: "Kopieren", copied: "Kopiert.", keysCaption: "Schlüssel der Dienstkonten", id: "Id",
    created: "Erstellt", lastUsed: "Zuletzt benutzt", expires: "Läuft ab", status: "Status",
    actions: "Aktionen", revoke: "Widerrufen",
    revoked: "Schlüssel {id} widerrufen; Gateways lehnen ihn binnen 5 Sekunden ab.", never: "nie",
    partnersCaption: "Verbindungen zu Partnerorganisationen", url: "URL", domains: "E-Mail-Domains",
    connection: "Verbindung", test: "Verbindung testen", connected: "verbunden",
    notConnected: "nicht verbunden", testing: "teste…",
    noPartners: "Noch keine Partnerverbindungen.",
    viewer: "Betrachter (nur lesen)", admin: "Administrator", signedOut: "Abgemeldet.",
    expired: "Ihre Sitzung ist abgelaufen. Bitte melden Sie sich erneut an.",
    status_active: "aktiv", status_revoked: "widerrufen", status_expired: "abgelaufen",
    overview: "Übersicht",
    overviewHint: "Die letzte Stunde aus den eigenen Metriken dieses Gateways, ein Punkt alle 10 Sekunden; wird aktualisiert, solange diese Seite offen ist.",
    health: "Zustand", healthCaption: "Backend, Brücken, Partner, Konnektoren und Zertifikate",
    part: "Teil", detail: "Einzelheiten", chartRequests: "Anfragen pro Sekunde", chartErrors: "Fehler (5xx) pro Sekunde",
    chartBytes: "Bytes pro Sekunde (ein / aus)", chartP99: "p99-Dauer (ms)", noData: "noch keine Daten",
    latest: "zuletzt", part_backend: "Backend", part_bridge: "Brücke", part_partner: "Partner",
    part_connector: "Konnektor", part_certificate: "Zertifikat", expiresIn: "läuft in {d} Tagen ab",
    failedRelays: "{n} fehlgeschlagene Weiterleitungen",
    newPartner: "Partnerorganisation verbinden", partnerUrl: "URL ihres Gateways (https)",
    partnerDomains: "Ihre E-Mail-Domains (durch Kommas getrennt)", addPartner: "Partner hinzufügen",
    partnerKeyOnce: "Unser Schlüssel für diesen Partner, nur jetzt angezeigt: Senden Sie ihn über einen vertrauenswürdigen Weg an deren Administrator. Er fügt ihn in seiner Konsole ein.",
    theirKey: "Ihr Schlüssel", pasteKey: "Den erhaltenen Schlüssel einfügen", saveKey: "Schlüssel speichern",
    keySaved: "Schlüssel für {name} gespeichert (verschlüsselt). Drücken Sie \u201eVerbindung testen\u201c.",
    relays: "Weiterleitungen", relaysCaption: "Zustellungen an Partnerorganisationen, neueste zuerst",
    delivery: "Zustellung", partner: "Partner", recipients: "Empfänger", attempts: "Versuche",
    lastError: "Letzter Fehler", retry: "Erneut versuchen", retried: "Weiterleitung von {id} erneut eingereiht.",
    noRelays: "Noch keine Weiterleitungen.",
    state_queued: "wartend", state_delivered: "zugestellt", state_failed: "fehlgeschlagen",
    audit: "Prüfprotokoll", event: "Ereignis", principal: "Akteur", decision: "Entscheidung", any: "alle",
    clientIp: "Client-IP", since: "Ab (RFC 3339, z. B. 2026-01-31T12:00:00Z)", until: "Bis",
    apply: "Filter anwenden", export: "Diese Seite als JSON Lines exportieren",
    auditCaption: "Prüfeinträge, neueste zuerst", time: "Zeit", request: "Anfrage", reason: "Grund",
    newer: "Neuere", older: "Ältere",
    webhooks: "Webhooks", newWebhook: "Neuer Webhook", whUrl: "Ziel-URL", events: "Ereignisse",
    allowPrivate: "Privates oder Loopback-Ziel erlauben", addWebhook: "Webhook hinzufügen",
    whSecretOnce: "Das Signaturgeheimnis wird nur jetzt angezeigt: Geben Sie es dem Empfänger (Standard Webhooks).",
    webhooksCaption: "Webhook-Abonnements", whTest: "Testereignis senden", deliveredCount: "Zugestellt", remove: "Entfernen",
    sent: "zugestellt ({status})", notSent: "nicht zugestellt: {reason}", removed: "Webhook {id} entfernt.",
    receipts: "Empfangsbestätigungen", receiptsOf: "{n} von {m} Dateien bestätigt", receiptNone: "noch keine",
    bridges: "Brücken", smtpCaption: "SMTP-Sitzungen, Nachrichten und Ablehnungen seit dem Start",
    kind: "Art", outcome: "Ergebnis", count: "Anzahl", kind_session: "Sitzung", kind_message: "Nachricht", kind_refusal: "Ablehnung",
    smtpRecent: "Letzte SMTP-Sitzungen (Anmeldungen und Zustellungen aus dem Prüfprotokoll)",
    smtpOff: "SMTP-Brücke nicht eingerichtet.", smtpOn: "Lauscht auf {listen}; Warteschlange {depth} (Nachrichten, die auf das Backend warten).",
    mailboxes: "Postfächer", mailboxesCaption: "IMAP- und POP3-Postfächer, die dieses Gateway abruft",
    protocol: "Protokoll", server: "Server", lastPoll: "Letzter Abruf", lastSuccess: "Letzter Erfolg",
    noMailboxes: "Keine Postfächer eingerichtet.", mb_ok: "in Ordnung", mb_failing: "gestört", mb_waiting: "wartet",
    connectedNow: "verbunden",
    sftpCaption: "SFTP-Benutzer und ihre offenen Sitzungen",
    sftpOff: "SFTP-Brücke nicht eingerichtet.", sftpOn: "Lauscht auf {listen}; {open} offene Sitzungen; {failures} abgelehnte Anmeldungen seit dem Start.",
    sftpHint: "Hier hinzugefügte Benutzer werden in der Datenbank des Gateways gespeichert und können sich sofort anmelden; das Entfernen lehnt die nächste Anmeldung ab und schließt offene Sitzungen. Benutzer aus der Konfigurationsdatei ([[sftp.users]]) ändern sich mit der Datei und einem Neustart.",
    newSftpUser: "Neuer SFTP-Benutzer", suFolder: "Ordner im Backend (Wurzel des Benutzers)",
    suPassword: "Passwort (mindestens 12 Zeichen; leer: nur öffentlicher Schlüssel)",
    suKeys: "Öffentliche Schlüssel (OpenSSH, einer pro Zeile; leer: nur Passwort)", addSftpUser: "SFTP-Benutzer hinzufügen",
    perm_upload: "hochladen", perm_download: "herunterladen", perm_list: "auflisten", perm_delete: "löschen",
    source: "Herkunft", source_config: "Konfigurationsdatei", source_store: "hier hinzugefügt", lastLogin: "Letzte Anmeldung",
    sftpAdded: "SFTP-Benutzer {name} hinzugefügt; er kann sich jetzt anmelden.", sftpRemoved: "SFTP-Benutzer {name} entfernt; seine Sitzungen sind geschlossen.",
    login_publickey: "öffentlicher Schlüssel", login_password: "Passwort", login_apikey: "API-Schlüssel",
    folder: "Ordner", login: "Anmeldung", permissions: "Rechte", openSessions: "Offene Sitzungen",
    transports: "Versanddienste", transportsHint: "Dienste, die Benachrichtigungen versenden (docs/transports.md). Hinzufügen und Entfernen mit mft-gateway transports oder der Admin-API.",
    transportsCaption: "Versanddienste, wo sie verwendet werden, und ihr Guthaben",
    type: "Typ", usedBy: "Verwendet von", credit: "Guthaben", tpTest: "Test", tpTo: "Empfänger", tpSend: "Test senden",
    tpSent: "gesendet: {answer}", tpNotSent: "nicht gesendet: {reason}", noTransports: "Noch keine Versanddienste.",
    notUsed: "nicht verwendet", checkedAt: "geprüft {at}", tp_ready: "bereit", "tp_not ready": "nicht bereit",
    config: "Konfiguration", cfgSource: "Laufende Konfiguration aus",
    cfgDrift: "Die Datei wurde geändert, seit das Gateway sie geladen hat: Was läuft, weicht vom Angezeigten ab. Neu laden, um sie anzuwenden.",
    cfgRedacted: "Jedes Geheimnis wird als <redacted> angezeigt; env:- und file:-Verweise so, wie sie geschrieben sind.",
    cfgValidate: "Eine Konfiguration prüfen",
    cfgPaste: "TOML hier einfügen (geprüft, als ersetzte sie die laufende Datei; nichts wird geschrieben)",
    cfgCheck: "Prüfen", cfgValid: "Gültig: Das Gateway würde mit dieser Konfiguration starten.", cfgInvalid: "Ungültig:",
    warnings: "Warnungen:", reload: "Neu laden", reloadHint: "Liest die Konfigurationsdatei erneut und wendet sie an; eine ungültige Datei ändert nichts.",
    reloaded: "Neu geladen.", changed: "Jetzt in Kraft:", needsRestart: "Braucht einen Neustart:", nothingChanged: "nichts geändert",
    reloadFailed: "Nicht neu geladen:",
  },
};

const state = { csrf: "", role: "", name: "", scopes: [], lang: "en", view: "", auditOffset: 0 };
const AUDIT_PAGE = 50;

const $ = (id) => document.getElementById(id);
const t = (key, vars) => {
  let s = (TEXT[state.lang] && TEXT[state.lang][key]) || TEXT.en[key] || key;
  for (const [k, v] of Object.entries(vars || {})) s = s.replace("{" + k + "}", v);
  return s;
};

function applyLanguage() {
  document.documentElement.lang = state.lang;
  $("lang").value = state.lang;
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  document.title = t("title");
  updateWho();
}

function say(text, ok) {
  const m = $("message");
  m.textContent = text || "";
  m.className = ok ? "ok" : "";
}

async function call(method, path, body) {
  const headers = {};
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    headers["X-CSRF-Token"] = state.csrf;
  }
  const res = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  const type = res.headers.get("Content-Type") || "";
  if (res.status !== 204 && type.includes("json")) data = await res.json();
  if (res.status === 401 && !path.startsWith("/console/api/sign-in") && !path.startsWith("/console/api/enrol") && state.view !== "sign-in") {
    showSignIn(t("expired"));
  }
  return { status: res.status, data };
}

function problemText(r) {
  return (r.data && (r.data.detail || r.data.title)) || ("HTTP " + r.status);
}

function show(view) {
  state.view = view;
  for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== "view-" + view;
  const signedIn = ["keys", "partners", "overview", "audit", "webhooks", "bridges", "transports", "config"].includes(view);
  if (view !== "overview" && state.overviewTimer) { clearInterval(state.overviewTimer); state.overviewTimer = 0; }
  $("nav").hidden = !signedIn;
  $("sign-out").hidden = view === "sign-in";
  for (const b of document.querySelectorAll("nav button")) {
    if (b.dataset.view === view) b.setAttribute("aria-current", "page");
    else b.removeAttribute("aria-current");
  }
  for (const el of document.querySelectorAll(".admin-only")) el.hidden = state.role !== "admin";
  updateWho();
}

function updateWho() {
  $("who").textContent = state.name && state.view !== "sign-in"
    ? state.name + " (" + t(state.role === "admin" ? "admin" : "viewer") + ")" : "";
}

function showSignIn(message) {
  state.csrf = ""; state.role = ""; state.name = "";
  show("sign-in");
  say(message || "", true);
  $("si-name").focus();
}

async function afterSignIn(me) {
  state.csrf = me.csrf; state.role = me.role; state.name = me.name;
  if (me.stage === "enrol") return startEnrolment();
  const r = await call("GET", "/console/api/me");
  if (r.status !== 200) return showSignIn(problemText(r));
  state.scopes = r.data.scopes || [];
  state.csrf = r.data.csrf;
  renderScopes();
  await openView("keys");
}

async function startEnrolment() {
  show("enrol");
  const r = await call("GET", "/console/api/enrol");
  if (r.status !== 200) return say(problemText(r));
  $("totp-secret").textContent = r.data.secret;
  $("qr").src = "/console/api/enrol/qr.svg?" + Date.now();
  $("en-code").focus();
}

function renderScopes() {
  const box = $("key-scopes");
  for (const el of box.querySelectorAll("label")) el.remove();
  for (const scope of state.scopes) {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "checkbox"; input.value = scope; input.name = "scope";
    input.id = "scope-" + scope.replace(/[^a-z0-9]/gi, "-");
    label.append(input, " " + scope);
    box.append(label);
  }
}

const cell = (text) => {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  return td;
};

async function loadKeys() {
  const r = await call("GET", "/admin/v1/keys");
  if (r.status !== 200) return say(problemText(r));
  const body = $("keys-table").tBodies[0];
  body.replaceChildren();
  for (const k of r.data.keys) {
    const tr = document.createElement("tr");
    tr.dataset.id = k.id;
    const status = cell(t("status_" + k.status));
    status.className = "status status-" + k.status;
    tr.append(cell(k.id), cell(k.account), cell(k.scopes.join(" ")), cell(k.created_at),
      cell(k.last_used_at || t("never")), cell(k.expires_at || t("never")), cell(k.rate_limit || ""), status);
    const actions = document.createElement("td");
    if (state.role === "admin" && k.status === "active") {
      const b = document.createElement("button");
      b.type = "button"; b.className = "revoke"; b.textContent = t("revoke");
      b.setAttribute("aria-label", t("revoke") + " " + k.id);
      b.addEventListener("click", () => revokeKey(k.id));
      actions.append(b);
    }
    tr.append(actions);
    body.append(tr);
  }
}

async function revokeKey(id) {
  const r = await call("DELETE", "/admin/v1/keys/" + encodeURIComponent(id));
  if (r.status !== 204) return say(problemText(r));
  say(t("revoked", { id }), true);
  await loadKeys();
}

async function loadPartners() {
  const r = await call("GET", "/admin/v1/partners");
  if (r.status !== 200) return say(problemText(r));
  const body = $("partners-table").tBodies[0];
  body.replaceChildren();
  $("no-partners").hidden = r.data.partners.length > 0;
  for (const p of r.data.partners) {
    const tr = document.createElement("tr");
    const result = cell("");
    result.className = "connection";
    if (state.role === "admin") {
      const b = document.createElement("button");
      b.type = "button"; b.textContent = t("test");
      b.setAttribute("aria-label", t("test") + " " + p.name);
      b.addEventListener("click", async () => {
        const out = result.querySelector("span") || document.createElement("span");
        out.textContent = " " + t("testing"); result.append(out);
        const res = await call("POST", "/admin/v1/partners/" + encodeURIComponent(p.name) + "/test", {});
        if (res.status !== 200) { out.textContent = " " + problemText(res); return; }
        out.textContent = " " + (res.data.connected ? t("connected") : t("notConnected") + ": " + res.data.reason);
        out.className = res.data.connected ? "good" : "bad";
      });
      result.prepend(b);
    }
    tr.dataset.name = p.name;
    const status = cell(p.status);
    status.className = "status";
    tr.append(cell(p.name), cell(p.url), cell(p.email_domains.join(", ")), status);
    if (state.role === "admin") {
      const td = document.createElement("td");
      td.className = "their-key";
      const input = document.createElement("input");
      input.type = "password"; input.autocomplete = "off"; input.className = "their-key-input";
      input.setAttribute("aria-label", t("pasteKey") + " (" + p.name + ")");
      input.placeholder = t("pasteKey");
      const save = document.createElement("button");
      save.type = "button"; save.className = "save-key"; save.textContent = t("saveKey");
      save.setAttribute("aria-label", t("saveKey") + " " + p.name);
      save.addEventListener("click", async () => {
        const res = await call("PUT", "/admin/v1/partners/" + encodeURIComponent(p.name) + "/key", { key: input.value.trim() });
        input.value = "";
        if (res.status !== 200) return say(problemText(res));
        say(t("keySaved", { name: p.name }), true);
        await loadPartners();
      });
      td.append(input, " ", save);
      tr.append(td);
    }
    tr.append(result);
    body.append(tr);
  }
  await loadRelays();
}

async function loadRelays() {
  const r = await call("GET", "/admin/v1/relays");
  if (r.status !== 200) return say(problemText(r));
  const body = $("relays-table").tBodies[0];
  body.replaceChildren();
  for (const j of r.data.relays) {
    const tr = document.createElement("tr");
    tr.dataset.delivery = j.delivery_id; tr.dataset.partner = j.partner;
    const st = cell(t("state_" + j.state));
    st.className = "state " + (j.state === "failed" ? "bad" : j.state === "delivered" ? "good" : "");
    const actions = document.createElement("td");
    if (state.role === "admin" && j.state === "failed") {
      const b = document.createElement("button");
      b.type = "button"; b.className = "retry"; b.textContent = t("retry");
      b.setAttribute("aria-label", t("retry") + " " + j.delivery_id);
      b.addEventListener("click", async () => {
        const res = await call("POST", "/admin/v1/relays/" + encodeURIComponent(j.delivery_id) + "/" + encodeURIComponent(j.partner) + "/retry", {});
        if (res.status !== 200) return say(problemText(res));
        say(t("retried", { id: j.delivery_id }), true);
        await loadRelays();
      });
      actions.append(b);
    }
    const got = (j.receipts || []).length;
    const receipts = cell(got ? t("receiptsOf", { n: got, m: Math.max(got, j.files_sent) }) : t("receiptNone"));
    receipts.className = "receipts " + (got && got >= j.files_sent ? "good" : "");
    if (got) receipts.title = j.receipts.map((x) => x.file_id + ": " + x.downloaded_at).join("\n");
    tr.append(cell(j.delivery_id), cell(j.partner), cell(j.recipients.join(", ")), st,
      cell(j.attempts), cell(j.last_error || ""), receipts, actions);
    body.append(tr);
  }
}

const SVG = "http://www.w3.org/2000/svg";
const svgEl = (name, attrs) => {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
};
const fmt = (v) => v == null ? "–" : v >= 1e6 ? (v / 1e6).toFixed(1) + " M" : v >= 1e3 ? (v / 1e3).toFixed(1) + " k" : (Math.round(v * 100) / 100).toString();

// One small line chart (inline SVG, drawn by this script): `lines` are
// [key, css class] pairs of the points' fields; the x axis is the last hour.
function chart(id, title, points, lines, now) {
  const fig = document.createElement("figure");
  fig.className = "chart"; fig.id = id;
  const cap = document.createElement("figcaption");
  const last = points.length ? points[points.length - 1] : null;
  cap.textContent = t(title) + ": " + (last ? lines.map(([k]) => fmt(last[k])).join(" / ") : t("noData"));
  const w = 320, h = 90;
  const svg = svgEl("svg", { viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": cap.textContent, class: "plot" });
  svg.append(svgEl("rect", { x: 0, y: 0, width: w, height: h, class: "plot-bg" }));
  let max = 0;
  for (const p of points) for (const [k] of lines) max = Math.max(max, p[k] || 0);
  max = max > 0 ? max * 1.1 : 1;
  const x = (at) => w - ((now - at) / 3600) * w;
  for (const [k, cls] of lines) {
    const pts = points.filter((p) => p[k] != null).map((p) => `${x(p.at).toFixed(1)},${(h - (p[k] / max) * (h - 4) - 2).toFixed(1)}`);
    if (!pts.length) continue;
    svg.append(svgEl("polyline", { points: pts.join(" "), class: "line " + cls }));
    const [cx, cy] = pts[pts.length - 1].split(",");
    svg.append(svgEl("circle", { cx, cy, r: 2.5, class: "dot " + cls }));
  }
  const top = svgEl("text", { x: 4, y: 12, class: "axis" });
  top.textContent = fmt(max);
  svg.append(top);
  fig.append(cap, svg);
  return fig;
}

async function loadOverview() {
  const r = await call("GET", "/admin/v1/overview");
  if (r.status !== 200) return say(problemText(r));
  const points = r.data.series;
  const now = points.length ? points[points.length - 1].at : Date.now() / 1000;
  $("charts").replaceChildren(
    chart("chart-requests", "chartRequests", points, [["requests_per_s", "a"]], now),
    chart("chart-errors", "chartErrors", points, [["errors_per_s", "bad"]], now),
    chart("chart-bytes", "chartBytes", points, [["bytes_in_per_s", "a"], ["bytes_out_per_s", "b"]], now),
    chart("chart-p99", "chartP99", points, [["p99_ms", "a"]], now));
  const h = r.data.health;
  const rows = [["backend", h.backend]];
  for (const b of h.bridges) rows.push(["bridge", b]);
  for (const p of h.partners) rows.push(["partner", p]);
  for (const c of h.connectors) rows.push(["connector", c]);
  for (const c of h.certificates) rows.push(["certificate", c]);
  const body = $("health-table").tBodies[0];
  body.replaceChildren();
  for (const [part, item] of rows) {
    const tr = document.createElement("tr");
    tr.dataset.part = part; tr.dataset.name = item.name;
    const st = cell(item.state);
    st.className = "state " + (["up", "ok", "connected", "configured"].includes(item.state) ? "good" : ["unknown", "warning", "pending"].includes(item.state) ? "" : "bad");
    let detail = item.detail || "";
    if (part === "certificate") detail = t("expiresIn", { d: item.expires_in_days });
    if (part === "partner" && item.failed_relays) detail = t("failedRelays", { n: item.failed_relays });
    tr.append(cell(t("part_" + part)), cell(item.name), st, cell(detail));
    body.append(tr);
  }
}

async function loadWebhooks() {
  const r = await call("GET", "/admin/v1/webhooks");
  if (r.status !== 200) return say(problemText(r));
  const body = $("webhooks-table").tBodies[0];
  body.replaceChildren();
  for (const w of r.data.webhooks) {
    const tr = document.createElement("tr");
    tr.dataset.id = w.id;
    const st = cell(w.state);
    st.className = "state " + (w.state === "enabled" || w.state === "active" ? "good" : "bad");
    const result = cell("");
    result.className = "test-result";
    const actions = document.createElement("td");
    if (state.role === "admin") {
      const test = document.createElement("button");
      test.type = "button"; test.className = "wh-test"; test.textContent = t("whTest");
      test.setAttribute("aria-label", t("whTest") + " " + w.id);
      test.addEventListener("click", async () => {
        const out = result.querySelector("span") || document.createElement("span");
        out.textContent = " " + t("testing"); result.append(out);
        const res = await call("POST", "/admin/v1/webhooks/" + encodeURIComponent(w.id) + "/test", {});
        if (res.status !== 200) { out.textContent = " " + problemText(res); return; }
        out.textContent = " " + (res.data.delivered ? t("sent", { status: res.data.status }) : t("notSent", { reason: res.data.reason }));
        out.className = res.data.delivered ? "good" : "bad";
      });
      result.prepend(test);
      const rm = document.createElement("button");
      rm.type = "button"; rm.className = "wh-remove"; rm.textContent = t("remove");
      rm.setAttribute("aria-label", t("remove") + " " + w.id);
      rm.addEventListener("click", async () => {
        const res = await call("DELETE", "/admin/v1/webhooks/" + encodeURIComponent(w.id));
        if (res.status !== 200) return say(problemText(res));
        say(t("removed", { id: w.id }), true);
        await loadWebhooks();
      });
      actions.append(rm);
    }
    tr.append(cell(w.id), cell(w.url), cell(w.events.join(" ")), st, cell(w.delivered),
      cell(w.last_error || ""), result, actions);
    body.append(tr);
  }
}

const list = (items) => {
  const ul = document.createElement("ul");
  for (const i of items) { const li = document.createElement("li"); li.textContent = i; ul.append(li); }
  return ul;
};

async function loadBridges() {
  const r = await call("GET", "/admin/v1/bridges");
  if (r.status !== 200) return say(problemText(r));
  const { smtp, mailboxes, sftp } = r.data;
  $("smtp-summary").textContent = smtp.enabled
    ? t("smtpOn", { listen: smtp.listen, depth: smtp.spool_depth }) : t("smtpOff");
  $("smtp-summary").dataset.depth = smtp.enabled ? String(smtp.spool_depth) : "";
  const counts = $("smtp-table").tBodies[0];
  counts.replaceChildren();
  for (const [kind, map] of [["session", smtp.sessions], ["message", smtp.messages], ["refusal", smtp.refusals]]) {
    for (const [what, n] of Object.entries(map || {})) {
      const tr = document.createElement("tr");
      tr.dataset.kind = kind; tr.dataset.outcome = what;
      tr.append(cell(t("kind_" + kind)), cell(what), cell(n));
      counts.append(tr);
    }
  }
  $("smtp-table").hidden = !smtp.enabled;
  $("smtp-recent").hidden = !smtp.enabled;
  if (smtp.enabled) {
    const recent = [];
    for (const event of ["smtp_auth", "smtp_delivery"]) {
      const a = await call("GET", "/admin/v1/audit?limit=10&event=" + event);
      if (a.status === 200) recent.push(...a.data.records);
    }
    recent.sort((x, y) => (x.time < y.time ? 1 : -1));
    const body = $("smtp-recent").tBodies[0];
    body.replaceChildren();
    for (const a of recent.slice(0, 10)) {
      const tr = document.createElement("tr");
      const decision = cell(a.decision || "");
      decision.className = "decision " + (a.decision === "deny" ? "bad" : a.decision === "allow" ? "good" : "");
      tr.append(cell(a.time), cell(a.event), cell(a.principal || ""), cell(a.client_ip || ""), decision, cell(a.reason || ""));
      body.append(tr);
    }
  }
  const mb = $("mailboxes-table").tBodies[0];
  mb.replaceChildren();
  for (const m of mailboxes) {
    const tr = document.createElement("tr");
    tr.dataset.name = m.name; tr.dataset.state = m.state;
    const st = cell(t("mb_" + m.state) + (m.connected ? " (" + t("connectedNow") + ")" : ""));
    st.className = "state " + (m.state === "ok" ? "good" : m.state === "failing" ? "bad" : "");
    const err = cell(m.last_error ? m.last_error + (m.last_error_at ? " (" + m.last_error_at + ")" : "") : "");
    err.className = "last-error";
    tr.append(cell(m.name), cell(m.protocol), cell(m.server), st, cell(m.last_poll || t("never")),
      cell(m.last_success || t("never")), err);
    mb.append(tr);
  }
  $("mailboxes-table").hidden = !mailboxes.length;
  $("no-mailboxes").hidden = mailboxes.length > 0;
  $("sftp-summary").textContent = sftp.enabled
    ? t("sftpOn", { listen: sftp.listen, open: sftp.open_sessions, failures: sftp.auth_failures }) : t("sftpOff");
  const users = $("sftp-users-table").tBodies[0];
  users.replaceChildren();
  for (const u of sftp.users) {
    const tr = document.createElement("tr");
    tr.dataset.name = u.name; tr.dataset.source = u.source;
    const open = cell(u.open_sessions);
    open.className = "open-sessions";
    const actions = document.createElement("td");
    if (state.role === "admin" && u.source === "store") {
      const rm = document.createElement("button");
      rm.type = "button"; rm.className = "su-remove"; rm.textContent = t("remove");
      rm.setAttribute("aria-label", t("remove") + " " + u.name);
      rm.addEventListener("click", () => removeSftpUser(u.name));
      actions.append(rm);
    }
    tr.append(cell(u.name), cell(t("source_" + u.source)), cell(u.folder || "/"),
      cell(u.login.map((l) => t("login_" + l.replace(" ", ""))).join(", ")),
      cell(u.permissions.map((p) => t("perm_" + p)).join(", ")),
      cell(u.source === "store" ? (u.last_login_at || t("never")) : ""), open, actions);
    users.append(tr);
  }
  $("sftp-users-table").hidden = !sftp.enabled;
  $("sftp-user-form").hidden = !sftp.enabled || state.role !== "admin";
}

async function removeSftpUser(name) {
  const r = await call("DELETE", "/admin/v1/sftp/users/" + encodeURIComponent(name));
  if (r.status !== 200) return say(problemText(r));
  await loadBridges();
  say(t("sftpRemoved", { name }), true);
  $("h-sftp").focus();
}

async function loadTransports() {
  const r = await call("GET", "/admin/v1/transports");
  if (r.status !== 200) return say(problemText(r));
  const body = $("transports-table").tBodies[0];
  body.replaceChildren();
  for (const p of r.data.transports) {
    const tr = document.createElement("tr");
    tr.dataset.name = p.name;
    const st = cell(t("tp_" + p.state) + (p.not_ready_reason ? ": " + p.not_ready_reason : ""));
    st.className = "state " + (p.state === "ready" ? "good" : "bad");
    const credit = cell(p.credits == null ? "–" : p.credits + (p.credits_checked_at ? " (" + t("checkedAt", { at: p.credits_checked_at }) + ")" : ""));
    credit.className = "credit";
    const test = document.createElement("td");
    if (state.role === "admin") {
      const box = document.createElement("div");
      box.className = "tp-test";
      const id = "tp-to-" + p.name.replace(/[^a-z0-9]/gi, "-");
      const label = document.createElement("label");
      label.htmlFor = id; label.className = "sr"; label.textContent = t("tpTo") + " " + p.name;
      const to = document.createElement("input");
      to.id = id; to.placeholder = t("tpTo"); to.className = "tp-to";
      const b = document.createElement("button");
      b.type = "button"; b.className = "tp-send"; b.textContent = t("tpSend");
      b.setAttribute("aria-label", t("tpSend") + " " + p.name);
      const out = document.createElement("span");
      out.className = "tp-result"; out.setAttribute("role", "status");
      b.addEventListener("click", async () => {
        out.textContent = t("testing"); out.className = "tp-result";
        const res = await call("POST", "/admin/v1/transports/" + encodeURIComponent(p.name) + "/test", { to: to.value.trim() });
        if (res.status !== 200) { out.textContent = problemText(res); out.className = "tp-result bad"; return; }
        out.textContent = res.data.sent ? t("tpSent", { answer: res.data.answer || "" }) : t("tpNotSent", { reason: res.data.reason });
        out.className = "tp-result " + (res.data.sent ? "good" : "bad");
      });
      box.append(label, to, b, out);
      test.append(box);
    }
    tr.append(cell(p.name), cell(p.type), st, cell(p.used_by.length ? p.used_by.join(", ") : t("notUsed")),
      credit, cell(p.last_used_at || t("never")), cell(p.last_error || ""), test);
    body.append(tr);
  }
  $("no-transports").hidden = r.data.transports.length > 0;
}

async function loadConfig() {
  const r = await call("GET", "/admin/v1/config");
  if (r.status !== 200) return say(problemText(r));
  $("cfg-source").textContent = r.data.source;
  $("cfg-text").textContent = r.data.config == null ? (r.data.error || "") : r.data.config;
  $("cfg-drift").hidden = r.data.matches_running !== false;
}

function auditQuery() {
  const q = new URLSearchParams();
  const put = (k, id) => { const v = $(id).value.trim(); if (v) q.set(k, v); };
  put("event", "au-event"); put("principal", "au-principal"); put("decision", "au-decision");
  put("client_ip", "au-ip"); put("since", "au-since"); put("until", "au-until");
  q.set("limit", String(AUDIT_PAGE));
  q.set("offset", String(state.auditOffset));
  return q;
}

async function loadAudit() {
  const q = auditQuery();
  const r = await call("GET", "/admin/v1/audit?" + q.toString());
  if (r.status !== 200) return say(problemText(r));
  q.set("format", "jsonl");
  $("au-export").href = "/admin/v1/audit?" + q.toString();
  const body = $("audit-table").tBodies[0];
  body.replaceChildren();
  for (const a of r.data.records) {
    const tr = document.createElement("tr");
    const decision = cell(a.decision || "");
    decision.className = "decision " + (a.decision === "deny" ? "bad" : a.decision === "allow" ? "good" : "");
    tr.append(cell(a.time), cell(a.event), cell(a.principal || ""), cell(a.client_ip || ""),
      cell([a.method, a.path].filter((x) => x).join(" ")), cell(a.status == null ? "" : a.status),
      decision, cell(a.reason || ""));
    body.append(tr);
  }
  $("au-newer").disabled = state.auditOffset === 0;
  $("au-older").disabled = !r.data.more;
}

async function openView(view) {
  say("");
  show(view);
  if (view === "overview") {
    await loadOverview();
    if (state.overviewTimer) clearInterval(state.overviewTimer);
    state.overviewTimer = setInterval(() => { if (state.view === "overview") loadOverview(); }, 10000);
  }
  if (view === "keys") await loadKeys();
  if (view === "partners") await loadPartners();
  if (view === "audit") await loadAudit();
  if (view === "webhooks") await loadWebhooks();
  if (view === "bridges") await loadBridges();
  if (view === "transports") await loadTransports();
  if (view === "config") await loadConfig();
  $("h-" + view).focus();
}

function wire() {
  for (const h of document.querySelectorAll("h2, #h-sftp")) h.tabIndex = -1;
  $("lang").addEventListener("change", () => {
    state.lang = $("lang").value;
    try { localStorage.setItem("mft-console-lang", state.lang); } catch (_) { /* private mode */ }
    applyLanguage();
    say("");
    if (state.view === "keys") loadKeys();
    if (state.view === "partners") loadPartners();
    if (state.view === "overview") loadOverview();
    if (state.view === "audit") loadAudit();
    if (state.view === "webhooks") loadWebhooks();
    if (state.view === "bridges") loadBridges();
    if (state.view === "transports") loadTransports();
    if (state.view === "config") loadConfig();
  });
  for (const b of document.querySelectorAll("nav button")) {
    b.addEventListener("click", () => openView(b.dataset.view));
  }
  $("sign-in-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    say("");
    const body = { name: $("si-name").value, password: $("si-password").value };
    if ($("si-code").value.trim()) body.code = $("si-code").value.trim();
    const r = await call("POST", "/console/api/sign-in", body);
    $("si-password").value = ""; $("si-code").value = "";
    if (r.status !== 200) { say(problemText(r)); $("si-name").focus(); return; }
    say("");
    await afterSignIn(r.data);
  });
  $("enrol-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const r = await call("POST", "/console/api/enrol", { code: $("en-code").value.trim() });
    $("en-code").value = "";
    if (r.status !== 200) { say(problemText(r)); return; }
    say("");
    state.csrf = r.data.csrf;
    const list = $("recovery-codes");
    list.replaceChildren();
    for (const c of r.data.recovery_codes) {
      const li = document.createElement("li"); li.textContent = c; list.append(li);
    }
    show("recovery");
    $("recovery-done").focus();
  });
  $("recovery-done").addEventListener("click", async () => {
    $("recovery-codes").replaceChildren();
    await afterSignIn({ csrf: state.csrf, role: state.role, name: state.name, stage: "full" });
  });
  $("sign-out").addEventListener("click", async () => {
    await call("POST", "/console/api/sign-out", {});
    showSignIn(t("signedOut"));
  });
  $("key-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const scopes = [...document.querySelectorAll("#key-scopes input:checked")].map((i) => i.value);
    const body = { name: $("key-name").value.trim(), scopes };
    if ($("key-expiry").value) body.expires_days = Number($("key-expiry").value);
    if ($("key-limit").value.trim()) body.rate_limit = $("key-limit").value.trim();
    const senders = $("key-senders").value.split(/[\s,]+/).filter((s) => s);
    if (senders.length) body.allowed_senders = senders;
    const r = await call("POST", "/admin/v1/keys", body);
    if (r.status !== 201) { say(problemText(r)); return; }
    say("");
    $("new-key-value").textContent = r.data.key;
    $("new-key-value").dataset.id = r.data.id;
    $("new-key").hidden = false;
    $("key-form").reset();
    $("copy-key").focus();
    await loadKeys();
  });
  $("sftp-user-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const permissions = [...document.querySelectorAll("#su-permissions input:checked")].map((i) => i.value);
    const name = $("su-name").value.trim();
    const body = { name, folder: $("su-folder").value.trim(), permissions };
    if ($("su-password").value) body.password = $("su-password").value;
    const keys = $("su-keys").value.split("\n").map((l) => l.trim()).filter((l) => l);
    if (keys.length) body.authorized_keys = keys;
    const r = await call("POST", "/admin/v1/sftp/users", body);
    $("su-password").value = "";
    if (r.status !== 201) { say(problemText(r)); $("su-name").focus(); return; }
    $("sftp-user-form").reset();
    await loadBridges();
    say(t("sftpAdded", { name }), true);
    $("su-name").focus();
  });
  $("webhook-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const events = [...document.querySelectorAll("#wh-events input:checked")].map((i) => i.value);
    const body = { url: $("wh-url").value.trim(), events };
    if ($("wh-private").checked) body.allow_private = true;
    const r = await call("POST", "/admin/v1/webhooks", body);
    if (r.status !== 201) { say(problemText(r)); return; }
    say("");
    $("wh-secret-value").textContent = r.data.secret;
    $("wh-secret").hidden = false;
    $("webhook-form").reset();
    $("copy-wh-secret").focus();
    await loadWebhooks();
  });
  $("copy-wh-secret").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText($("wh-secret-value").textContent);
      say(t("copied"), true);
    } catch (_) {
      const range = document.createRange();
      range.selectNodeContents($("wh-secret-value"));
      const sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
    }
  });
  $("cfg-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const out = $("cfg-result");
    out.replaceChildren();
    const r = await call("POST", "/admin/v1/config/validate", { config: $("cfg-candidate").value });
    if (r.status !== 200) { say(problemText(r)); return; }
    const head = document.createElement("p");
    head.className = r.data.valid ? "good" : "bad";
    head.textContent = r.data.valid ? t("cfgValid") : t("cfgInvalid");
    out.append(head);
    if (r.data.errors.length) out.append(list(r.data.errors));
    if (r.data.warnings.length) {
      const w = document.createElement("p"); w.textContent = t("warnings"); out.append(w, list(r.data.warnings));
    }
  });
  $("cfg-reload").addEventListener("click", async () => {
    const out = $("reload-result");
    out.replaceChildren();
    const r = await call("POST", "/admin/v1/reload", {});
    const head = document.createElement("p");
    if (r.status === 200) {
      head.className = "good"; head.textContent = t("reloaded");
      out.append(head);
      const p1 = document.createElement("p");
      p1.textContent = t("changed") + " " + (r.data.changed.length ? r.data.changed.join(", ") : t("nothingChanged"));
      out.append(p1);
      if (r.data.needs_restart.length) {
        const p2 = document.createElement("p");
        p2.textContent = t("needsRestart") + " " + r.data.needs_restart.join(", ");
        out.append(p2);
      }
      await loadConfig();
    } else {
      head.className = "bad"; head.textContent = t("reloadFailed") + " " + problemText(r);
      out.append(head);
      if (r.data && r.data.errors && r.data.errors.length) out.append(list(r.data.errors));
    }
  });
  $("audit-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    state.auditOffset = 0;
    say("");
    await loadAudit();
  });
  $("au-older").addEventListener("click", async () => { state.auditOffset += AUDIT_PAGE; await loadAudit(); });
  $("au-newer").addEventListener("click", async () => {
    state.auditOffset = Math.max(0, state.auditOffset - AUDIT_PAGE); await loadAudit();
  });
  $("partner-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = {
      name: $("partner-name").value.trim(), url: $("partner-url").value.trim(),
      email_domains: $("partner-domains").value.split(/[\s,]+/).filter((d) => d),
    };
    const r = await call("POST", "/admin/v1/partners", body);
    if (r.status !== 201) { say(problemText(r)); return; }
    say("");
    $("partner-key-value").textContent = r.data.key;
    $("partner-key").hidden = false;
    $("partner-form").reset();
    $("copy-partner-key").focus();
    await loadPartners();
  });
  $("copy-partner-key").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText($("partner-key-value").textContent);
      say(t("copied"), true);
    } catch (_) {
      const range = document.createRange();
      range.selectNodeContents($("partner-key-value"));
      const sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
    }
  });
  $("copy-key").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText($("new-key-value").textContent);
      say(t("copied"), true);
    } catch (_) {
      const range = document.createRange();
      range.selectNodeContents($("new-key-value"));
      const sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
    }
  });
}

async function start() {
  try { state.lang = localStorage.getItem("mft-console-lang") || ""; } catch (_) { state.lang = ""; }
  if (!TEXT[state.lang]) state.lang = (navigator.language || "en").startsWith("de") ? "de" : "en";
  wire();
  applyLanguage();
  const r = await call("GET", "/console/api/me");
  if (r.status === 200) await afterSignIn(r.data);
  else showSignIn("");
}

document.addEventListener("DOMContentLoaded", start);
