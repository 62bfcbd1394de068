// The process: settings from the environment, the app on its port, one line when it is ready,
// and a clean stop on SIGTERM or SIGINT.

import { createApp, listen } from "./app.js";
import { configFromEnv } from "./config.js";

try {
  const config = configFromEnv(process.env);
  const app = createApp(config.jwksUrl === undefined ? {} : { jwksUrl: config.jwksUrl });
  const { server, url } = await listen(app, config.port, config.host);
  console.log(`booking-api listening on ${url}`);
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.once(signal, () => {
      server.close(() => process.exit(0));
      server.closeIdleConnections();
    });
  }
} catch (error) {
  // A bad setting or a port in use: one line, not a stack.
  console.error(`booking-api: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
