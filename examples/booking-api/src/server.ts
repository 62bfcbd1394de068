// The process: settings from the environment, the app on its port, one line when it is ready,
// and a clean stop on SIGTERM or SIGINT.

import { createApp, listen } from "./app.js";
import { configFromEnv } from "./config.js";

const config = configFromEnv(process.env);
const { server, url } = await listen(createApp(config.jwksUrl === undefined ? {} : { jwksUrl: config.jwksUrl }), config.port, config.host);
console.log(`booking-api listening on ${url}`);

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.once(signal, () => {
    server.close(() => process.exit(0));
    server.closeIdleConnections();
  });
}
