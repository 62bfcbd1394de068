// The service's settings, read from the environment.

/** What the process needs to start. */
export interface Config {
  /** PORT: the TCP port, 0 for any free one. Default 8081 (auth-server's default is 8080). */
  readonly port: number;
  /** HOST: the address to bind. Default 127.0.0.1. */
  readonly host: string;
  /** AUTH_JWKS_URL: the auth server's JWKS. Absent: the module's default, from the spec's issuer. */
  readonly jwksUrl: string | undefined;
}

/** Reads the settings; throws an Error that names the variable when one is invalid. */
export function configFromEnv(env: NodeJS.ProcessEnv): Config {
  const portText = env.PORT ?? "8081";
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) {
    throw new Error(`PORT must be a port number from 0 to 65535, not ${JSON.stringify(portText)}`);
  }
  const host = env.HOST || "127.0.0.1";
  const jwksUrl = env.AUTH_JWKS_URL || undefined;
  if (jwksUrl !== undefined) {
    let url: URL;
    try {
      url = new URL(jwksUrl);
    } catch {
      throw new Error(`AUTH_JWKS_URL must be an absolute URL, not ${JSON.stringify(jwksUrl)}`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new Error(`AUTH_JWKS_URL must be an http or https URL, not ${JSON.stringify(jwksUrl)}`);
    }
  }
  return { port: Number(portText), host, jwksUrl };
}
