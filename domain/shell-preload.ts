/**
 * Loads the shell parser as the workflow worker's V8 context starts, before any workflow: the bundle lists this
 * module in `preloadModules`, so the parser and its package land in the module cache all workflows share instead
 * of one copy per cached workflow (see `shell-parser.ts`). Nothing else imports it.
 */
import { parser } from './shell-parser';

parser();
