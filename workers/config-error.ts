/** The one error a bad configuration raises. */

/** Thrown when the environment does not parse; the message names each bad variable. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}
