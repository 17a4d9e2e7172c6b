/**
 * What a model call cost, from a per-model price table; the API also uses it to refuse a model it cannot price.
 *
 * Pure module (no Node built-ins, no `process`): workflow code may import {@link costUsd} to keep a
 * task's running cost; {@link loadPriceTable} reads only the environment object it is handed.
 */
import { z } from 'zod';

/** The token counts of one call that its cost depends on (a subset of the model client's usage). */
export interface BilledUsage {
  prompt_tokens: number;
  cached_tokens: number;
  output_tokens: number;
}

/** USD per 1M tokens of one model, at one prompt size. */
export const TokenRates = z.object({
  input: z.number().nonnegative(),
  /** Prompt tokens served from the provider's cache (a subset of the prompt). */
  cached_input: z.number().nonnegative(),
  output: z.number().nonnegative(),
});
export type TokenRates = z.infer<typeof TokenRates>;

/** A model's rates; some models bill the whole call at higher rates once the prompt passes a size. */
export const ModelPrice = TokenRates.extend({
  long_prompt: TokenRates.extend({ above_prompt_tokens: z.number().int().positive() }).optional(),
});
export type ModelPrice = z.infer<typeof ModelPrice>;

/** Model name to its price; keys are base names (`gemini-2.5-flash`), matched against versioned names too. */
export const PriceTable = z.record(z.string().min(1), ModelPrice);
export type PriceTable = z.infer<typeof PriceTable>;

/** When the built-in figures were copied from the providers' public price lists. */
export const PRICES_AS_OF = '2025-11';

/**
 * List prices (standard tier, USD per 1M tokens) as of {@link PRICES_AS_OF}; they go stale, so the
 * `MODEL_PRICES` environment variable, JSON `{ "model": { "input": .., "cached_input": .., "output": .. } }`,
 * overrides entries and adds models (see {@link loadPriceTable}).
 */
export const DEFAULT_PRICES: PriceTable = {
  'gemini-3-pro-preview': {
    input: 2.0,
    cached_input: 0.2,
    output: 12.0,
    long_prompt: { above_prompt_tokens: 200_000, input: 4.0, cached_input: 0.4, output: 18.0 },
  },
  'gemini-2.5-pro': {
    input: 1.25,
    cached_input: 0.125,
    output: 10.0,
    long_prompt: { above_prompt_tokens: 200_000, input: 2.5, cached_input: 0.25, output: 15.0 },
  },
  'gemini-2.5-flash': { input: 0.3, cached_input: 0.03, output: 2.5 },
  'gemini-2.5-flash-lite': { input: 0.1, cached_input: 0.01, output: 0.4 },
  'gpt-4.1': { input: 2.0, cached_input: 0.5, output: 8.0 },
  'gpt-4.1-mini': { input: 0.4, cached_input: 0.1, output: 1.6 },
  'gpt-4o': { input: 2.5, cached_input: 1.25, output: 10.0 },
  'gpt-4o-mini': { input: 0.15, cached_input: 0.075, output: 0.6 },
};

/** Thrown when `MODEL_PRICES` is not JSON or does not match {@link PriceTable}. */
export class InvalidPriceTableError extends Error {
  override readonly name = 'InvalidPriceTableError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(`MODEL_PRICES: ${message}`, options);
  }
}

/** The built-in table with `env.MODEL_PRICES` laid over it (its entries replace built-in ones of the same name). */
export function loadPriceTable(env: Readonly<Record<string, string | undefined>>): PriceTable {
  const raw = env.MODEL_PRICES?.trim();
  if (!raw) return { ...DEFAULT_PRICES };
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (err) {
    throw new InvalidPriceTableError(`not valid JSON (${(err as Error).message})`, { cause: err });
  }
  const parsed = PriceTable.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new InvalidPriceTableError(`expected {"model": {"input": n, "cached_input": n, "output": n}}; ${issues}`, { cause: parsed.error });
  }
  return { ...DEFAULT_PRICES, ...parsed.data };
}

/**
 * What follows a base name in a versioned name of the same model: a number or date (`-001`,
 * `-2024-08-06`), `-latest`, or a preview/experimental tag. A word (`-nano`, `-lite`) is another model.
 */
const VERSION_SUFFIX = /^-(\d[\w.-]*|latest|preview[\w.-]*|exp[\w.-]*)$/;

/** The table entry for `model`: an exact match, else the longest base name it is a version of. */
export function findPrice(prices: PriceTable, model: string): ModelPrice | undefined {
  const name = model.startsWith('models/') ? model.slice('models/'.length) : model;
  const exact = prices[name];
  if (exact) return exact;
  let best: string | undefined;
  for (const base of Object.keys(prices)) {
    if (name.startsWith(base) && VERSION_SUFFIX.test(name.slice(base.length)) && (!best || base.length > best.length)) best = base;
  }
  return best === undefined ? undefined : prices[best];
}

/**
 * The USD cost of one call: cached prompt tokens at the cached rate, the rest of the prompt at the input
 * rate, output at the output rate. An unknown model costs 0 with `priced: false`, for the caller to record.
 */
export function costUsd(prices: PriceTable, model: string, usage: BilledUsage): { usd: number; priced: boolean } {
  const price = findPrice(prices, model);
  if (!price) return { usd: 0, priced: false };
  const rates = price.long_prompt && usage.prompt_tokens > price.long_prompt.above_prompt_tokens ? price.long_prompt : price;
  const cached = Math.min(usage.cached_tokens, usage.prompt_tokens);
  const usd = ((usage.prompt_tokens - cached) * rates.input + cached * rates.cached_input + usage.output_tokens * rates.output) / 1_000_000;
  return { usd, priced: true };
}
