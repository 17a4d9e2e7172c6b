/** Fields GitHub's webhook payloads share, as intake reads them: who sent an event, a label. */
import { z } from 'zod';
import type { ForgeSender } from '../../domain/forge';

/** A GitHub login; apps end in `[bot]`. */
export const Login = z.string().regex(/^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?$/, 'a GitHub login');
export const Label = z.object({ name: z.string() });
/** An account as payloads carry it (`sender`, `user`). */
export const Sender = z.object({ login: Login, type: z.string().optional() });

/** The sender as intake takes it: a bot is an account of type Bot or a login ending in `[bot]`. */
export function senderOf(s: z.infer<typeof Sender>): ForgeSender {
  return { login: s.login, bot: s.type === 'Bot' || s.login.endsWith('[bot]') };
}
