/**
 * The environment that points a sandbox's tools at the egress proxy. Each tool reads its own names:
 *  - curl: `http_proxy` (lower case only, it ignores `HTTP_PROXY`), `HTTPS_PROXY`/`https_proxy`,
 *    `ALL_PROXY`/`all_proxy`, `NO_PROXY`/`no_proxy`;
 *  - git: the same names through libcurl (its `http.proxy` setting is left unset, so they apply);
 *  - npm (and pnpm/yarn v1, which read npm's settings): `npm_config_proxy`, `npm_config_https_proxy`,
 *    `npm_config_noproxy`, and otherwise the proxy variables in either case;
 *  - pip: `PIP_PROXY` (its `--proxy`, for http and https alike), and otherwise requests' reading of
 *    `http_proxy`/`https_proxy`/`no_proxy` in either case;
 *  - most other tools (Go, cargo, Python's urllib, wget) read the lower- or upper-case pair.
 * The variables only make well-behaved tools use the proxy; what a sandbox can reach is decided by its network.
 */

/** Destinations tools must not send through the proxy: the sandbox's own loopback. */
export const NO_PROXY = 'localhost,127.0.0.1,::1';

/** The variables that send HTTP(S) traffic of curl, git, npm, pip and the like through the proxy at `url`. */
export function proxyEnvironment(url: string): Record<string, string> {
  return {
    HTTP_PROXY: url,
    HTTPS_PROXY: url,
    ALL_PROXY: url,
    http_proxy: url,
    https_proxy: url,
    all_proxy: url,
    NO_PROXY,
    no_proxy: NO_PROXY,
    npm_config_proxy: url,
    npm_config_https_proxy: url,
    npm_config_noproxy: NO_PROXY,
    PIP_PROXY: url,
  };
}
