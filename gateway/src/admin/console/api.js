// Starts the vendored Swagger UI (swagger-ui/) on the admin API's OpenAPI
// document. A file, not an inline script: the console's CSP forbids those.
// "Try it out" runs with the console session's cookie; changes carry the
// session's CSRF token (the server refuses them without it, and refuses a
// viewer's changes whatever the page sends).
"use strict";

async function csrfToken() {
  try {
    const r = await fetch("/console/api/me", { credentials: "same-origin" });
    if (r.ok) return (await r.json()).csrf || "";
  } catch (_) { /* shown by the failing call itself */ }
  return "";
}

window.addEventListener("DOMContentLoaded", async () => {
  const csrf = await csrfToken();
  window.ui = SwaggerUIBundle({
    url: "/admin/v1/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    // No badge from validator.swagger.io: nothing leaves this origin.
    validatorUrl: null,
    requestInterceptor: (req) => {
      const method = (req.method || "GET").toUpperCase();
      if (method !== "GET" && method !== "HEAD") {
        req.headers["X-CSRF-Token"] = csrf;
        if (!req.headers["Content-Type"]) req.headers["Content-Type"] = "application/json";
      }
      req.credentials = "same-origin";
      return req;
    },
  });
});
